"""The real thing: two ``hei-nw serve`` replicas on one PostgreSQL store, generating on real vLLM.

Replica A starts vLLM itself (the embedded SmolLM2-135M, converted safetensors,
with a LoRA adapter for tenant acme's B2/B3); replica B attaches to the same vLLM
and shares A's store and key file but keeps its own index files. Clients are the
ones users have: ``openai``, langchain-openai's ``ChatOpenAI`` and llama-index's
``OpenAILike``. One server pair per module: vLLM takes a minute or more to start
on 2 CPU cores.

Needs the vLLM venv (``.venv-vllm``, see the Makefile or server/vllm_process.py)
and PostgreSQL on 127.0.0.1:5432; skips with the reason when vLLM is missing.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from server.auth import hash_key
from server.launch import ServerProcess
from server.vllm_process import EMBEDDED, free_port, resolve_model_folder
from tests.integration import vllm_servers

pytestmark = [pytest.mark.integration, pytest.mark.model, pytest.mark.slow, pytest.mark.postgres]

PG_BASE = os.environ.get("HEI_NW_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MODEL = "hei-nw-smollm2-135m"
ACME, ACME_2, GLOBEX = "hei_it-acme-" + uuid.uuid4().hex, "hei_it-acme2-" + uuid.uuid4().hex, "hei_it-globex-" + uuid.uuid4().hex


def _random_lora(folder: Path) -> Path:
    """A rank-8 LoRA on the embedded model (peft's init: B = 0, so it answers like the base) for B2/B3."""
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(resolve_model_folder(EMBEDDED))
    model = peft.get_peft_model(base, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pg_schema_url() -> Iterator[str]:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.exc import OperationalError

    schema = f"hei_srv_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(PG_BASE)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except OperationalError as err:  # pragma: no cover - CI always has PostgreSQL
        pytest.fail(f"PostgreSQL at {PG_BASE} is needed for this test: {err}")
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, pg_schema_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    vllm_python = vllm_servers.vllm_python()
    work = tmp_path_factory.mktemp("servers")
    lora = _random_lora(work / "acme-lora")
    keys = [{"tenant": "acme", "hash": hash_key(ACME)}, {"tenant": "acme", "hash": hash_key(ACME_2, scheme="scrypt")},
            {"tenant": "globex", "hash": hash_key(GLOBEX)}]
    vllm_port, internal_key = free_port(), uuid.uuid4().hex
    engine_env = {"HEI_NW_SECURITY__KEY_FILE": str(work / "shared-keys.json")}  # replicas must share the envelope keys
    a = ServerProcess(work, {"api_keys": keys, "vllm": {"python": str(vllm_python), "port": vllm_port, "api_key": internal_key,
                                                        "served_model_name": MODEL},
                             "memory": {"consolidated_adapters": {"acme": str(lora)}}},
                      engine_env=engine_env, store_url=pg_schema_url, name="replica-a")
    b = ServerProcess(work, {"api_keys": keys, "vllm": {"url": f"http://127.0.0.1:{vllm_port}", "api_key": internal_key,
                                                        "served_model_name": MODEL}},
                      engine_env=engine_env, store_url=pg_schema_url, name="replica-b")
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        b.stop()
        a.stop()


@pytest.fixture(scope="module")
def a_url(replicas: tuple[ServerProcess, ServerProcess]) -> str:
    return replicas[0].base_url + "/v1"


def client(base: str, key: str = ACME) -> Any:
    return openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=300)


def ask(c: Any, text: str, user: str, **kw: Any) -> Any:
    return c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], user=user,
                                     max_tokens=kw.pop("max_tokens", 24), temperature=0, **kw)


@pytest.fixture(scope="module")
def told_fact(a_url: str) -> dict[str, Any]:
    """Conversation 1 on replica A: the user mentions a fact; the write gate keeps it."""
    r = ask(client(a_url), "Please remember: my cat Miso is afraid of thunderstorms.", "alice")
    hei = r.model_extra["hei"]
    assert hei["mode"] == "B1" and hei["write"]["accepted"], hei
    return {"trace_id": hei["write"]["trace_id"]}


def test_fact_told_in_one_conversation_is_recalled_in_a_later_one(a_url: str, told_fact: dict[str, Any]) -> None:
    r = ask(client(a_url), "What is my cat Miso afraid of?", "alice")
    assert told_fact["trace_id"] in r.model_extra["hei"]["recalled"]
    assert "thunder" in r.choices[0].message.content.lower()
    b0 = ask(client(a_url), "What is my cat Miso afraid of?", "alice", extra_body={"hei_mode": "B0"})
    assert b0.model_extra["hei"]["recalled"] == [] and "thunder" not in b0.choices[0].message.content.lower()


def test_another_tenant_cannot_see_it(a_url: str, told_fact: dict[str, Any]) -> None:
    g = client(a_url, GLOBEX)
    r = ask(g, "What is my cat Miso afraid of?", "alice")
    assert r.model_extra["hei"]["recalled"] == [] and "thunder" not in r.choices[0].message.content.lower()
    hx = {"Authorization": f"Bearer {GLOBEX}", "X-HEI-User": "alice"}
    base = a_url.removesuffix("/v1")
    assert httpx.get(f"{base}/v1/memory/traces/{told_fact['trace_id']}", headers=hx).status_code == 404
    assert httpx.delete(f"{base}/v1/memory/traces/{told_fact['trace_id']}", headers=hx).status_code == 404
    rec = httpx.post(f"{base}/v1/memory/recall", headers=hx, json={"cue": "What is Miso afraid of?"}).json()
    # Only globex's own traces (its question may have passed the gate just now), never acme's fact.
    assert all(t["trace"]["namespace"] == "globex/alice" and "thunder" not in t["trace"]["text"] for t in rec["traces"])
    same_tenant = {"Authorization": f"Bearer {ACME_2}", "X-HEI-User": "alice"}  # acme's other (scrypt-hashed) key
    assert httpx.get(f"{base}/v1/memory/traces/{told_fact['trace_id']}", headers=same_tenant).status_code == 200


def test_streaming_relays_tokens_usage_and_done(a_url: str, told_fact: dict[str, Any]) -> None:
    stream = client(a_url).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is my cat Miso afraid of?"}], user="alice",
        max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:  # the client stops at data: [DONE]
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert "thunder" in text.lower()
    assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 20  # the memory prefix counts


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


def test_tool_calls_pass_through_plain_and_streamed(a_url: str) -> None:
    c = client(a_url)
    for choice in ({"type": "function", "function": {"name": "get_weather"}}, "required"):
        r = ask(c, "What is the weather in Paris?", "tools", tools=TOOLS, tool_choice=choice, max_tokens=40)
        call = r.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    stream = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                                       tools=TOOLS, tool_choice="required", user="tools", max_tokens=40, temperature=0, stream=True)
    name, args, ids = "", "", set()
    for chunk in stream:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if tc.id:
                ids.add(tc.id)
            if tc.function is not None:
                name += tc.function.name or ""
                args += tc.function.arguments or ""
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"} and len(ids) == 1
    # The tool's answer goes back in the next turn through the server's chat template.
    r = c.chat.completions.create(model=MODEL, user="tools", max_tokens=24, temperature=0, tools=TOOLS, messages=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and raining"}])
    assert r.choices[0].finish_reason in ("stop", "length")


def test_response_format_and_completions(a_url: str) -> None:
    c = client(a_url)
    r = ask(c, "Give the city Paris as JSON", "fmt", max_tokens=40, response_format={"type": "json_schema", "json_schema": {
        "name": "city", "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    assert json.loads(r.choices[0].message.content)["city"] == "Paris"
    done = c.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4, temperature=0, user="fmt")
    assert "Paris" in done.choices[0].text
    assert [m.id for m in c.models.list().data] == [MODEL]


def test_langchain_chat_openai(a_url: str, told_fact: dict[str, Any]) -> None:
    lc_openai = pytest.importorskip("langchain_openai")
    llm = lc_openai.ChatOpenAI(base_url=a_url, api_key=ACME, model=MODEL, temperature=0, max_tokens=24, max_retries=0,
                               model_kwargs={"user": "alice"})
    assert "thunder" in llm.invoke("What is my cat Miso afraid of?").content.lower()
    assert "thunder" in "".join(str(c.content) for c in llm.stream("What is my cat Miso afraid of?")).lower()
    tooled = llm.model_copy(update={"max_tokens": 64}).bind_tools(TOOLS, tool_choice="get_weather")
    call = tooled.invoke("What is the weather in Paris?").tool_calls[0]
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}


def test_llamaindex_openai_like(a_url: str, told_fact: dict[str, Any]) -> None:
    openai_like = pytest.importorskip("llama_index.llms.openai_like")
    from llama_index.core.llms import ChatMessage

    llm = openai_like.OpenAILike(api_base=a_url, api_key=ACME, model=MODEL, is_chat_model=True, temperature=0,
                                 max_tokens=24, additional_kwargs={"user": "alice"}, max_retries=0)
    msgs = [ChatMessage(role="user", content="What is my cat Miso afraid of?")]
    assert "thunder" in str(llm.chat(msgs).message.content).lower()
    assert "thunder" in "".join(r.delta or "" for r in llm.stream_chat(msgs)).lower()


def test_write_through_one_replica_is_recalled_through_the_other(replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = (client(r.base_url + "/v1") for r in replicas)
    ask(b, "Hello there", "carol")  # replica B opens carol's index before A writes into the shared store
    told = ask(a, "Please remember: the spare car key is hidden under the blue flowerpot.", "carol")
    assert told.model_extra["hei"]["write"]["accepted"]
    tid = told.model_extra["hei"]["write"]["trace_id"]
    r = ask(b, "Where is the spare car key hidden?", "carol")
    assert tid in r.model_extra["hei"]["recalled"] and "flowerpot" in r.choices[0].message.content.lower()
    h = {"Authorization": f"Bearer {ACME}", "X-HEI-User": "carol"}
    assert httpx.delete(f"{replicas[0].base_url}/v1/memory/traces/{tid}", headers=h).status_code == 204
    rec = httpx.post(f"{replicas[1].base_url}/v1/memory/recall", headers=h, json={"cue": "spare car key", "k": 5}).json()
    assert tid not in [t["trace"]["id"] for t in rec["traces"]]  # B's index dropped it too


def test_b2_b3_answer_through_the_tenants_lora_in_vllm(a_url: str) -> None:
    r = ask(client(a_url), "Say hello.", "lora", extra_body={"hei_mode": "B3"})
    assert r.model == "hei-consolidated-acme" and r.choices[0].message.content
    with pytest.raises(openai.APIStatusError) as err:
        ask(client(a_url, GLOBEX), "Say hello.", "lora", extra_body={"hei_mode": "B2"})
    assert err.value.status_code == 409

"""Memory as vectors through real vLLM: the ``embeds`` route against the ``text`` route.

One ``hei-nw serve`` on SQLite starts vLLM itself (embedded SmolLM2-135M, ``--enable-prompt-embeds``).
The fact is told once through the memory API and chat turns are not written
(``memory.write_user_turns = false``), so every question recalls exactly the same memory on both
routes: what differs is only whether that memory reaches vLLM as text or as the model's own input
embeddings of the same tokens, and greedy answers must be identical. Skips without ``.venv-vllm``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from server.launch import ServerProcess
from tests.integration.test_server_vllm import MODEL, ask, client
from tests.integration.vllm_servers import served

pytestmark = [pytest.mark.integration, pytest.mark.model, pytest.mark.slow]

KEY = "hei_it-embeds-" + uuid.uuid4().hex
QUESTION = "What is my cat Miso afraid of?"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with served(tmp_path_factory, "embeds", KEY, MODEL, memory={"write_user_turns": False}) as s:
        yield s


@pytest.fixture(scope="module")
def url(server: ServerProcess) -> str:
    r = httpx.post(f"{server.base_url}/v1/memory/write", headers={"Authorization": f"Bearer {KEY}", "X-HEI-User": "alice"},
                   json={"event": {"text": "Please remember: my cat Miso is afraid of thunderstorms.", "pin": True}})
    assert r.status_code == 200 and r.json()["decisions"][0]["accepted"], r.text
    return server.base_url + "/v1"


def test_embeds_route_recalls_the_fact_with_the_text_routes_greedy_answer(url: str) -> None:
    c = client(url, KEY)
    text = ask(c, QUESTION, "alice")
    vec = ask(c, QUESTION, "alice", extra_body={"hei_route": "embeds"})
    hei_t, hei_v = text.model_extra["hei"], vec.model_extra["hei"]
    assert (hei_t["route"], hei_v["route"]) == ("text", "embeds")
    assert hei_v["recalled"] == hei_t["recalled"] and len(hei_v["recalled"]) == 1
    answer = vec.choices[0].message.content
    assert "thunder" in answer.lower()
    assert answer == text.choices[0].message.content
    assert vec.usage.prompt_tokens == text.usage.prompt_tokens  # the same token sequence, as vectors
    b0 = ask(c, QUESTION, "alice", extra_body={"hei_route": "embeds", "hei_mode": "B0"})
    assert "thunder" not in b0.choices[0].message.content.lower()


def test_embeds_route_streams_the_same_answer(url: str) -> None:
    c = client(url, KEY)
    plain = ask(c, QUESTION, "alice", extra_body={"hei_route": "embeds"}).choices[0].message.content
    stream = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}], user="alice",
                                       max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True},
                                       extra_headers={"X-HEI-Route": "embeds"})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text == plain and "thunder" in text.lower()
    assert usage is not None and usage.prompt_tokens > 20  # the memory counts as prompt tokens


def test_completion_prompt_as_embeddings_answers_like_text(url: str) -> None:
    c = client(url, KEY)
    kw: dict[str, Any] = {"model": MODEL, "prompt": f"Q: {QUESTION}\nA:", "max_tokens": 10, "temperature": 0, "user": "alice"}
    text = c.completions.create(**kw)
    vec = c.completions.create(**kw, extra_body={"hei_route": "embeds"})
    assert vec.model_extra["hei"]["route"] == "embeds" and vec.model_extra["hei"]["recalled"]
    assert vec.choices[0].text == text.choices[0].text and "thunder" in vec.choices[0].text.lower()

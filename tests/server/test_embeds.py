"""The ``embeds`` memory route against the fake backend: what reaches vLLM instead of the memory text.

A tiny model folder (word-level tokenizer, 8-wide embedding table) stands in for the served model,
so the test checks the route's contract without loading SmolLM2: the memory block arrives as the
rows of the model's own embedding table for the memory's tokens, placed exactly where the text
route writes the memory text. That vLLM then answers the same as on the text route is checked with
real vLLM in tests/integration/test_server_embeds.py.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from fastapi.testclient import TestClient

from hei_nw_plugin.memory import HEIMemory
from server.app import create_app
from tests.server.fake_openai import MODEL, fake_openai_server
from tests.server.test_app import A, settings

HIDDEN = 8
FACT = "Priya keeps the spare key in the blue toolbox"


def tiny_model(folder: Path) -> Path:
    """A folder with config.json, a word-level tokenizer and ``model.embed_tokens.weight``."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[UNK]", *sorted(set((FACT + " 1. Memory: . Where does keep the ?").split()))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                              "unk_token": "[UNK]"}))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": HIDDEN, "num_attention_heads": 2}))
    table = torch.arange(len(words) * HIDDEN, dtype=torch.float32).view(len(words), HIDDEN)
    save_file({"model.embed_tokens.weight": table, "model.norm.weight": torch.ones(HIDDEN)}, str(folder / "model.safetensors"))
    return folder


def decode(b64: str) -> Any:
    return torch.load(io.BytesIO(base64.b64decode(b64)), weights_only=True)


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    return tiny_model(tmp_path / "tiny-model")


@pytest.fixture
def make_client(mem_factory: Callable[..., HEIMemory], model_folder: Path
                ) -> Iterator[Callable[..., tuple[TestClient, list[dict[str, Any]]]]]:
    opened: list[Any] = []

    def make(**memory: Any) -> tuple[TestClient, list[dict[str, Any]]]:
        ctx = fake_openai_server()
        url, seen, _ = ctx.__enter__()
        opened.append(ctx)
        # The gate drops the asked questions (no cold copies), so every request recalls the same memory.
        c = TestClient(create_app(settings(url, vllm={"model": str(model_folder)}, memory=memory),
                                  memory_obj=mem_factory(gate={"cold_writes": False})))
        c.__enter__()
        opened.append(c)
        deadline = time.monotonic() + 20
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, c.get("/readyz").json()
            time.sleep(0.05)
        c.post("/v1/memory/write", headers=A, json={"user": "alice", "event": {"text": FACT, "pin": True}})
        return c, seen

    yield make
    for o in reversed(opened):
        o.__exit__(None, None, None)


def ask(c: TestClient, **extra: Any) -> Any:
    r = c.post("/v1/chat/completions", headers=A, json={
        "model": MODEL, "user": "alice", "messages": [{"role": "user", "content": "Where does Priya keep the key?"}], **extra})
    assert r.status_code == 200, r.text
    return r


def test_embeds_route_sends_the_memory_tokens_embeddings_where_the_text_route_writes_the_text(
        make_client: Callable[..., Any], model_folder: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    c, seen = make_client()
    text_system = ask(c).json() and seen[-1]["body"]["messages"][0]
    r = ask(c, hei_route="embeds")
    assert r.json()["hei"]["route"] == "embeds" and r.headers["x-hei-route"] == "embeds"
    system = seen[-1]["body"]["messages"][0]
    assert system["role"] == "system" and [p["type"] for p in system["content"]] == ["text", "prompt_embeds"]
    head, memory_text = text_system["content"].split("Memory:\n", 1)
    # vLLM joins content parts with "\n": the text part plus that newline is the text route's prefix.
    assert system["content"][0]["text"] + "\n" == head + "Memory:\n" and FACT in memory_text
    sent = decode(system["content"][1]["data"])
    ids = AutoTokenizer.from_pretrained(str(model_folder))(memory_text, add_special_tokens=False)["input_ids"]
    table = load_file(str(model_folder / "model.safetensors"))["model.embed_tokens.weight"]
    assert sent.shape == (len(ids), HIDDEN) and torch.equal(sent, table[ids])  # the rows, not the whole table
    assert FACT not in json.dumps(seen[-1]["body"])  # the memory reaches vLLM only as vectors
    assert seen[-1]["body"]["messages"][1:] == [{"role": "user", "content": "Where does Priya keep the key?"}]
    assert "hei_route" not in seen[-1]["body"]


def test_route_comes_from_body_header_or_setting_and_is_validated(make_client: Callable[..., Any]) -> None:
    c, seen = make_client(route="embeds")
    ask(c)
    assert seen[-1]["body"]["messages"][0]["content"][1]["type"] == "prompt_embeds"
    ask(c, hei_route="text")
    assert isinstance(seen[-1]["body"]["messages"][0]["content"], str)
    c.post("/v1/chat/completions", headers=A | {"X-HEI-Route": "text"}, json={
        "model": MODEL, "user": "alice", "messages": [{"role": "user", "content": "Where does Priya keep the key?"}]})
    assert isinstance(seen[-1]["body"]["messages"][0]["content"], str)
    bad = c.post("/v1/chat/completions", headers=A, json={"model": MODEL, "hei_route": "telepathy",
                                                          "messages": [{"role": "user", "content": "hi"}]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_route"


def test_b0_and_empty_memory_send_no_embeddings(make_client: Callable[..., Any]) -> None:
    c, seen = make_client()
    ask(c, hei_route="embeds", hei_mode="B0")
    assert seen[-1]["body"]["messages"] == [{"role": "user", "content": "Where does Priya keep the key?"}]
    r = c.post("/v1/chat/completions", headers=A, json={"model": MODEL, "user": "nobody", "hei_route": "embeds",
                                                        "messages": [{"role": "user", "content": "Where?"}]})
    assert r.json()["hei"]["recalled"] == [] and "prompt_embeds" not in json.dumps(seen[-1]["body"])


def test_completion_prompt_goes_whole_as_prompt_embeds(make_client: Callable[..., Any], model_folder: Path) -> None:
    from transformers import AutoTokenizer

    c, seen = make_client()
    c.post("/v1/completions", headers=A, json={"model": MODEL, "user": "alice", "prompt": "Where does Priya keep the key?"})
    text_prompt = seen[-1]["body"]["prompt"]
    c.post("/v1/completions", headers=A, json={"model": MODEL, "user": "alice", "prompt": "Where does Priya keep the key?",
                                               "hei_route": "embeds"})
    body = seen[-1]["body"]
    assert "prompt" not in body and text_prompt.startswith("Memory:\n")
    ids = AutoTokenizer.from_pretrained(str(model_folder))(text_prompt)["input_ids"]
    assert decode(body["prompt_embeds"]).shape == (len(ids), HIDDEN)


# ------------------------------------------------------------------ route 'adapter'
def test_adapter_route_needs_a_vllm_serving_the_adapter(make_client: Callable[..., Any]) -> None:
    c, _ = make_client()
    r = c.post("/v1/chat/completions", headers=A, json={"model": MODEL, "user": "alice", "hei_route": "adapter",
                                                        "messages": [{"role": "user", "content": "Where?"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "route_unavailable"


def test_adapter_route_attaches_the_memory_embeddings_to_the_last_message(
        mem_factory: Callable[..., HEIMemory], model_folder: Path) -> None:
    from server.vllm_plugin import adapter_max_tokens

    with fake_openai_server() as (url, seen, _):
        s = settings(url, vllm={"model": str(model_folder), "episodic_adapter": True}, memory={"route": "adapter"})
        with TestClient(create_app(s, memory_obj=mem_factory())) as c:
            while c.get("/readyz").status_code != 200:
                time.sleep(0.05)
            c.post("/v1/memory/write", headers=A, json={"user": "alice", "event": {"text": FACT * 40, "pin": True}})
            r = ask(c)
            assert r.json()["hei"]["route"] == "adapter"
            system, user = seen[-1]["body"]["messages"][0], seen[-1]["body"]["messages"][-1]
            assert system["content"].endswith("Memory:\n(attached)") and FACT not in json.dumps(seen[-1]["body"])
            assert user["content"][0] == {"type": "text", "text": "Where does Priya keep the key?"}
            memory = decode(user["content"][1]["image_embeds"])
            assert 0 < memory.shape[0] <= adapter_max_tokens() and memory.shape[1] == HIDDEN
            assert c.app.state.hei.embeds.embed(FACT * 40, max_tokens=5).shape == (5, HIDDEN)  # the adapter's cut
            bad = c.post("/v1/completions", headers=A, json={"model": MODEL, "user": "alice", "prompt": "Where?"})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "route_unavailable"
            emb = c.post("/v1/chat/completions", headers=A, json={
                "model": MODEL, "user": "alice", "hei_route": "embeds", "messages": [{"role": "user", "content": "Where?"}]})
            assert emb.status_code == 400 and "episodic_adapter" in emb.json()["error"]["message"]


def test_vllm_command_enables_the_route_the_settings_ask_for(tmp_path: Path) -> None:
    from server.settings import VllmSettings
    from server.vllm_plugin import ARCHITECTURE, SHIPPED_ADAPTER
    from server.vllm_process import VllmProcess

    py = tmp_path / "python"
    py.write_text("")
    plain = VllmProcess(VllmSettings(python=py, port=8123), log_file=tmp_path / "v.log").command(tmp_path)
    assert "--enable-prompt-embeds" in plain and "--hf-overrides" not in plain
    cmd = VllmProcess(VllmSettings(python=py, port=8123, episodic_adapter=True), log_file=tmp_path / "v.log").command(tmp_path)
    over = json.loads(cmd[cmd.index("--hf-overrides") + 1])
    assert over == {"architectures": [ARCHITECTURE], "is_encoder_decoder": True, "hei_adapter_weights": str(SHIPPED_ADAPTER)}
    assert "--enable-mm-embeds" in cmd and "--enable-prompt-embeds" not in cmd  # vLLM refuses both at once

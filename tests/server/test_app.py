"""The server's own behaviour, against a fake OpenAI-compatible backend: auth, tenancy, limits, SSE, memory prefix.

Generation quality is not under test here (tests/integration/test_server_vllm.py drives real vLLM);
what is: which requests get through, what reaches the backend, what is stored and who can see it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from hei_nw_plugin.memory import HEIMemory
from server.app import create_app
from server.auth import hash_key
from server.settings import ServerSettings
from tests.server.fake_openai import MODEL, fake_openai_server

KEY_A, KEY_A2, KEY_B = "hei_test-key-acme-0123456789", "hei_test-key-acme-second", "hei_test-key-globex-987654321"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}


def settings(url: str, **over: Any) -> ServerSettings:
    base: dict[str, Any] = {
        "api_keys": [{"tenant": "acme", "hash": hash_key(KEY_A)}, {"tenant": "acme", "hash": hash_key(KEY_A2, scheme="scrypt")},
                     {"tenant": "globex", "hash": hash_key(KEY_B)}],
        "vllm": {"url": url, "served_model_name": MODEL},
        "limits": {"requests_per_s": 1000, "burst": 1000},
    }
    for k, v in over.items():
        base[k] = base[k] | v if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return ServerSettings.model_validate(base)


@pytest.fixture
def backend() -> Iterator[tuple[str, list[dict[str, Any]], dict[str, str]]]:
    with fake_openai_server() as b:
        yield b


@pytest.fixture
def make_client(backend: tuple[str, list[dict[str, Any]], dict[str, str]], mem_factory: Callable[..., HEIMemory]
                ) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**over: Any) -> TestClient:
        c = TestClient(create_app(settings(backend[0], **over), memory_obj=mem_factory()))
        c.__enter__()
        clients.append(c)
        deadline = time.monotonic() + 20
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, c.get("/readyz").json()
            time.sleep(0.05)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def chat(client: TestClient, text: str, headers: dict[str, str] = A, **extra: Any) -> Any:
    return client.post("/v1/chat/completions", headers=headers,
                       json={"model": MODEL, "messages": [{"role": "user", "content": text}], **extra})


# ------------------------------------------------------------------ auth, limits
def test_requests_without_a_valid_key_are_refused_in_openai_shape(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY_A}):
        r = client.get("/v1/models", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models", headers=A).json()["data"][0]["id"] == MODEL
    assert client.get("/v1/models", headers={"X-API-Key": KEY_B}).status_code == 200


def test_scrypt_hashed_key_maps_to_its_tenant(client: TestClient) -> None:
    w = client.post("/v1/memory/write", headers={"Authorization": f"Bearer {KEY_A2}"},
                    json={"event": {"text": "Scrypt keys work for the acme tenant", "pin": True}})
    assert w.status_code == 200
    tid = w.json()["decisions"][0]["trace_id"]
    assert client.get(f"/v1/memory/traces/{tid}", headers=A).status_code == 200  # same tenant, other key


def test_health_and_schema_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["backend"] is True
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/chat/completions", "/v1/memory/recall", "/v1/memory/consolidate"} <= set(paths)


def test_token_bucket_per_key_answers_429_with_retry_after(make_client: Callable[..., TestClient]) -> None:
    c = make_client(limits={"requests_per_s": 0.01, "burst": 2, "max_body_bytes": 1_000_000})
    assert [c.get("/v1/models", headers=A).status_code for _ in range(2)] == [200, 200]
    r = c.get("/v1/models", headers=A)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert c.get("/v1/models", headers=B).status_code == 200  # another key has its own bucket


def test_oversized_bodies_get_413_declared_or_streamed(make_client: Callable[..., TestClient]) -> None:
    c = make_client(limits={"requests_per_s": 1000, "burst": 1000, "max_body_bytes": 2048})
    big = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    r = c.post("/v1/chat/completions", headers=A | {"Content-Type": "application/json"}, content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]
    r = c.post("/v1/memory/write", headers=A | {"Content-Type": "application/json"}, content=chunks())
    assert r.status_code == 413
    assert chat(c, "small enough").status_code == 200


def test_keys_never_reach_the_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    chat(client, "hello there", hei_remember=True)
    client.get("/v1/models", headers={"Authorization": "Bearer wrong-key-123"})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert KEY_A not in text and "wrong-key-123" not in text
    assert "key=" in text  # the access log names keys by id


# ------------------------------------------------------------------ memory in chat
def test_b1_recalls_into_the_system_message_and_writes_the_turn(client: TestClient, backend: Any) -> None:
    _, seen, _ = backend
    w = client.post("/v1/memory/write", headers=A, json={"user": "alice", "event": {
        "text": "Priya keeps the spare key in the blue toolbox", "pin": True}})
    fact_id = w.json()["decisions"][0]["trace_id"]
    r = chat(client, "Where does Priya keep the spare key?", user="alice", hei_remember=True)
    assert r.status_code == 200
    sent = seen[-1]["body"]
    assert sent["messages"][0]["role"] == "system" and "blue toolbox" in sent["messages"][0]["content"]
    assert sent["messages"][-1] == {"role": "user", "content": "Where does Priya keep the spare key?"}
    assert "user" not in sent and not any(k.startswith("hei_") for k in sent)
    hei = r.json()["hei"]
    assert hei["mode"] == "B1" and fact_id in hei["recalled"] and hei["write"]["accepted"]
    texts = [t["text"] for t in client.get("/v1/memory/traces", headers=A | {"X-HEI-User": "alice"}).json()["traces"]]
    assert "Where does Priya keep the spare key?" in texts
    assert r.headers["x-hei-recalled"] == str(len(hei["recalled"]))


def test_existing_system_message_keeps_its_text_and_gains_memory(client: TestClient, backend: Any) -> None:
    client.post("/v1/memory/write", headers=A, json={"event": {"text": "The offsite moved to Thursday", "pin": True}})
    client.post("/v1/chat/completions", headers=A, json={"model": MODEL, "messages": [
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "When is the offsite?"}]})
    system = backend[1][-1]["body"]["messages"][0]
    assert system["content"].startswith("Be terse.\n\nMemory:\n") and "Thursday" in system["content"]


def test_b0_sends_the_chat_unchanged_and_stores_nothing(client: TestClient, backend: Any) -> None:
    client.post("/v1/memory/write", headers=A, json={"event": {"text": "The offsite moved to Thursday", "pin": True}})
    msgs = [{"role": "user", "content": "When is the offsite?"}]
    r = client.post("/v1/chat/completions", headers=A | {"X-HEI-Mode": "B0"}, json={"model": MODEL, "messages": msgs,
                                                                                    "hei_remember": True})
    assert backend[1][-1]["body"]["messages"] == msgs
    assert r.json()["hei"] == {"mode": "B0", "route": "text", "recalled": [], "memory_tokens": 0, "write": None}
    assert len(client.get("/v1/memory/traces", headers=A).json()["traces"]) == 1


def test_b2_b3_need_a_consolidated_adapter(make_client: Callable[..., TestClient], backend: Any, tmp_path: Any) -> None:
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    c = make_client(memory={"consolidated_adapters": {"acme": str(folder)}})
    r = chat(c, "hi", headers=B, hei_mode="B3")
    assert r.status_code == 409 and r.json()["error"]["code"] == "adapter_missing"
    assert chat(c, "hi", hei_mode="B3").status_code == 200
    assert backend[1][-1]["body"]["model"] == "hei-consolidated-acme" and backend[2]["hei-consolidated-acme"]
    assert chat(c, "hi", hei_mode="B9").status_code == 400
    assert [m["id"] for m in c.get("/v1/models", headers=B).json()["data"]] == [MODEL]  # adapters are not listed


def test_unknown_model_and_backend_4xx_are_the_callers(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", headers=A, json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = chat(client, "x", max_tokens=0)
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]
    assert client.post("/v1/chat/completions", headers=A, json={"model": MODEL, "messages": []}).status_code == 400
    assert client.post("/v1/chat/completions", headers=A | {"Content-Type": "application/json"}, content=b"{nope").status_code == 400


def test_stream_is_relayed_as_sse_and_the_write_lands_before_done(client: TestClient) -> None:
    with client.stream("POST", "/v1/chat/completions", headers=A, json={
            "model": MODEL, "messages": [{"role": "user", "content": "Remember the gate code is 4412"}],
            "stream": True, "stream_options": {"include_usage": True}, "hei_remember": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = "".join(r.iter_text())
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]).startswith("echo: Remember")
    assert chunks[-1]["usage"]["total_tokens"] == 8
    texts = [t["text"] for t in client.get("/v1/memory/traces", headers=A).json()["traces"]]
    assert texts == ["Remember the gate code is 4412"]


def test_completions_get_the_memory_block_in_front(client: TestClient, backend: Any) -> None:
    client.post("/v1/memory/write", headers=A, json={"event": {"text": "The wifi password is on the fridge", "pin": True}})
    r = client.post("/v1/completions", headers=A, json={"model": MODEL, "prompt": "Where is the wifi password?"})
    assert r.status_code == 200
    assert backend[1][-1]["body"]["prompt"].startswith("Memory:\n") and backend[1][-1]["body"]["prompt"].endswith("wifi password?")


# ------------------------------------------------------------------ tenancy and the memory API
def test_a_tenant_cannot_read_recall_pin_or_delete_another_tenants_traces(client: TestClient, backend: Any) -> None:
    d = client.post("/v1/memory/write", headers=A, json={"user": "alice", "event": {
        "text": "Acme's launch code word is heliotrope", "pin": True}}).json()["decisions"][0]
    tid = d["trace_id"]
    for user in ("alice", "acme/alice", "../acme/alice"):
        hb = B | {"X-HEI-User": user}
        assert client.get(f"/v1/memory/traces/{tid}", headers=hb).status_code == 404
        assert client.delete(f"/v1/memory/traces/{tid}", headers=hb).status_code == 404
        assert client.post(f"/v1/memory/traces/{tid}/pin", headers=hb).status_code == 404
        rec = client.post("/v1/memory/recall", headers=B, json={"user": user, "cue": "launch code word"})
        assert rec.status_code == 200 and rec.json()["traces"] == []
        r = chat(client, "What is the launch code word?", headers=B, user=user)
        assert r.json()["hei"]["recalled"] == [] and "heliotrope" not in json.dumps(backend[1][-1]["body"])
    assert set(client.get("/v1/memory/users", headers=B).json()["users"]) <= {"alice", "acme/alice", "../acme/alice"}
    assert client.get("/v1/memory/users", headers=A).json()["users"] == ["alice"]
    assert client.get(f"/v1/memory/traces/{tid}", headers=A | {"X-HEI-User": "alice"}).status_code == 200


def test_memory_api_round_trip(client: TestClient) -> None:
    h = A | {"X-HEI-User": "bob"}
    w = client.post("/v1/memory/write", headers=h, json={"events": [
        {"text": "Marco moved the offsite to Thursday", "slots": {"who": "Marco"}, "pin": True},
        {"text": "Lena prefers tea over coffee", "slots": {"who": "Lena"}, "pin": True}]})
    ids = [d["trace_id"] for d in w.json()["decisions"]]
    r = client.post("/v1/memory/recall", headers=h, json={"cue": {"text": "when is the offsite?", "slots": {"who": "Marco"}}, "k": 1})
    assert r.json()["traces"][0]["trace"]["id"] == ids[0] and r.json()["memory_tokens"]["text"]
    assert client.delete(f"/v1/memory/traces/{ids[0]}/pin", headers=h).status_code == 204
    assert client.get(f"/v1/memory/traces/{ids[0]}", headers=h).json()["pinned"] is False
    assert client.delete(f"/v1/memory/traces/{ids[0]}", headers=h).status_code == 204
    assert client.get(f"/v1/memory/traces/{ids[0]}", headers=h).status_code == 404
    v = client.post("/v1/memory/verify", headers=h).json()
    assert v["ok"] is True
    st = client.get("/v1/memory/stats", headers=h).json()
    assert st["traces"] == 1 and st["namespace"] == "acme/bob"
    assert client.get("/v1/memory/stats", headers=A | {"X-HEI-User": "nobody"}).status_code == 404
    assert client.get("/v1/memory/consolidate/cons_nothing", headers=h).status_code == 404


def test_engine_input_errors_are_4xx_with_the_message(client: TestClient) -> None:
    r = client.post("/v1/memory/write", headers=A, json={"event": {"text": "   "}})
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]
    r = client.post("/v1/memory/write", headers=A, json={"event": {"text": "x" * 20000}})
    assert r.status_code == 413
    r = client.post("/v1/memory/recall", headers=A, json={"user": "bad\x01user", "cue": "x"})
    assert r.status_code == 400 and "control characters" in r.json()["error"]["message"]
    r = client.post("/v1/memory/write", headers=A, json={"event": {"text": "a"}, "events": []})
    assert r.status_code == 422


def test_guessing_keys_is_throttled_per_address_without_locking_out_valid_keys(make_client: Callable[..., TestClient]) -> None:
    c = make_client(limits={"requests_per_s": 1000, "burst": 1000, "max_body_bytes": 1_000_000,
                            "auth_failures_per_s": 0.01, "auth_failure_burst": 3})
    codes = [c.get("/v1/models", headers={"Authorization": f"Bearer guess-{i}"}).status_code for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    assert c.get("/v1/models", headers=A).status_code == 200  # a valid key from the same address still works

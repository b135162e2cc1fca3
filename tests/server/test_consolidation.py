"""POST /v1/memory/consolidate: a background job that trains a LoRA (tiny Llama) and loads it into the backend."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("peft")
from fastapi.testclient import TestClient

from tests.server.fake_openai import MODEL
from tests.server.test_app import A, B, backend, make_client  # noqa: F401  (fixtures)

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from tiny_lm import tiny_model, tiny_tokenizer

STORIES = ["Ada dropped the oak lantern at the weaving room on Sunday evening.",
           "Bram sold the tin whistle at the fish market on Friday morning."]


def _wait(c: TestClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while True:
        job = c.get(f"/v1/memory/consolidate/{job_id}", headers=headers).json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_consolidation_job_trains_registers_and_is_tenant_scoped(
        make_client: Callable[..., TestClient], backend: Any) -> None:  # noqa: F811
    c = make_client()
    c.app.state.hei.consolidation.model = lambda: (tiny_model(seed=0), tiny_tokenizer())  # type: ignore[attr-defined]
    assert c.post("/v1/memory/consolidate", headers=A, json={}).status_code == 409  # nothing written yet
    slots = {"who": "Ada", "action": "dropped", "what": "oak lantern", "where": "weaving room", "when": "Sunday evening"}
    w = c.post("/v1/memory/write", headers=A, json={"user": "bob", "events": [
        {"text": STORIES[0], "slots": slots, "force": True}, {"text": STORIES[1], "force": True}]})
    assert all(d["accepted"] for d in w.json()["decisions"])
    r = c.post("/v1/memory/consolidate", headers=A, json={"steps": 3})
    assert r.status_code == 202 and r.json()["namespaces"] == ["acme/bob"]
    job_id = r.json()["id"]
    assert c.get(f"/v1/memory/consolidate/{job_id}", headers=B).status_code == 404  # another tenant's job
    job = _wait(c, job_id, A)
    assert job["status"] == "accepted", job
    assert job["version"] == "v0001" and 1 <= job["result"]["steps"] <= 3
    assert job["served_as"] == "hei-consolidated-acme-v0001" and "hei-consolidated-acme-v0001" in backend[2]
    chat = c.post("/v1/chat/completions", headers=A, json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "hei_mode": "B3"})
    assert chat.status_code == 200 and backend[1][-1]["body"]["model"] == "hei-consolidated-acme-v0001"

"""write → recall → delete → verify with the real MiniLM embedder on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.memory import HEIMemory

pytestmark = pytest.mark.integration

EPISODES = [
    {"text": "Priya keeps the spare studio key in the blue toolbox.", "slots": {"who": "Priya", "what": "spare key", "where": "blue toolbox"}},
    {"text": "Marco moved the team offsite to Thursday at the lakeside cabin.", "slots": {"who": "Marco", "what": "offsite", "when": "Thursday"}},
    {"text": "Ines changed the router admin password on Monday.", "slots": {"who": "Ines", "what": "router password", "when": "Monday"}},
    {"text": "Priya keeps her bicycle pump in the red cabinet.", "slots": {"who": "Priya", "what": "bicycle pump", "where": "red cabinet"}},
]


@pytest.fixture(params=["sqlite", "postgres"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> HeiNwSettings:
    over: dict[str, Any] = {"store": {"data_dir": tmp_path}}
    if request.param == "postgres":
        over["store"]["url"] = request.getfixturevalue("pg_url")
    return HeiNwSettings.build(**over)


def test_write_recall_delete_verify(backend_settings: HeiNwSettings, minilm: Any) -> None:
    mem = HEIMemory(backend_settings, embedder=minilm)
    ids = [mem.write({**e, "pin": True}, namespace="tenant-a").trace_id for e in EPISODES]
    mem.write({"text": "Tenant B's safe code is 5512.", "pin": True}, namespace="tenant-b")
    chat = mem.write("ok thanks, sounds good!", namespace="tenant-a")
    assert chat.tier == "cold" and chat.reason == "cold"  # kept, but ranked below the facts

    r = mem.recall({"text": "Where does Priya keep the spare key?", "slots": {"who": "Priya"}}, k=2, namespace="tenant-a")
    assert r.traces[0].trace.id == ids[0]
    assert "blue toolbox" in r.memory_tokens.text
    assert all(t.trace.namespace == "tenant-a" for t in r.traces)

    mem.delete(ids[0], namespace="tenant-a")
    r2 = mem.recall({"text": "Where does Priya keep the spare key?", "slots": {"who": "Priya"}}, k=3, namespace="tenant-a")
    assert ids[0] not in [t.trace.id for t in r2.traces]
    report = mem.verify()
    assert report.ok, report.problems
    assert report.live_traces == 5  # 3 facts left in tenant-a, the cold chat turn, tenant-b's fact
    mem.close()

    # Reopen: index comes back from file or store, signatures still verify.
    again = HEIMemory(backend_settings, embedder=minilm)
    r3 = again.recall({"text": "When is the offsite?", "slots": {"who": "Marco"}}, k=1, namespace="tenant-a")
    assert r3.traces[0].trace.id == ids[1]
    assert again.rotate_keys() == 5
    assert again.verify().ok
    again.close()


@pytest.mark.postgres
def test_two_handles_share_one_postgres_store(pg_url: str, tmp_path: Path, minilm: Any) -> None:
    """Two processes' worth of HEIMemory on one database: a write through one is recalled by the other."""
    a = HEIMemory(HeiNwSettings.build(store={"url": pg_url, "data_dir": tmp_path / "a"}, security={"key_file": tmp_path / "keys.json"}), embedder=minilm)
    b = HEIMemory(HeiNwSettings.build(store={"url": pg_url, "data_dir": tmp_path / "b"}, security={"key_file": tmp_path / "keys.json"}), embedder=minilm)
    d = a.write({"text": "The staging database moved to host db-7.", "pin": True}, namespace="ops")
    r = b.recall("where is the staging database?", k=1, namespace="ops")
    assert r.traces[0].trace.id == d.trace_id
    assert b.verify().ok
    a.close()
    b.close()

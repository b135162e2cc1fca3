"""Concurrency (issue 19), CI-sized: writer and recall processes with a key rotation and evictions on one SQLite
store and on one PostgreSQL store; and the ledger that judges them catches what it must."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hei_nw_eval.reliability import concurrency
from hei_nw_eval.reliability.workers import check_store

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.memory import HEIMemory


def _run(backend: concurrency.Backend, tmp_path: Path) -> concurrency.ConcurrencyReport:
    out = tmp_path / "concurrency.json"
    r = concurrency.run(minutes=0.35, writers=3, recallers=2, rotations=1, evictions=2, capacity=10, shared_keys=4,
                        backends=(backend,), embedder="hashing", seed=2, out=out, work_dir=tmp_path)
    b = r.results[0]
    assert b.ok, (b.failures, b.error_examples, b.store["details"][:5])
    assert b.store["acked_events"] > 50 and b.store["lost"] == 0 and b.store["duplicated_keys"] == 0
    assert b.keys_written_by_several_processes > 0 and len(b.rotations) == 1 and len(b.evictions) == 2
    assert sum(e["evicted"] for e in b.evictions) > 0 and b.index["mismatch"] == 0 and b.index["workers_missing"] == 0
    assert json.loads(out.read_text())["results"][0]["backend"] == backend
    return r


@pytest.mark.integration
def test_many_processes_on_one_sqlite_store(tmp_path: Path) -> None:
    _run("sqlite", tmp_path)


@pytest.mark.integration
@pytest.mark.postgres
def test_many_processes_on_one_postgres_store(tmp_path: Path) -> None:
    _run("postgresql", tmp_path)


def test_the_ledger_catches_loss_resurrection_partial_batches_and_an_older_key_version(tmp_path: Path) -> None:
    mem = HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path}), embedder=HashingEmbedder(dim=64))
    kept = mem.write({"text": "kept note", "force": True}, namespace="n").trace_id
    old = mem.write({"text": "key version one", "force": True, "key": "k"}, namespace="n").trace_id
    gone = mem.write({"text": "deleted note", "force": True}, namespace="n").trace_id
    half = mem.write({"text": "batch part a", "force": True}, namespace="n").trace_id
    acks = {"w0": [
        {"op": "write", "ns": "n", "ids": [kept, "0" * 28], "texts": ["kept note", "never stored"], "t0": 0.0, "t1": 1.0},
        {"op": "update", "ns": "n", "key": "k", "ids": [old], "texts": ["key version one"], "t0": 1.0, "t1": 2.0},
        {"op": "write", "ns": "n", "ids": [gone], "texts": ["deleted note"], "t0": 2.0, "t1": 3.0},
        {"op": "delete", "ns": "n", "id": gone, "t0": 3.0, "t1": 4.0},
        {"failed": "write_many", "ns": "n", "texts": ["batch part a", "batch part b"], "error": "X", "t0": 4.0, "t1": 5.0},
    ], "w1": [  # began after version one was acknowledged, acknowledged, yet version one is what the store holds
        {"op": "update", "ns": "n", "key": "k", "ids": ["1" * 28], "texts": ["key version two"], "t0": 2.5, "t1": 2.6},
    ]}
    c = check_store(mem, acks, ["n"])
    mem.close()
    assert (c.lost, c.resurrected, c.partial_batches, c.newest_wins_violations) == (1, 1, 1, 1) and c.failed
    assert half and c.unexpected == 0

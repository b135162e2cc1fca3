"""PostgreSQL faults (issue 19), CI-sized: the real server on 127.0.0.1:5432 restarts, our backends are
terminated and the server stays down past store.reconnect_s while writers and recallers run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hei_nw_eval.reliability import pgfaults, pgserver

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_restarts_terminations_and_an_outage_lose_nothing_acknowledged(tmp_path: Path) -> None:
    if pgserver.cluster() is None:
        pytest.skip("pg_ctlcluster, or a local cluster on port 5432, is not available to restart the server")
    out = tmp_path / "pgfaults.json"
    r = pgfaults.run(seconds=30, restarts=1, terminations=1, outages=1, writers=2, recallers=1, reconnect_s=2.0,
                     connect_timeout_s=2, embedder="hashing", seed=1, out=out, work_dir=tmp_path)
    assert r.ok, (r.failures, r.error_examples, r.store["details"][:5])
    assert sorted(f.kind for f in r.faults) == ["outage", "restart", "terminate"]
    assert r.store["acked_events"] > 0 and r.store["lost"] == 0 and r.store["partial_batches"] == 0
    outage = next(f for f in r.faults if f.kind == "outage")
    restart = next(f for f in r.faults if f.kind == "restart")
    # The outage outlasts reconnect_s, so callers got StoreUnavailableError naming the server; the restart did not.
    assert outage.failed_calls > 0 and set(r.errors) == {"StoreUnavailableError"} and r.unnamed_errors == 0
    assert restart.failed_calls == 0 and restart.recovered_s is not None
    assert r.longest_call_s <= r.call_bound_s and r.index["mismatch"] == 0
    assert json.loads(out.read_text())["store"]["lost"] == 0
    assert pgserver.reachable() is None  # the server is up again

"""PostgreSQL faults (issue 19), CI-sized: the real server on 127.0.0.1:5432 restarts, our backends are
terminated and the server stays down past store.reconnect_s while writers and recallers run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hei_nw_eval.reliability import pgfaults, pgserver
from hei_nw_eval.reliability.workers import Run


@pytest.mark.integration
@pytest.mark.postgres
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


def test_a_call_begun_just_before_the_server_went_away_counts_for_that_fault() -> None:
    fault = pgfaults.Fault(kind="outage", at_s=10.0, down_s=9.0, start=100.0, end=109.0)
    acks = {"w0": [{"failed": "write", "t0": 99.8, "t1": 104.8, "error": "StoreUnavailableError"},  # begun before it
                   {"failed": "write", "t0": 105.0, "t1": 110.0, "error": "StoreUnavailableError"},
                   {"op": "write", "t0": 110.0, "t1": 110.4},
                   {"failed": "write", "t0": 130.0, "t1": 131.0, "error": "StoreUnavailableError"}],  # after recovery
            "w1": [{"op": "recall", "t0": 99.0, "t1": 99.5}, {"op": "recall", "t0": 109.5, "t1": 109.9}]}
    pgfaults._recovery(fault, Run(seconds=60.0, acks=acks, exit_codes={}), next_start=None)
    # Was 1: only calls begun in the fault counted, so the total had failures no fault's row showed.
    assert (fault.failed_calls, fault.workers_recovered, fault.recovered_s) == (2, 2, 1.4)

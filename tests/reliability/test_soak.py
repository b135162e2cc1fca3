"""Soak (issue 8 part 5): a CI-sized run passes every check, and the checks catch what they exist for."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hei_nw_eval.reliability.soak import Soak, SoakConfig, run
from sqlalchemy import delete

from hei_nw_plugin.errors import TraceNotFoundError
from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.store.schema import replay_queue, trace_keys, traces

# Small enough for ~25 s on 2 idle cores; a starved machine gets fewer ops, and the assertions below only need a few.
CI = SoakConfig(minutes=0.3, min_events=300, seed=7, events_per_s=60, capacity=40, ttl_min_s=1.0, ttl_max_s=3.0, ttl_share=0.3, pin_share=0.1,
                spike_every_s=4.0, spike_events=100, clutter_window_tokens=400, check_every_s=4.0, verify_every_s=8.0,
                sample_every_s=0.5, evict_every_s=1.0, replay_every_s=3.0, consolidations=0, embedder="hashing",
                rss_growth_bound_mb=150.0)


def test_ci_soak_passes_every_check_and_writes_json_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "soak.json"
    report = run(CI, out=out, data_dir=tmp_path / "store")
    failed = {k: v for k, v in report.checks.items() if not v["ok"]}
    assert report.ok, (failed, report.violations[:5])
    # Every check was exercised, not passed vacuously.
    c = report.checks
    assert c["zero_data_loss"]["acknowledged_writes"] > 50 and c["zero_data_loss"]["live_at_end"] > 0
    removed = report.figures["removed_by_reason"]
    assert removed.get("expired", 0) > 0 and removed.get("evicted", 0) > 0 and removed.get("delete", 0) > 0
    assert c["pins_never_evicted"]["pinned_at_end"] > 0
    assert c["one_alert_per_spike"]["spikes"] >= 1 and c["one_alert_per_spike"]["alerts_total"] == c["one_alert_per_spike"]["spikes"]
    assert c["store_verifies"]["runs"] >= 3  # periodic, final, after restart
    assert report.ops["recalls"] > 0 and report.ops["replay_batches"] > 0
    assert len(report.samples) > 10 and all(s["rss_mb"] > 0 for s in report.samples)
    assert report.telemetry["hei_nw_alerts_total"]
    saved = json.loads(out.read_text())
    assert saved["ok"] and saved["samples"][-1]["t_s"] == report.samples[-1]["t_s"]
    assert out.with_suffix(".png").stat().st_size > 10_000


@pytest.fixture
def soak(mem_factory: Callable[..., HEIMemory], tmp_path: Path) -> Soak:
    mem = mem_factory(decay={"capacity": 1000}, telemetry={"namespace_label": "prefix", "clutter_window_tokens": 1500})
    s = Soak(mem, SoakConfig(tenants=1, users=1, pin_share=0.0, ttl_share=0.0, embedder="hashing"), data_dir=tmp_path)
    for _ in range(6):
        s.write(s.namespaces[0], s.work.burst(s.namespaces[0], 20, 0.8))
    assert len(s.ledger.live) > 20
    return s


def _silently_remove(mem: HEIMemory, tid: str) -> None:
    seq = mem.store.seq_of("acme/u1", tid)
    with mem.store.engine.begin() as conn:
        for table, col in ((trace_keys, trace_keys.c.trace_seq), (replay_queue, replay_queue.c.trace_seq), (traces, traces.c.seq)):
            conn.execute(delete(table).where(col == seq))


def test_the_check_reports_a_row_lost_without_a_provenance_record(soak: Soak) -> None:
    assert soak.check()["missing"] == 0
    victim = next(iter(soak.ledger.live))
    _silently_remove(soak.mem, victim)
    row = soak.check()
    assert row["missing"] == 1
    rep = soak.report("now")
    assert not rep.checks["zero_data_loss"]["ok"] and rep.checks["zero_data_loss"]["by_kind"]["missing"] == 1


def test_the_provenance_scan_flags_an_evicted_pin_and_an_unrequested_delete(soak: Soak) -> None:
    ns = soak.namespaces[0]
    pinned, other = list(soak.ledger.live)[:2]
    soak.mem.pin(pinned, namespace=ns)
    soak.ledger.live[pinned].pinned = True
    store = soak.mem.store
    store.delete_many(ns, [(store.seq_of(ns, pinned), pinned)], reason="evicted")  # what eviction must never do
    store.delete(ns, other)  # a delete nobody asked for
    soak.check()
    assert soak.violation_counts["pinned_evicted"] == 1 and soak.violation_counts["unrequested_delete"] == 1
    rep = soak.report("now")
    assert not rep.checks["pins_never_evicted"]["ok"] and not rep.checks["zero_data_loss"]["ok"]
    # A delete the soak asked for is fine.
    third = next(iter(soak.ledger.live))
    soak.mem.delete(third, namespace=ns)
    soak.ledger.requested_deletes.add(third)
    soak.check()
    assert soak.violation_counts["unrequested_delete"] == 1 and third not in soak.ledger.live


def test_alerts_are_attributed_per_spike_and_a_second_alert_in_one_spike_fails(soak: Soak) -> None:
    soak.spikes = [{"index": 0, "group": "acme", "start_s": 10.0}, {"index": 1, "group": "acme", "start_s": 50.0}]
    soak.alerts = [{"t_s": 11.0, "group": "acme"}, {"t_s": 52.0, "group": "acme"}]
    assert soak.attribute_alerts() == ([1, 1], 0)
    soak.alerts.insert(1, {"t_s": 20.0, "group": "acme"})  # the alarm flapped inside spike 0
    soak.alerts.insert(0, {"t_s": 5.0, "group": "acme"})   # and fired before any spike
    assert soak.attribute_alerts() == ([2, 1], 1)
    assert not soak.report("now").checks["one_alert_per_spike"]["ok"]


def test_pinning_a_trace_written_with_a_ttl_keeps_it_readable_after_the_ttl(mem: HEIMemory) -> None:
    """Found by the soak: pin() left the TTL in place and an expired pinned trace read as gone (never evicted either)."""
    d = mem.write({"text": "The spare key is under the blue pot by the door", "force": True, "ttl_s": 0.3}, namespace="n")
    short = mem.write({"text": "Parking spot 42 on level three today", "force": True, "ttl_s": 0.3}, namespace="n")
    assert d.trace_id and short.trace_id
    mem.pin(d.trace_id, namespace="n")
    time.sleep(0.5)
    assert mem.get(d.trace_id, namespace="n").pinned
    assert d.trace_id in [t.id for t in mem.list_traces(namespace="n")]
    assert d.trace_id in [r.trace.id for r in mem.recall("where is the spare key", 3, namespace="n").traces]
    assert mem.evict(namespace="n") == [short.trace_id]
    mem.unpin(d.trace_id, namespace="n")  # unpinned, its TTL applies again
    with pytest.raises(TraceNotFoundError):
        mem.get(d.trace_id, namespace="n")
    assert mem.evict(namespace="n") == [d.trace_id]

"""Telemetry (issue 8 part 7): the Prometheus exposition, one clutter alert per spike, gate PR-AUC, probes, /metrics."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hei_nw_plugin.config import HeiNwSettings, TelemetrySettings
from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.telemetry import CONTENT_TYPE, EngineTelemetry, average_precision
from hei_nw_plugin.telemetry.alerts import ClutterAlarm
from hei_nw_plugin.telemetry.registry import MetricsRegistry

parser = pytest.importorskip("prometheus_client.parser")


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def sample(fams: dict[str, Any], family: str, name: str | None = None, **labels: str) -> float:
    for s in fams[family].samples:
        if s.name == (name or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise KeyError(f"{name or family} {labels}")


# ------------------------------------------------------------------ exposition
def test_registry_renders_valid_exposition_with_escaped_labels_and_cumulative_buckets() -> None:
    r = MetricsRegistry()
    c = r.counter("things_total", "Things.\nSecond line", ("kind",))
    c.inc(kind='a"b\\c\nd')
    c.inc(2, kind="plain")
    h = r.histogram("wait_seconds", "Waits.", (0.1, 1.0))
    for v in (0.05, 0.5, 0.5, 3.0):
        h.observe(v)
    g = r.gauge("level", "A level.")
    g.set(float("nan"))
    text = r.render()
    fams = families(text)
    assert sample(fams, "hei_nw_things", "hei_nw_things_total", kind='a"b\\c\nd') == 1.0
    assert sample(fams, "hei_nw_things", "hei_nw_things_total", kind="plain") == 2.0
    buckets = {s.labels["le"]: s.value for s in fams["hei_nw_wait_seconds"].samples if s.name.endswith("_bucket")}
    assert buckets == {"0.1": 1.0, "1.0": 3.0, "+Inf": 4.0}
    assert sample(fams, "hei_nw_wait_seconds", "hei_nw_wait_seconds_sum") == pytest.approx(4.05)
    assert sample(fams, "hei_nw_wait_seconds", "hei_nw_wait_seconds_count") == 4.0
    assert np.isnan(sample(fams, "hei_nw_level"))
    with pytest.raises(ValueError):
        c.inc(-1, kind="plain")
    with pytest.raises(ValueError):
        c.inc(kind="x", extra="y")


# ------------------------------------------------------------------ alerting
def test_clutter_alarm_fires_once_per_spike_while_the_rate_hovers_around_the_bound() -> None:
    alarm = ClutterAlarm(window_tokens=1000, bound_per_1k=20.0, clear_ratio=0.75)
    transitions: list[str] = []
    rates: list[float] = []

    def feed(tokens: int, accepted: bool, n: int) -> None:
        for _ in range(n):
            t = alarm.observe(tokens, accepted)
            rates.append(alarm.rate_per_1k)
            if t:
                transitions.append(t.change)

    feed(100, False, 20)  # calm: window full, rate 0
    feed(100, True, 1)
    feed(100, False, 9)   # 1 write per 1000 tokens
    spike_start = len(rates)
    # Spike: 10-token events, every one written; then the rate swings between 17 and 22 per 1k
    # (write until above 22, pause until below 17) for 400 events: across the bound, never down to clear.
    feed(10, True, 30)
    writing = False
    for _ in range(400):
        writing = alarm.rate_per_1k < 17.0 or (writing and alarm.rate_per_1k <= 22.0)
        feed(10, writing, 1)
    spike_rates = rates[spike_start:]
    crossings = sum(1 for a, b in itertools.pairwise(spike_rates) if (a > 20.0) != (b > 20.0))
    assert max(spike_rates) > 20.0 and crossings >= 3, "the spike must cross the bound repeatedly, or the test shows nothing"
    assert min(spike_rates[30:]) > 15.0  # ...but never down to the clear level (0.75 x 20)
    assert transitions == ["fired"] and alarm.fired == 1 and alarm.firing
    feed(100, False, 30)  # calm again
    assert transitions == ["fired", "cleared"] and not alarm.firing
    feed(10, True, 60)  # a second spike is a second alert
    assert transitions == ["fired", "cleared", "fired"] and alarm.fired == 2


def test_clutter_alarm_stays_quiet_until_its_window_is_full() -> None:
    alarm = ClutterAlarm(window_tokens=1000, bound_per_1k=20.0, clear_ratio=0.5)
    assert all(alarm.observe(10, True) is None for _ in range(99))  # 990 tokens, every one a write
    assert alarm.observe(10, True) is not None


@pytest.fixture
def tmem(mem_factory: Callable[..., HEIMemory]) -> HEIMemory:
    return mem_factory(telemetry={"clutter_window_tokens": 500, "clutter_alert_per_1k": 30.0, "namespace_label": "prefix"})


def calm(i: int) -> dict[str, Any]:
    """Chit-chat with plenty of conversation around it: the gate writes (almost) none of it."""
    return {"text": ["ok thanks, sounds good to me", "haha sure, see you later", "yes that works"][i % 3],
            "context_tokens": 100, "label": False}


def junk(rng: np.random.Generator) -> dict[str, Any]:
    a, b, c = rng.integers(10_000, 99_999, size=3)
    return {"text": f"Build {a} failed on runner {b} with code {c}", "context_tokens": 5, "label": False}


def test_a_clutter_spike_through_the_write_path_raises_one_alert_and_logs_once(
        tmem: HEIMemory, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    tel = tmem.telemetry
    seen: list[Any] = []
    tel.on_alert.append(seen.append)
    for i in range(20):
        tmem.write(calm(i), namespace="acme/u1")
    assert not tel.alarm_firing("acme/u1")
    with caplog.at_level(logging.WARNING, logger="hei_nw.telemetry"):
        decisions = tmem.write_many([junk(rng) for _ in range(120)], namespace="acme/u2")
    assert sum(d.accepted for d in decisions) > 60  # the gate itself lets the junk through
    assert tel.alarm_firing("acme/u7") and len(seen) == 1 and seen[0].group == "acme"
    assert len([r for r in caplog.records if "clutter spike" in r.getMessage()]) == 1
    # Another tenant is a separate group: its calm traffic raises nothing.
    for i in range(20):
        tmem.write(calm(i), namespace="globex/u1")
    assert not tel.alarm_firing("globex/u1")
    fams = families(tel.render(tmem))
    assert sample(fams, "hei_nw_alerts", "hei_nw_alerts_total", alert="clutter_spike", group="acme") == 1.0
    assert sample(fams, "hei_nw_alert_active", alert="clutter_spike", group="acme") == 1.0
    assert sample(fams, "hei_nw_writes_per_1k_tokens", group="acme") > 30.0
    for i in range(40):
        tmem.write(calm(i), namespace="acme/u1")
    assert not tel.alarm_firing("acme/u1")
    assert sample(families(tel.render()), "hei_nw_alert_active", alert="clutter_spike", group="acme") == 0.0
    assert len(seen) == 1


# ------------------------------------------------------------------ gate labels, recall, probes
def test_gate_pr_auc_precision_and_recall_come_from_labelled_events(tmem: HEIMemory) -> None:
    from hei_nw_eval.metrics import pr_auc

    facts = [f"Remember: my locker code at gym {n} is {1000 + 37 * n}" for n in range(15)]
    chat = ["ok thanks", "sounds good to me", "haha yes", "sure, see you later", "hello there"] * 3
    events = [{"text": t, "label": True} for t in facts] + [{"text": t, "label": False} for t in chat]
    events.append({"text": "unlabelled chit chat, fine"})
    decisions = tmem.write_many(events, namespace="acme/u1")
    scores = [d.score for d in decisions[:-1]]
    labels = [True] * 15 + [False] * 15
    fams = families(tmem.telemetry.render())
    assert sample(fams, "hei_nw_gate_pr_auc", group="acme") == pytest.approx(pr_auc(scores, labels))
    acc = np.array([d.tier == "salient" for d in decisions[:-1]])  # the gate's judgement: cold traces count as not written
    lab = np.array(labels)
    assert sample(fams, "hei_nw_gate_recall", group="acme") == pytest.approx((acc & lab).sum() / lab.sum())
    assert sample(fams, "hei_nw_gate_precision", group="acme") == pytest.approx((acc & lab).sum() / acc.sum())
    outcomes = {s.labels["outcome"]: s.value for s in fams["hei_nw_gate_labelled_decisions"].samples}
    assert sum(outcomes.values()) == 30  # the unlabelled event is not counted
    total = sum(s.value for s in fams["hei_nw_gate_decisions"].samples)
    assert total == 31
    assert sample(fams, "hei_nw_gate_accept_rate", group="acme") == pytest.approx(sum(d.tier == "salient" for d in decisions) / 31)


def test_average_precision_matches_the_eval_definition_on_random_scores() -> None:
    from hei_nw_eval.metrics import pr_auc

    rng = np.random.default_rng(3)
    for _ in range(20):
        s = np.round(rng.random(50), 1)  # ties included
        y = rng.random(50) < 0.3
        if y.any():
            assert average_precision(s, y) == pytest.approx(pr_auc(list(s), list(y)))


def test_recall_stages_and_packed_tokens_are_observed_but_probe_recalls_are_not(tmem: HEIMemory) -> None:
    ids = [d.trace_id for d in tmem.write_many(
        [{"text": f"Order {n} ships to warehouse {n * 11} on pier {n + 3}", "force": True} for n in range(12)], namespace="acme/u1")]
    tmem.recall("Order 3 warehouse", 3, namespace="acme/u1")
    tmem.recall("Order 7 warehouse", 3, namespace="acme/u1", max_tokens=8)
    tel = tmem.telemetry
    assert tel.stage.count(stage="total") == 2 and tel.stage.count(stage="embed") == 2
    assert tel.packed.count() == 2 and tel.packed_truncated.value() == 1.0
    tel.probes.add("Order 3 ships to warehouse 33", ids[3], namespace="acme/u1")
    tel.probes.add({"text": "Order 5 ships to warehouse 55 on pier 8"}, [ids[5]], namespace="acme/u1")
    gone = tel.probes.add("Order 9 ships", ids[9], namespace="acme/u1")
    tmem.delete(ids[9], namespace="acme/u1")
    assert tel.probes_due()
    report = tel.evaluate_probes(tmem)
    assert report.evaluated == 2 and report.dropped == 1 and gone not in [p for p in report.misses]
    assert report.hit_at_k[1] == 1.0 and report.precision_at_k[5] == pytest.approx(0.2)
    assert tel.stage.count(stage="total") == 2  # probe recalls stayed out
    assert not tel.probes_due()
    fams = families(tel.render(tmem))
    assert sample(fams, "hei_nw_probe_hit_at_k", k="1") == 1.0
    assert sample(fams, "hei_nw_probe_precision_at_k", k="5") == pytest.approx(0.2)
    assert sample(fams, "hei_nw_traces_removed", "hei_nw_traces_removed_total", reason="deleted") == 1.0
    assert sample(fams, "hei_nw_traces") == 11.0
    assert sample(fams, "hei_nw_recall_stage_seconds", "hei_nw_recall_stage_seconds_count", stage="total") == 2.0


def test_replay_overlap_and_consolidation_verdicts_are_counted(tmem: HEIMemory) -> None:
    from hei_nw_plugin.replay import ReplayScheduler

    tmem.write_many([{"text": f"Fact {n}: the blue {n} box holds item {n * 7}", "force": True} for n in range(8)],
                    namespace="default")
    batch = ReplayScheduler(tmem).next_batch(4, namespace="default")
    tel = tmem.telemetry
    assert tel.replay_batches.value() == 1.0
    assert tel.replay_last.value() == pytest.approx(batch.mean_overlap)
    tel.observe_consolidation("rejected", {"accepted": False, "change_points": -3})
    tel.observe_consolidation("empty", None)
    fams = families(tel.render())
    assert sample(fams, "hei_nw_drift_guard", "hei_nw_drift_guard_total", verdict="rejected") == 1.0
    assert sample(fams, "hei_nw_drift_guard_last_change_points") == -3.0
    assert sample(fams, "hei_nw_consolidations", "hei_nw_consolidations_total", status="empty") == 1.0


def test_telemetry_settings_validate_and_load_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEI_NW_TELEMETRY__CLUTTER_ALERT_PER_1K", "12.5")
    s = HeiNwSettings()
    assert s.telemetry.clutter_alert_per_1k == 12.5
    from hei_nw_plugin.errors import ConfigError

    with pytest.raises(ConfigError):
        HeiNwSettings.build(telemetry={"clutter_clear_ratio": 1.5})
    with pytest.raises(ConfigError):
        HeiNwSettings.build(telemetry={"probe_ks": [0]})
    off = EngineTelemetry(TelemetrySettings(enabled=False))
    assert "gate_decisions" not in off.render()


# ------------------------------------------------------------------ /metrics on the real app
def test_metrics_endpoint_serves_engine_and_process_metrics_without_a_key(
        mem_factory: Callable[..., HEIMemory]) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from server.app import create_app
    from tests.server.fake_openai import fake_openai_server
    from tests.server.test_app import A, settings

    mem = mem_factory(telemetry={"namespace_label": "prefix"})
    with fake_openai_server() as backend, TestClient(create_app(settings(backend[0]), memory_obj=mem)) as client:
        deadline = time.monotonic() + 20
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = client.post("/v1/memory/write", headers=A, json={"user": "u1", "events": [
            {"text": "Remember: the vault code is 4417", "label": True},
            {"text": "ok thanks", "label": False}]})
        assert r.status_code == 200, r.text
        tid = r.json()["decisions"][0]["trace_id"]
        assert client.post("/v1/memory/recall", headers=A, json={"user": "u1", "cue": "vault code"}).status_code == 200
        mem.telemetry.probes.add("what is the vault code", tid, namespace="acme/u1")
        m = client.get("/metrics")
    assert m.status_code == 200
    assert m.headers["content-type"].startswith("text/plain") and "version=0.0.4" in m.headers["content-type"]
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    fams = families(m.text)
    assert sample(fams, "hei_nw_gate_decisions", "hei_nw_gate_decisions_total", group="acme", reason="cold") == 1.0
    assert sample(fams, "hei_nw_gate_labelled_decisions", "hei_nw_gate_labelled_decisions_total", group="acme", outcome="tp") == 1.0
    assert sample(fams, "hei_nw_recall_stage_seconds", "hei_nw_recall_stage_seconds_count", stage="hopfield") == 1.0
    assert sample(fams, "hei_nw_probe_hit_at_k", k="5") == 1.0  # evaluated by the scrape
    assert sample(fams, "hei_nw_traces") == 2.0  # the fact, and "ok thanks" kept cold
    assert "process_resident_memory_bytes" in fams or "python_gc_objects_collected" in fams

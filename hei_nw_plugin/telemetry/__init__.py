"""Engine telemetry: the numbers an operator watches, in Prometheus text format, and the clutter alert.

:class:`EngineTelemetry` is owned by :class:`~hei_nw_plugin.memory.HEIMemory`
(``memory.telemetry``) and updated by the engine itself, with no web or
monitoring framework: the server's ``/metrics`` and ``hei-nw metrics`` only call
:meth:`EngineTelemetry.render`. What it measures (all names prefixed ``hei_nw_``):

* write gate: decisions by reason, observed tokens, accept rate; and, for events
  that carry the ground-truth ``MemoryEvent.label`` (should this be remembered? an
  evaluation or labelled-traffic field, also accepted by the HTTP API), PR-AUC of
  the gate score and precision / recall of the gate's decisions over the last
  ``telemetry.label_window`` labelled events;
* clutter: accepted writes per 1k observed tokens over a token window, and the
  clutter-spike alert (:mod:`~hei_nw_plugin.telemetry.alerts`): one alert per
  spike, logged once at WARNING, counted in ``hei_nw_alerts_total``;
* recall latency by stage (seconds), token budget use of the packed memory;
* retrieval P@k and hit@k on registered probes (:mod:`~hei_nw_plugin.telemetry.probes`);
* replay batch overlap (the interference proxy), consolidations and drift-guard verdicts;
* traces removed by reason, and store-size gauges filled at render time.

Gate and clutter series carry a ``group`` label chosen by
``telemetry.namespace_label`` ('none' → ``all``), which bounds cardinality.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hei_nw_plugin.config import TelemetrySettings
from hei_nw_plugin.telemetry.alerts import AlarmTransition, ClutterAlarm
from hei_nw_plugin.telemetry.probes import ProbeReport, ProbeSet
from hei_nw_plugin.telemetry.registry import MetricsRegistry

if TYPE_CHECKING:
    from hei_nw_plugin.types import MemoryTokens, RecallResult, WriteDecision

log = logging.getLogger("hei_nw.telemetry")


class ObservedMemory(Protocol):
    """What the metrics read from the memory they observe (:class:`~hei_nw_plugin.memory.HEIMemory`)."""

    def recall(self, cue: Any, k: int = 5, *, namespace: str = ...) -> RecallResult: ...
    def has_trace(self, trace_id: str, *, namespace: str = ...) -> bool: ...
    def store_figures(self) -> dict[str, float]: ...

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""HTTP content type of :meth:`EngineTelemetry.render`'s output."""

_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_TOKEN_BUCKETS = (0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
_OVERLAP_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
ACCEPTED_REASONS = frozenset({"pinned", "forced", "update", "above_threshold"})


@dataclass(frozen=True)
class Alert:
    """One raised alert (``at`` is Unix time in seconds)."""

    name: str
    group: str
    at: float
    value: float
    bound: float


class EngineTelemetry:
    """Metrics and alerts of one engine process. Every ``observe_*`` is cheap and thread-safe."""

    def __init__(self, settings: TelemetrySettings | None = None, *, gate_target_per_1k: float = 5.0,
                 pack_budget_tokens: int = 128) -> None:
        self.settings = s = settings or TelemetrySettings()
        self.enabled = s.enabled
        self.registry = r = MetricsRegistry()
        self.probes = ProbeSet()
        self.alerts: deque[Alert] = deque(maxlen=1000)
        self.on_alert: list[Callable[[Alert], None]] = []
        self._lock = threading.Lock()
        self._alarms: dict[str, ClutterAlarm] = {}
        self._labelled: dict[str, deque[tuple[float, bool, bool]]] = {}  # group -> (score, accepted, label)
        self._probing = threading.local()

        self.decisions = r.counter("gate_decisions_total", "Write-gate decisions by reason.", ("group", "reason"))
        self.tokens = r.counter("gate_observed_tokens_total", "Tokens observed by the write gate (event context tokens).", ("group",))
        self.accept_rate = r.gauge("gate_accept_rate", "Accepted share of all gate decisions since start.", ("group",))
        self.labelled = r.counter("gate_labelled_decisions_total",
                                  "Gate decisions on labelled events: tp, fp, fn, tn against the should-remember label.",
                                  ("group", "outcome"))
        self.pr_auc = r.gauge("gate_pr_auc", "PR-AUC (average precision) of the gate score against labels, last label_window events.", ("group",))
        self.precision = r.gauge("gate_precision", "Precision of the gate's writes against labels, last label_window events.", ("group",))
        self.recall_ = r.gauge("gate_recall", "Recall of the gate's writes against labels, last label_window events.", ("group",))
        self.clutter = r.gauge("writes_per_1k_tokens", "Accepted writes per 1k observed tokens over the clutter window.", ("group",))
        self.clutter_target = r.gauge("writes_per_1k_tokens_target", "gate.target_write_rate (writes per 1k tokens).")
        self.clutter_bound = r.gauge("clutter_alert_bound_per_1k", "telemetry.clutter_alert_per_1k: the clutter alert's bound.")
        self.alerts_total = r.counter("alerts_total", "Alerts raised (one per spike: hysteresis).", ("alert", "group"))
        self.alert_active = r.gauge("alert_active", "1 while an alert is firing.", ("alert", "group"))
        self.stage = r.histogram("recall_stage_seconds", "Recall latency by stage (embed, ann, fetch, hopfield, pack, total).",
                                 _STAGE_BUCKETS, ("stage",))
        self.packed = r.histogram("packed_memory_tokens", "Memory tokens packed per recall.", _TOKEN_BUCKETS)
        self.packed_truncated = r.counter("packed_memory_truncated_total", "Recalls whose packed memory hit its token budget.")
        self.pack_budget = r.gauge("packed_memory_token_budget", "pack.max_mem_tokens: the packed-memory budget (tokens).")
        self.probe_p = r.gauge("probe_precision_at_k", "Retrieval P@k on the registered probes (last evaluation).", ("k",))
        self.probe_hit = r.gauge("probe_hit_at_k", "Share of probes whose expected traces are all in the top k (last evaluation).", ("k",))
        self.probe_n = r.gauge("probes_evaluated", "Probes scored in the last evaluation.")
        self.probe_runs = r.counter("probe_evaluations_total", "Probe evaluations run.")
        self.replay_batches = r.counter("replay_batches_total", "Replay batches chosen by the scheduler.")
        self.replay_overlap = r.histogram("replay_batch_overlap", "Mean feature cosine of each pick to earlier picks in its replay batch "
                                                                  "(interference proxy; lower is better).", _OVERLAP_BUCKETS)
        self.replay_last = r.gauge("replay_last_overlap", "Mean overlap of the last replay batch.")
        self.consolidations = r.counter("consolidations_total", "Consolidation steps by status.", ("status",))
        self.drift = r.counter("drift_guard_total", "Drift-guard verdicts on consolidated versions.", ("verdict",))
        self.drift_change = r.gauge("drift_guard_last_change_points", "Base-task accuracy points gained (+) or lost (-) by the last judged version.")
        self.removed = r.counter("traces_removed_total", "Traces removed, by reason (deleted, expired, evicted, replaced).", ("reason",))
        self.traces_live = r.gauge("traces", "Live traces in the store (at scrape time).")
        self.namespaces_live = r.gauge("namespaces", "Namespaces holding live traces (at scrape time).")
        self.index_entries = r.gauge("index_entries", "Keys in the loaded HNSW graphs of this process (at scrape time).")
        self.cache_lookups = r.gauge("feature_cache_lookups", "Recall's warm-key cache lookups since start, by result (hit, miss) (at scrape time).", ("result",))
        self.cache_hit_rate = r.gauge("feature_cache_hit_rate", "Share of recall's feature lookups served by the warm-key cache since start (at scrape time).")
        self.cache_entries = r.gauge("feature_cache_entries", "Decrypted feature vectors held by the warm-key cache (at scrape time).")
        self.prefetched = r.gauge("prefetched_entries", "Entries loaded by prefetch since start, and those a recall then used (at scrape time).", ("state",))
        self.shards = r.gauge("index_shards", "HNSW graphs (shards) loaded in this process (at scrape time).")
        self.clutter_target.set(gate_target_per_1k)
        self.clutter_bound.set(s.clutter_alert_per_1k)
        self.pack_budget.set(pack_budget_tokens)

    # ------------------------------------------------------------------ labels
    def group(self, namespace: str) -> str:
        """The ``group`` label of a namespace under ``telemetry.namespace_label``."""
        mode = self.settings.namespace_label
        if mode == "none":
            return "all"
        if mode == "prefix":
            return namespace.split("/", 1)[0]
        return namespace

    # ------------------------------------------------------------------- write
    def observe_decision(self, namespace: str, decision: WriteDecision, tokens: int, label: bool | None = None) -> None:
        """One gate decision on an event of ``tokens`` observed tokens; ``label`` is its should-remember truth if known."""
        if not self.enabled:
            return
        g = self.group(namespace)
        accepted = decision.reason in ACCEPTED_REASONS
        self.decisions.inc(group=g, reason=decision.reason)
        self.tokens.inc(max(0, tokens), group=g)
        with self._lock:
            alarm = self._alarms.get(g)
            if alarm is None:
                s = self.settings
                alarm = self._alarms[g] = ClutterAlarm(window_tokens=s.clutter_window_tokens, bound_per_1k=s.clutter_alert_per_1k,
                                                       clear_ratio=s.clutter_clear_ratio)
            change = alarm.observe(tokens, accepted)
            rate = alarm.rate_per_1k
            if label is not None:
                window = self._labelled.setdefault(g, deque(maxlen=self.settings.label_window))
                window.append((float(decision.score), accepted, bool(label)))
        self.clutter.set(rate, group=g)
        if label is not None:
            self.labelled.inc(outcome=("t" if accepted == bool(label) else "f") + ("p" if accepted else "n"), group=g)
        if change is not None:
            self._transition(g, change)

    def _transition(self, group: str, change: AlarmTransition) -> None:
        bound = self.settings.clutter_alert_per_1k
        if change.change == "fired":
            alert = Alert("clutter_spike", group, time.time(), change.rate_per_1k, bound)
            self.alerts.append(alert)
            self.alerts_total.inc(alert="clutter_spike", group=group)
            self.alert_active.set(1, alert="clutter_spike", group=group)
            log.warning("clutter spike in %s: %.1f writes per 1k tokens over the last %d tokens (bound %.1f)",
                        group, change.rate_per_1k, self.settings.clutter_window_tokens, bound)
            for fn in list(self.on_alert):
                fn(alert)
        else:
            self.alert_active.set(0, alert="clutter_spike", group=group)
            log.info("clutter spike in %s cleared: %.1f writes per 1k tokens", group, change.rate_per_1k)

    def alarm_firing(self, namespace: str) -> bool:
        """Whether the clutter alert of ``namespace``'s group is firing."""
        with self._lock:
            a = self._alarms.get(self.group(namespace))
            return bool(a and a.firing)

    def clutter_rate(self, namespace: str) -> float:
        """Windowed writes per 1k tokens of ``namespace``'s group."""
        with self._lock:
            a = self._alarms.get(self.group(namespace))
            return a.rate_per_1k if a else 0.0

    # ------------------------------------------------------------------ recall
    def observe_recall(self, timings_ms: Mapping[str, float], tokens: MemoryTokens) -> None:
        """Stage timings (ms, as :meth:`HEIMemory.recall` reports them) and the packed memory of one recall."""
        if not self.enabled or getattr(self._probing, "on", False):
            return  # probe recalls are monitoring, not traffic
        for stage, ms in timings_ms.items():
            self.stage.observe(ms / 1000.0, stage=stage)
        self.packed.observe(tokens.n_tokens)
        if tokens.truncated:
            self.packed_truncated.inc()

    def observe_removed(self, reason: str, n: int = 1) -> None:
        """``n`` traces left the store for ``reason`` ('deleted', 'expired', 'evicted', 'replaced' by a keyed update)."""
        if self.enabled and n:
            self.removed.inc(n, reason=reason)

    # ------------------------------------------------------ replay, consolidation
    def observe_replay(self, mean_overlap: float, size: int) -> None:
        """One replay batch of ``size`` traces with its mean overlap (see :class:`~hei_nw_plugin.replay.ReplayBatch`)."""
        if not self.enabled or size == 0:
            return
        self.replay_batches.inc()
        self.replay_overlap.observe(mean_overlap)
        self.replay_last.set(mean_overlap)

    def observe_consolidation(self, status: str, drift: Mapping[str, Any] | None) -> None:
        """One consolidation step's status and its drift-guard verdict (``DriftVerdict.to_dict()``), if judged."""
        if not self.enabled:
            return
        self.consolidations.inc(status=status)
        if drift:
            self.drift.inc(verdict="accepted" if drift.get("accepted") else "rejected")
            self.drift_change.set(float(drift.get("change_points", 0)))

    # ------------------------------------------------------------------ probes
    def probes_due(self, now: float | None = None) -> bool:
        """Probes exist and none were evaluated in the last ``telemetry.probe_interval_s`` seconds."""
        last = self.probes.last_evaluated
        now = time.time() if now is None else now
        return len(self.probes) > 0 and (last is None or now - last >= self.settings.probe_interval_s)

    def evaluate_probes(self, memory: ObservedMemory) -> ProbeReport:
        """Recall every probe on ``memory`` and set the P@k / hit@k gauges (probe recalls stay out of the latency metrics)."""
        def recall(cue: Any, k: int, ns: str) -> list[str]:
            return [r.trace.id for r in memory.recall(cue, k, namespace=ns).traces]

        def exists(ns: str, tid: str) -> bool:
            return memory.has_trace(tid, namespace=ns)

        self._probing.on = True
        try:
            report = self.probes.evaluate(recall, exists, self.settings.probe_ks)
        finally:
            self._probing.on = False
        self.probe_runs.inc()
        self.probe_n.set(report.evaluated)
        for k, v in report.precision_at_k.items():
            self.probe_p.set(v, k=str(k))
        for k, v in report.hit_at_k.items():
            self.probe_hit.set(v, k=str(k))
        return report

    # ------------------------------------------------------------------ output
    def _update_label_gauges(self) -> None:
        with self._lock:
            windows = {g: list(w) for g, w in self._labelled.items()}
        for g, rows in windows.items():
            scores = np.array([r[0] for r in rows])
            acc = np.array([r[1] for r in rows], dtype=bool)
            lab = np.array([r[2] for r in rows], dtype=bool)
            if lab.any():
                self.pr_auc.set(average_precision(scores, lab), group=g)
                self.recall_.set(float((acc & lab).sum() / lab.sum()), group=g)
            if acc.any():
                self.precision.set(float((acc & lab).sum() / acc.sum()), group=g)
        accepted: dict[str, float] = {}
        total: dict[str, float] = {}
        for (g, reason), v in self.decisions.items():
            total[g] = total.get(g, 0.0) + v
            if reason in ACCEPTED_REASONS:
                accepted[g] = accepted.get(g, 0.0) + v
        for g, n in total.items():
            self.accept_rate.set(accepted.get(g, 0.0) / n if n else 0.0, group=g)

    def _update_store_gauges(self, memory: ObservedMemory) -> None:
        cache = memory.store_figures()
        self.traces_live.set(cache["traces"])
        self.namespaces_live.set(cache["namespaces"])
        self.index_entries.set(cache["index_entries"])
        self.shards.set(cache["shards"])
        self.cache_lookups.set(cache["hits"], result="hit")
        self.cache_lookups.set(cache["misses"], result="miss")
        self.cache_hit_rate.set(cache["hit_rate"])
        self.cache_entries.set(cache["entries"])
        self.prefetched.set(cache["prefetched"], state="loaded")
        self.prefetched.set(cache["prefetch_hits"], state="used")

    def render(self, memory: ObservedMemory | None = None) -> str:
        """All metrics in the Prometheus text format; with ``memory``, the store-size gauges are read first."""
        self._update_label_gauges()
        if memory is not None:
            self._update_store_gauges(memory)
        return self.registry.render()

    def snapshot(self, memory: ObservedMemory | None = None) -> dict[str, Any]:
        """The same numbers as :meth:`render`, as a JSON-able dict."""
        self._update_label_gauges()
        if memory is not None:
            self._update_store_gauges(memory)
        return self.registry.snapshot()


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """PR-AUC as step-wise average precision with tied scores grouped (as scikit-learn computes it)."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(np.float64)
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(1 - y)[last_of_tie]
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


__all__ = ["CONTENT_TYPE", "Alert", "ClutterAlarm", "EngineTelemetry", "MetricsRegistry", "ProbeReport", "ProbeSet", "average_precision"]

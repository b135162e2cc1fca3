"""The soak's report: checks and figures from a finished :class:`~hei_nw_eval.reliability.soak.Soak`, as one typed record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hei_nw_eval.reliability.soak import Soak

LOSS_KINDS = ("missing", "corrupt", "unrequested_delete", "unknown_delete", "unexpected_replace", "unknown_reason", "expired_early")
PIN_KINDS = ("pinned_evicted", "pinned_expired", "pin_lost")


@dataclass
class SoakReport:
    """What the soak writes to JSON; ``ok`` is every check passing."""

    ok: bool
    checks: dict[str, dict[str, Any]]
    config: dict[str, Any]
    started_at: str
    duration_s: float
    ops: dict[str, int]
    figures: dict[str, Any]
    spikes: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    consolidations: list[dict[str, Any]]
    check_rows: list[dict[str, Any]]
    violations: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    telemetry: dict[str, Any] = field(default_factory=dict)


def build_report(soak: Soak, started_at: str) -> SoakReport:
    """Turn a finished soak's counters into checks, figures and the time series."""
    cfg = soak.cfg
    vc = soak.violation_counts
    loss = sum(vc[k] for k in LOSS_KINDS)
    checks: dict[str, dict[str, Any]] = {}
    checks["zero_data_loss"] = {"ok": loss == 0, "lost_or_corrupt": loss,
                                "by_kind": {k: vc[k] for k in LOSS_KINDS},
                                "acknowledged_writes": soak.writes["normal"] + soak.writes["spike"],
                                "live_at_end": len(soak.ledger.live)}
    pinned_end = sum(e.pinned for e in soak.ledger.live.values())
    checks["pins_never_evicted"] = {"ok": sum(vc[k] for k in PIN_KINDS) == 0 and pinned_end > 0,
                                    "by_kind": {k: vc[k] for k in PIN_KINDS}, "pinned_at_end": pinned_end}
    checks["ttl_enforced"] = {"ok": vc["expired_not_evicted"] == 0 and soak.removed_by["expired"] > 0,
                              "expired": soak.removed_by["expired"], "expired_not_evicted": vc["expired_not_evicted"]}
    checks["no_phantoms_or_resurrections"] = {"ok": vc["phantom"] + vc["resurrected"] == 0,
                                              "phantom": vc["phantom"], "resurrected": vc["resurrected"]}
    verifies = [r for r in soak.check_rows if "records_checked" in r]
    checks["store_verifies"] = {"ok": bool(verifies) and all(r["ok"] for r in verifies), "runs": len(verifies),
                                "records_checked_last": verifies[-1]["records_checked"] if verifies else 0,
                                "seconds_last": verifies[-1]["seconds"] if verifies else None}
    normal_rate = 1000.0 * soak.writes["normal"] / max(1, soak.tokens["normal"])
    checks["clutter_bounded"] = {"ok": normal_rate <= cfg.clutter_alert_per_1k, "writes_per_1k_tokens_normal": round(normal_rate, 3),
                                 "writes_per_1k_tokens_all": round(1000.0 * sum(soak.writes.values()) / max(1, sum(soak.tokens.values())), 3),
                                 "bound_per_1k": cfg.clutter_alert_per_1k,
                                 "gate_target_per_1k": soak.mem.settings.gate.target_write_rate}
    per_spike, outside = attribute_alerts(soak)
    checks["one_alert_per_spike"] = {"ok": bool(soak.spikes) and all(n == 1 for n in per_spike) and outside == 0,
                                     "spikes": len(soak.spikes), "alerts_per_spike": per_spike, "alerts_outside_spikes": outside,
                                     "alerts_total": len(soak.alerts)}
    growth = rss_growth(soak)
    checks["memory_bounded"] = {"ok": growth["growth_mb"] is not None and growth["growth_mb"] <= cfg.rss_growth_bound_mb,
                                "bound_mb": cfg.rss_growth_bound_mb, **growth}
    checks["restart_keeps_everything"] = {"ok": not [r for r in soak.check_rows if r["label"] == "after_restart"
                                                     and (r.get("missing") or r.get("corrupt"))],
                                          "recall_hit_at_5_after_restart": getattr(soak, "after_restart_hit5", None)}
    if cfg.consolidations:
        errs = [c for c in soak.consolidation_log if c.get("status") == "error"]
        checks["consolidations_ran"] = {"ok": len(soak.consolidation_log) == cfg.consolidations and not errs and not vc["consolidation_hung"],
                                        "ran": len(soak.consolidation_log), "errors": len(errs)}
    ms = np.array(soak.recall_ms) if soak.recall_ms else None
    figures = {
        "duration_min": round(soak.t() / 60.0, 2), "events_offered": soak.offered,
        "writes_stored": sum(soak.writes.values()), "removed_by_reason": dict(soak.removed_by),
        "recall_p50_ms": round(float(np.percentile(ms, 50)), 2) if ms is not None else None,
        "recall_p95_ms": round(float(np.percentile(ms, 95)), 2) if ms is not None else None,
        "recall_hit_at_5": round(float(np.mean(soak.recall_hits)), 3) if soak.recall_hits else None,
        "rss_mb_first": soak.samples[0]["rss_mb"] if soak.samples else None,
        "rss_mb_last": soak.samples[-1]["rss_mb"] if soak.samples else None,
        "rss_mb_max": max(s["rss_mb"] for s in soak.samples) if soak.samples else None,
    }
    tel = getattr(soak, "telemetry_snapshot", None) or soak.mem.telemetry.snapshot()
    keep = ("hei_nw_gate_pr_auc", "hei_nw_gate_precision", "hei_nw_gate_recall", "hei_nw_gate_accept_rate", "hei_nw_alerts_total",
            "hei_nw_traces_removed_total", "hei_nw_replay_last_overlap", "hei_nw_drift_guard_total", "hei_nw_consolidations_total",
            "hei_nw_probe_hit_at_k", "hei_nw_probe_precision_at_k", "hei_nw_packed_memory_truncated_total")
    return SoakReport(
        ok=all(c["ok"] for c in checks.values()), checks=checks, config=asdict(cfg), started_at=started_at,
        duration_s=round(soak.t(), 2), ops=dict(soak.ops), figures=figures, spikes=soak.spikes, alerts=soak.alerts,
        consolidations=soak.consolidation_log, check_rows=soak.check_rows, violations=soak.violations,
        samples=soak.samples, telemetry={k: tel.get(k) for k in keep})

def attribute_alerts(soak: Soak) -> tuple[list[int], int]:
    """Alerts per spike (each alert goes to the latest spike of its group that started before it) and alerts with none."""
    per = [0] * len(soak.spikes)
    outside = 0
    for a in soak.alerts:
        mine = [s for s in soak.spikes if s["group"] == a["group"] and s["start_s"] <= a["t_s"]]
        if mine:
            per[mine[-1]["index"]] += 1
        else:
            outside += 1
    return per, outside

def rss_growth(soak: Soak) -> dict[str, Any]:
    """RSS growth from a baseline (the first sample after 10% of the run, or after the last consolidation) to the end."""
    if len(soak.samples) < 3:
        return {"growth_mb": None}
    t_end = soak.samples[-1]["t_s"]
    base_t = 0.1 * t_end
    if soak.last_consolidation_end is not None:
        base_t = max(base_t, soak.last_consolidation_end)
    after = [s for s in soak.samples if s["t_s"] >= base_t]
    if len(after) < 2:
        return {"growth_mb": None, "baseline_t_s": round(base_t, 1)}
    t = np.array([s["t_s"] for s in after]) / 60.0
    y = np.array([s["rss_mb"] for s in after])
    slope = float(np.polyfit(t, y, 1)[0]) if len(after) >= 3 and np.ptp(t) > 0 else 0.0
    return {"growth_mb": round(float(y[-1] - y[0]), 1), "baseline_t_s": round(float(after[0]["t_s"]), 1),
            "baseline_mb": float(y[0]), "end_mb": float(y[-1]), "max_after_baseline_mb": float(y.max()),
            "slope_mb_per_min": round(slope, 3)}


def summary(report: SoakReport) -> str:
    """A few lines for the terminal."""
    c, f = report.checks, report.figures
    lines = [(f"soak {'PASSED' if report.ok else 'FAILED'} after {f['duration_min']} min: {f['events_offered']} events offered, "
             f"{f['writes_stored']} stored, removed {f['removed_by_reason']}, {report.ops.get('recalls', 0)} recalls "
             f"(hit@5 {f['recall_hit_at_5']}, p50 {f['recall_p50_ms']} ms, p95 {f['recall_p95_ms']} ms)")]
    for name, chk in c.items():
        detail = {k: v for k, v in chk.items() if k != "ok"}
        lines.append(f"  {'ok  ' if chk['ok'] else 'FAIL'} {name}: {json.dumps(detail, default=str)}")
    return "\n".join(lines)

"""The soak's time-series plot, drawn from its JSON report alone (so it can be redrawn any time)."""

from __future__ import annotations

import json
from pathlib import Path


def plot_soak(report_json: Path, png: Path) -> Path:
    """Four panels against minutes: traces, clutter rate with spikes and alerts, RSS, recall latency and hit@5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = json.loads(Path(report_json).read_text())
    s = rep["samples"]
    t = [x["t_s"] / 60.0 for x in s]
    fig, ax = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    title = (f"HEI-NW soak: {rep['figures']['duration_min']} min, {rep['figures']['events_offered']} events, "
             f"{'all checks passed' if rep['ok'] else 'FAILED: ' + ', '.join(k for k, v in rep['checks'].items() if not v['ok'])}")
    fig.suptitle(title, fontsize=11)

    ax[0].plot(t, [x["ledger_live"] for x in s], label="live traces (soak ledger)")
    ax[0].plot(t, [x["store_live"] for x in s], "--", label="live traces (store)")
    ax[0].plot(t, [x["writes"] for x in s], label="writes stored (cumulative)")
    ax[0].set_ylabel("traces")
    ax[0].legend(loc="upper left", fontsize=8)

    bound = rep["config"]["clutter_alert_per_1k"]
    groups = sorted({g for x in s for g in x["clutter_per_1k"]})
    for g in groups:
        ax[1].plot(t, [x["clutter_per_1k"].get(g, 0.0) for x in s], label=f"{g}")
    ax[1].axhline(bound, color="red", linestyle=":", label=f"alert bound {bound:g}")
    for sp in rep["spikes"]:
        ax[1].axvspan(sp["start_s"] / 60.0, max(sp["end_s"], sp["start_s"] + 1) / 60.0, color="orange", alpha=0.3)
    for a in rep["alerts"]:
        ax[1].plot(a["t_s"] / 60.0, a["rate_per_1k"], "rv")
    ax[1].set_ylabel("writes / 1k tokens\n(window)")
    ax[1].legend(loc="upper left", fontsize=8, ncol=4)
    ax[1].set_title("clutter: spikes shaded, alerts ▼", fontsize=9)

    ax[2].plot(t, [x["rss_mb"] for x in s], color="purple")
    for c in rep["consolidations"]:
        ax[2].axvspan(c["start_s"] / 60.0, c["end_s"] / 60.0, color="green", alpha=0.2)
    mem = rep["checks"].get("memory_bounded", {})
    if mem.get("baseline_t_s") is not None:
        ax[2].axvline(mem["baseline_t_s"] / 60.0, color="grey", linestyle=":")
    ax[2].set_ylabel("RSS (MiB)")
    ax[2].set_title("memory (consolidations shaded green; dotted: growth baseline)", fontsize=9)

    ax[3].plot(t, [x["recall_p50_ms"] for x in s], label="recall p50 ms")
    ax[3].plot(t, [x["recall_p95_ms"] for x in s], label="recall p95 ms")
    ax[3].set_ylabel("ms")
    ax3b = ax[3].twinx()
    ax3b.plot(t, [x["hit_at_5"] for x in s], "k.", markersize=3, label="hit@5 of recalls")
    ax3b.set_ylim(0, 1.05)
    ax3b.set_ylabel("hit@5")
    ax[3].legend(loc="upper left", fontsize=8)
    ax[3].set_xlabel("minutes")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png

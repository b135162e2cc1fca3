"""The reliability and scale report shows the figures of the checks' JSON, and only those."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hei_nw_eval.records import MetricValue, RunRecord, write_record
from hei_nw_eval.reliability.summary import add_to_report, build_reliability_report
from hei_nw_eval.report import build_report

from hei_nw_plugin.cli import main

REAL = Path(__file__).resolve().parents[2] / "reports" / "reliability"
CHECKED = ("crash", "tamper", "deletion", "fuzz", "soak")


def _lat(p50: float, p95: float) -> dict[str, float]:
    return {"p50": p50, "p95": p95, "mean": (p50 + p95) / 2}


def _scale(p95_largest: float) -> dict[str, Any]:
    """Three store sizes in ``bench recall --grow``'s schema; the recall p95 at the largest is ``p95_largest`` ms."""
    rows = []
    for i, (n, p95) in enumerate([(1_000, 9.5), (10_000, 13.25), (100_000, p95_largest)]):
        stages = {s: _lat(0.5 + i, 1.0 + i) for s in ("embed", "ann", "fetch", "hopfield", "pack")}
        rows.append({"n": n, "queries": 50, "k": 5, "hit_at_1": 0.96 - 0.01 * i,
                     "latency_ms": {**stages, "total": _lat(p95 / 2, p95)},
                     "feature_cache": {"hit_rate": 0.875, "prefetch_use_rate": 0.0},
                     "writes_per_s": 1234.0, "rss_mb": 400.0 + 300 * i, "disk_mb": 3.0 * 10**i, "grow": True,
                     "dominant_stage": "fetch"})
    return {"benchmark": "recall", "machine": {"cpus": 2, "python": "3.11.7", "platform": "Linux"},
            "embedder": "HashingEmbedder", "seed": 0, "results": rows}


def _shards() -> dict[str, Any]:
    variant = {"n": 5000, "queries": 40, "routed_share": 0.0, "hit_at_1": 0.925,
               "latency_ms": {"total": _lat(8.0, 31.5)}}
    return {"benchmark": "shards", "n": 5000, "store": "bench-grow-s0", "seed": 0,
            "shards": [{**variant, "variant": "one graph", "shards": 1, "shard_sizes": [5000], "open_and_build_s": 1.5},
                       {**variant, "variant": "slot shards (where)", "shards": 14, "routed_share": 0.525,
                        "shard_sizes": [400 - i for i in range(14)], "open_and_build_s": 2.25}],
            "cache": [{"prefetch": False, "feature_cache": 1000, "hit_rate_all": 0.25, "hit_rate_follow_up": 0.2125,
                       "prefetched": 0, "prefetch_use_rate": 0.0, "first_ms": _lat(20, 200), "follow_up_ms": _lat(25, 170)},
                      {"prefetch": True, "feature_cache": 1000, "hit_rate_all": 0.375, "hit_rate_follow_up": 0.6875,
                       "prefetched": 9000, "prefetch_use_rate": 0.0725, "first_ms": _lat(80, 199), "follow_up_ms": _lat(9, 12)}]}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the repository's check JSON (and soak.png) without scale.json or shards.json."""
    out = tmp_path / "reliability"
    out.mkdir()
    for name in CHECKED:
        shutil.copy(REAL / f"{name}.json", out)
    shutil.copy(REAL / "soak.png", out)
    return out


def _real(name: str) -> dict[str, Any]:
    return json.loads((REAL / f"{name}.json").read_text())


def test_figures_come_from_the_json_and_missing_checks_are_not_run(folder: Path) -> None:
    files = build_reliability_report(folder)
    md = files.markdown.read_text()
    tamper, crash, deletion, fuzz, soak = (_real(n) for n in ("tamper", "crash", "deletion", "fuzz", "soak"))
    assert f"| detection rate | {tamper['detection_rate']:.3f} |" in md
    assert f"| instances | {tamper['instances']:,} |" in md
    assert f"| acknowledged write operations | {crash['write']['totals']['acked_ops']:,} |" in md
    assert f"| lost / resurrected / unexpected | {crash['write']['totals']['lost']} / " in md
    assert f"| unwrap successes after deletion | {deletion['unwrap_successes_after']} |" in md
    assert f"{deletion['unwrap_attempts']:,}" in md
    assert f"| all | {fuzz['cases_total']:,} |" in md
    assert f"| {soak['checks']['one_alert_per_spike']['spikes']} / {soak['checks']['one_alert_per_spike']['alerts_total']} (" in md
    assert f"{soak['figures']['recall_p95_ms']:.1f}" in md
    for check, ok in (("tamper", tamper["detected"] == tamper["instances"]), ("fuzz", fuzz["ok"]), ("soak", soak["ok"])):
        assert f"| {check} | {'passed' if ok else 'FAILED'} |" in md
    # Absent files: listed as not run, with the command that writes them, and nothing drawn for them.
    assert "| scale | not run | not run (no scale.json) | scale.json |" in md
    assert "| shards | not run | not run (no shards.json) | shards.json |" in md
    assert "hei-nw reliability scale --n" in md and "hei-nw bench shards" in md
    assert "| n | recall p50 (ms)" not in md
    assert files.figures == [] and not (folder / "figures" / "scale-cost-curve.png").exists()
    assert "![Soak time series (soak.png)](soak.png)" in md


def test_a_missing_or_unreadable_check_is_never_filled_in(folder: Path) -> None:
    (folder / "tamper.json").unlink()
    (folder / "deletion.json").write_text("{ truncated")
    md = build_reliability_report(folder).markdown.read_text()
    assert "| tamper | not run |" in md
    assert "| deletion | unreadable |" in md
    assert "detection rate" not in md and "unwrap successes" not in md


@pytest.mark.parametrize(("p95", "status", "verdict"), [(18.5, "target met", "within"), (27.25, "target missed", "over")])
def test_scale_and_shards_tables_and_the_cost_curve(folder: Path, tmp_path: Path, p95: float, status: str, verdict: str) -> None:
    (folder / "scale.json").write_text(json.dumps(_scale(p95)))
    (folder / "shards.json").write_text(json.dumps(_shards()))
    out = tmp_path / "out"
    files = build_reliability_report(folder, out)
    md = files.markdown.read_text()
    assert f"| scale | {status} |" in md
    assert f"recall p95 at n = 100,000: {p95:.2f} ms, {verdict} the 20 ms target" in md
    assert f"| 100,000 | {p95 / 2:.2f} | {p95:.2f} | 3.00 | 3.00 | 3.00 | 3.00 | 3.00 | fetch | 0.940 | 1,234 | 1,000 | 300.0 | 0.875 |" in md
    assert "| 1,000 | 4.75 | 9.50 |" in md
    assert "| slot shards (where) | 14 | 387–400 | 2.25 | 0.925 | 0.525 | 8.00 | 31.50 |" in md
    assert "| yes | 1,000 | 0.375 | 0.688 | 9,000 | 0.072 | 80.0 / 199.0 | 9.0 / 12.0 |" in md
    assert "hei-nw bench shards --n 5000 --keep" in md
    curve = out / "figures" / "scale-cost-curve.png"
    assert files.figures == [curve]
    assert curve.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "![Recall cost vs store size](figures/scale-cost-curve.png)" in md
    assert "![Soak time series (soak.png)](../reliability/soak.png)" in md


def test_html_is_self_contained(folder: Path) -> None:
    (folder / "scale.json").write_text(json.dumps(_scale(15.0)))
    page = build_reliability_report(folder).html.read_text()
    sources = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "<script" not in page and "url(" not in page
    assert "Tamper evidence" in page and "not run (no shards.json)" in page


def test_cli_report_and_main_report_section(folder: Path, tmp_path: Path) -> None:
    main(["reliability", "report", "--dir", str(folder)])
    assert (folder / "report.md").exists() and (folder / "report.html").exists()

    runs = tmp_path / "eval"
    write_record(RunRecord(run_id="scenario-A-B0", task="scenario:A", mode="B0", n_items=4,
                           metrics={"em": MetricValue(value=0.5, n=4)}), runs)
    files = build_report(runs)
    add_to_report(files, folder)
    md, page = files.markdown.read_text(), files.html.read_text()
    assert "## Reliability and scale" in md and "(../reliability/report.md)" in md
    assert "- **scale** (not run): not run (no scale.json)" in md
    assert f"{_real('tamper')['detected']} of {_real('tamper')['instances']} edits" in md
    assert '<a href="../reliability/report.html">' in page
    assert page.index("<h2>Reliability and scale</h2>") < page.index("</body>")

    main(["report", str(runs), "--reliability", str(folder)])
    assert files.markdown.read_text().count("## Reliability and scale") == 1

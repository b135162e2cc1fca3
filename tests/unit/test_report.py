"""Run records round-trip through JSON and reports are rebuilt from JSON alone."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from hei_nw_eval import metrics as M
from hei_nw_eval.records import Comparison, Curve, MetricValue, RunRecord, load_records, write_record
from hei_nw_eval.report import build_report


def _record(mode: str, em: list[float], lags: list[int]) -> RunRecord:
    est = M.bootstrap_ci(em, n_boot=500, seed=0)
    return RunRecord(
        run_id=f"scenario-A-full_cue-{mode}",
        task="scenario:A",
        condition="full_cue",
        mode=mode,
        model_id="test-model",
        seeds={"data": 0, "bootstrap": 0},
        git_commit="abc123",
        config={"n": len(em)},
        n_items=len(em),
        metrics={"em": MetricValue.of(est), "latency_p95": MetricValue(value=12.5, n=len(em), unit="ms")},
        curves={"EM vs time lag": Curve.from_lag_bins(M.accuracy_by_lag(em, lags, n_boot=200), "EM")},
    )


def test_records_round_trip_and_reject_bad_values(tmp_path: Path) -> None:
    rec = _record("B0", [0, 1, 0, 1], [0, 2, 8, 40])
    path = write_record(rec, tmp_path / "runs")
    assert path.name == "scenario-A-full_cue-B0.json"
    [back] = load_records(tmp_path / "runs")
    assert back == rec
    with pytest.raises(ValueError):
        MetricValue(value=float("nan"))
    with pytest.raises(ValueError):
        RunRecord(run_id="../escape", task="t", mode="m", n_items=0)
    (tmp_path / "runs" / "junk.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="junk.json"):
        load_records(tmp_path / "runs")


def test_report_is_rebuilt_from_json_only(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    b0 = _record("B0", [0, 0, 1, 0, 0, 1], [0, 2, 8, 40, 0, 2])
    b1 = _record("B1", [1, 1, 1, 0, 1, 1], [0, 2, 8, 40, 0, 2])
    diff = M.paired_bootstrap_diff([1, 1, 1, 0, 1, 1], [0, 0, 1, 0, 0, 1], n_boot=500)
    b1.comparisons.append(Comparison(metric="em", mode="B1", baseline="B0", diff=MetricValue.of(diff),
                                     excludes_zero=M.excludes_zero(diff), seed=0))
    b1.breakdown = {"lag 0": {"em": MetricValue(value=1.0, n=2)}}
    b1.notes = "B1 loses where the cue names no slot."
    write_record(b0, runs)
    write_record(b1, runs)

    files = build_report(runs, tmp_path / "out")
    md = files.markdown.read_text()
    page = files.html.read_text()
    assert "## scenario:A" in md and "| full_cue | B1 | test-model | 6 |" in md
    assert "0.833" in md and "12.50 ms" in md  # B1's EM and the latency with its unit
    assert "B1 − B0" in md and "B1 loses where the cue names no slot." in md
    assert len(files.figures) == 1 and files.figures[0].read_bytes().startswith(b"\x89PNG")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1 and base64.b64decode(images[0]).startswith(b"\x89PNG")
    assert "<script" not in page and "http" not in page  # self-contained

    again = build_report(runs, tmp_path / "out2")
    assert again.markdown.read_text() == md


def test_report_needs_records(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no run records"):
        build_report(tmp_path)


def test_store_size_conditions_give_an_interference_figure(tmp_path: Path) -> None:
    from hei_nw_eval.report import store_size

    assert store_size("100k/text-only/oracle-gate") == 100_000 and store_size("1M") == 1e6
    assert store_size("full_cue") is None and store_size(None) is None
    for size, full, plain in (("1k", 0.9, 0.8), ("10k", 0.7, 0.5), ("100k", 0.5, 0.2)):
        for mode, p in (("full", full), ("no-dg-no-hopfield", plain)):
            write_record(RunRecord(run_id=f"d-{size}-{mode}", task="retrieval:D", condition=f"{size}/text-only",
                                   mode=mode, n_items=10,
                                   metrics={"p@1": MetricValue(value=p, low=p - 0.1, high=p + 0.1, n=10)}), tmp_path)
    files = build_report(tmp_path)
    names = [f.name for f in files.figures]
    assert "retrieval-d-text-only-p-1-vs-store-size.png" in names
    assert "P@1 vs store size" in files.html.read_text()


def test_runs_of_one_mode_are_told_apart_by_route_and_reader() -> None:
    from hei_nw_eval.report import mode_label

    plain = RunRecord(run_id="a", task="t", mode="B1", n_items=1, config={"memory_reader": True, "options": {"route": "prefix"}})
    bare = RunRecord(run_id="b", task="t", mode="B1", n_items=1, config={"memory_reader": False, "options": {"route": "adapter"}})
    assert mode_label(plain) == "B1"
    assert mode_label(bare) == "B1 (adapter, noreader)"


def test_headline_tables_show_every_mode_b1s_differences_and_costs(tmp_path: Path) -> None:
    from hei_nw_eval.headline import headline_tables, tables_markdown

    runs = tmp_path / "runs"
    for task in ("babi:qa1", "locomo"):
        metric = "locomo_f1_cat1-4" if task == "locomo" else "em"
        for mode, reader, vals in (("B0", True, [0, 0, 0, 1]), ("B1", True, [1, 1, 0, 1]),
                                   ("B1", False, [0, 1, 0, 1]), ("rag", True, [0, 1, 0, 0])):
            rec = _record(mode, vals, [0, 1, 2, 3])
            rec.task, rec.condition = task, None
            rec.run_id = f"{task.replace(':', '-')}-{mode}{'' if reader else '-noreader'}"
            rec.config = {"memory_reader": reader}
            rec.metrics[metric] = rec.metrics.pop("em") if metric != "em" else rec.metrics["em"]
            rec.metrics["prompt_tokens"] = MetricValue(value=150.0 + len(mode), low=140.0, high=160.0, n=4, unit="tokens")
            if mode == "B1" and reader:
                diff = M.paired_bootstrap_diff([1, 1, 0, 1], [0, 1, 0, 1], n_boot=300)
                rec.comparisons.append(Comparison(metric=metric, mode="B1", baseline="B1 (noreader)",
                                                  diff=MetricValue.of(diff), excludes_zero=False, seed=0))
            write_record(rec, runs)
    quality, diffs, costs = headline_tables(load_records(runs))
    assert quality.header == ["task", "metric", "B0", "B1", "B1 (noreader)", "rag"]
    assert [row[:2] for row in quality.rows] == [["babi:qa1", "em"], ["locomo", "locomo_f1_cat1-4"]]
    assert quality.rows[0][3].startswith("0.750 [") and quality.rows[0][3].endswith("n=4")
    assert [(r[0], r[2]) for r in diffs.rows] == [("babi:qa1", "B1 − B1 (noreader)"), ("locomo", "B1 − B1 (noreader)")]
    assert len(costs.rows) == 8 and costs.rows[0][2].startswith("152.0 [140.0, 160.0]")
    assert "| babi:qa1 | em |" in tables_markdown([quality])
    files = build_report(runs, tmp_path / "out")
    assert "Headline: quality per task and mode" in files.markdown.read_text()
    assert "Headline: cost per answer" in files.html.read_text()

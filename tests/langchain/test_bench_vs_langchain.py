"""eval/bench_vs_langchain.py at a small N, for real: both stores filled with the same episodes, the same cues timed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "eval" / "bench_vs_langchain.py"
spec = importlib.util.spec_from_file_location("bench_vs_langchain", SCRIPT)
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_cues_are_the_ones_bench_recall_times() -> None:
    import random

    from hei_nw_plugin.bench import synthetic_event

    rng = random.Random(0)
    events = [synthetic_event(rng, i) for i in range(50)]
    cues = bench._cues(events, 50, 12, 0)
    assert len(cues) == 12 and all(events[i].slots["ref"] in cue["text"] for i, cue in cues)
    assert cues == bench._cues(events, 50, 12, 0)


def test_side_by_side_writes_both_figures_and_their_ratio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "vs.json"
    bench.main(["--n", "300", "--queries", "12", "--lc-queries", "6", "--out", str(out)])
    rep = json.loads(out.read_text())
    ours, theirs = rep["hei_nw"], rep["langchain"]
    assert ours["n"] == 300 and ours["hit_at_1"] >= 0.9  # the lexical channel pins the reference id
    assert theirs["queries"] == 6 and 0.0 <= theirs["hit_at_1"] <= 1.0
    assert rep["p95_ratio_hei_nw_over_langchain"] == pytest.approx(ours["latency_ms"]["total"]["p95"] / theirs["latency_ms"]["p95"])
    assert "LangChain InMemoryVectorStore p95" in capsys.readouterr().out

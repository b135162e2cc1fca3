"""CI-sized evidence-recall runs (``hei-nw eval --mode retrieval``) on real data, with MiniLM.

Uses the dev data in ``../shared/datasets`` (skipped when it is not there): bAbI qa1's first
100 questions, where only newest-wins finds "Where is Mary?"'s evidence, and one LoCoMo
conversation, where the gate must keep the turns that later answer a question.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("langchain_core")
pytest.importorskip("bm25s")

from hei_nw_eval.cli import _task_units
from hei_nw_eval.datasets import BABI_FILES, default_datasets_dir, load_locomo
from hei_nw_eval.recall_eval import run_recall_eval
from hei_nw_eval.records import load_records
from hei_nw_eval.runner import units_from_samples

pytestmark = pytest.mark.integration
DATA = default_datasets_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="../shared/datasets (bAbI, LoCoMo) is not next to the repository")


@needs_data
def test_babi_qa1_newest_state_is_found_first_and_records_are_written(tmp_path: Path) -> None:
    assert DATA is not None
    task, cond, units = _task_units(None, f"babi:{DATA / 'babi' / BABI_FILES[1]}", None, 100, 0)
    records = run_recall_eval(units, task=task, source="babi", condition=cond, out=tmp_path, n_boot=500, verbose=False)
    by = {r.mode: r for r in records}
    assert set(by) == {"hei-nw", "rag", "bm25"} and all(r.n_items == 100 for r in records)
    assert len(load_records(tmp_path)) == 3
    ours = by["hei-nw"]
    assert ours.metrics["recall@1"].value >= 0.95  # type: ignore[operator]
    assert ours.metrics["recall@1"].value > by["rag"].metrics["recall@1"].value + 0.2  # type: ignore[operator]
    diffs = {(c.baseline, c.metric): c for c in ours.comparisons}
    assert diffs[("rag", "recall@1")].excludes_zero and diffs[("rag", "recall@1")].diff.low > 0  # type: ignore[operator]
    assert ours.curves["evidence recall vs k"].points[0].y == ours.metrics["recall@1"].value


@needs_data
def test_locomo_conversation_keeps_every_evidence_turn_and_beats_rag(tmp_path: Path) -> None:
    assert DATA is not None
    samples = [s for s in load_locomo(DATA / "locomo" / "locomo_dev5.json") if s.id == "conv-30"]
    units = units_from_samples(samples)
    records = run_recall_eval(units, task="locomo", source="locomo", condition="conv-30", out=None, n_boot=500,
                              verbose=False)
    by = {r.mode: r for r in records}
    ours = by["hei-nw"]
    assert ours.metrics["gate_evidence_kept"].value >= 0.95  # type: ignore[operator]
    assert ours.metrics["gate_evidence_salient"].value < ours.metrics["gate_evidence_kept"].value  # type: ignore[operator]
    assert ours.metrics["writes_per_1k_tokens"].value < 20  # type: ignore[operator]  # cold writes do not count
    assert ours.metrics["recall@5"].value > by["rag"].metrics["recall@5"].value  # type: ignore[operator]
    assert "category 5" in ours.breakdown and ours.config["headline"] == "categories 1-4"

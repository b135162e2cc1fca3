"""CI-sized end-to-end run: B0 and B1 on scenario A with the real SmolLM2 and MiniLM.

Deterministic (greedy decoding, seeded data and bootstrap). Writes the records
through the same path as ``hei-nw eval`` and checks what a user reads off them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("langchain_core")

from hei_nw_eval.cli import run_eval
from hei_nw_eval.records import load_records

pytestmark = [pytest.mark.integration, pytest.mark.model]


def test_b0_b1_scenario_a_ci_run(tmp_path: Path) -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    out = tmp_path / "ci"
    written = run_eval(scenario="A", dataset=None, modes=["B0", "B1"], condition=None, n=8, seed=0, out=out,
                       max_new_tokens=8, n_boot=500, progress=False)
    assert [r.mode for r, _ in written] == ["B0", "B1"]
    records = {r.mode: r for r in load_records(out)}
    assert set(records) == {"B0", "B1"}
    b0, b1 = records["B0"], records["B1"]
    for rec in (b0, b1):
        assert rec.n_items == 8 and rec.model_id and rec.config["generation"]
        for name in ("em", "f1"):
            m = rec.metrics[name]
            assert m.value is not None and 0.0 <= m.value <= 1.0
            assert m.low is not None and m.high is not None and m.low <= m.value <= m.high
        assert rec.metrics["prompt_tokens"].value > 50  # type: ignore[operator]
    # Memory reaches the model: retrieval finds the evidence and the answer is at least as good as without memory.
    assert b1.metrics["p@1"].value >= 0.5  # type: ignore[operator]
    assert b1.metrics["prompt_tokens"].value > b0.metrics["prompt_tokens"].value  # type: ignore[operator]
    assert b1.metrics["f1"].value >= b0.metrics["f1"].value  # type: ignore[operator]
    assert b1.metrics["em"].value >= b0.metrics["em"].value  # type: ignore[operator]
    assert {c.metric for c in b1.comparisons} >= {"em", "f1"}
    assert (out / f"{b1.run_id}.items.jsonl").is_file()

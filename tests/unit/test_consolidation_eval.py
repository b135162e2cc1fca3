"""The B2/B3 consolidation eval end to end on a tiny random Llama and the hashing embedder: records and curve JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from hei_nw_eval.consolidation import plot_curve, run_consolidation_eval
from hei_nw_eval.records import load_records
from hei_nw_eval.runner import EvalRunner, RunOptions, refresh_comparisons, units_from_split
from hei_nw_eval.scenarios import generate
from tiny_lm import tiny_model, tiny_tokenizer

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.wrapper import HeiNwForCausalLM


def test_cycles_write_b3_b2_records_and_a_curve_per_order(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    settings = HeiNwSettings.build(store={"data_dir": tmp_path / "unused"})
    lm = HeiNwForCausalLM(tiny_model(seed=0), tiny_tokenizer(), settings=settings, mode="B0")
    runner = EvalRunner(lm, embedder=HashingEmbedder(dim=128), base_settings=settings, work_dir=tmp_path,
                        options=RunOptions(max_new_tokens=3, n_boot=50, progress=False))
    units = units_from_split(generate("A", 2, seed=0))
    out = tmp_path / "out"
    result, paths = run_consolidation_eval(
        runner, units, task="scenario:A", condition="full_cue", out=out, cycles=2, b2=True,
        config={"max_steps": 2, "batch_size": 4, "lora_r": 2, "drift_check": False},
        settings_model=lambda: (tiny_model(seed=0), tiny_tokenizer()), n_boot=50)
    assert set(result.orders) == {"scheduled", "shuffled"}
    for points in result.orders.values():
        assert [p.cycle for p in points] == [1, 2]
        assert all(p.consolidation["status"] == "accepted" and p.b2_em is not None for p in points)
        assert points[-1].targets_consolidated >= points[0].targets_consolidated
    assert len(result.scheduled_minus_shuffled) == 2
    curve = json.loads(paths[-1].read_text())
    assert curve["orders"]["scheduled"][1]["b3_em"]["n"] == 2 and curve["b1_em"]["n"] == 2
    assert refresh_comparisons(out, n_boot=50) >= 8
    modes = sorted(r.mode for r in load_records(out))
    assert modes == ["B0", "B1"] + ["B2"] * 4 + ["B3"] * 4
    assert plot_curve(paths[-1], tmp_path / "curve.png").stat().st_size > 1000

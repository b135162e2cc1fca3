"""The engine-only retrieval check, on small splits with the hashing embedder (no model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hei_nw_eval.retrieval_check import CONFIGS, run_retrieval_check

from hei_nw_plugin.embed import HashingEmbedder

FULL, NO_HOPFIELD = CONFIGS[0], CONFIGS[1]


def test_slot_cues_find_the_story_and_records_are_complete(tmp_path: Path) -> None:
    records = run_retrieval_check("A", n=6, seed=0, k=5, configs=[FULL, NO_HOPFIELD], embedder=HashingEmbedder(dim=128),
                                  n_boot=200, work_dir=tmp_path)
    assert [r.mode for r in records] == ["full", "no-hopfield"]
    full = records[0]
    # the cue names every slot of the target but one, and no other stored story matches them all
    assert full.metrics["p@1"].value == 1.0 and full.metrics["mrr"].value == 1.0
    assert full.metrics["collision"].value == 0.0
    assert full.metrics["recall_p95"].unit == "ms" and (full.metrics["recall_p95"].value or 0) > 0
    assert {c.baseline for c in full.comparisons} == {"no-hopfield"}
    assert full.config["engine"] == {"hopfield": True, "dg_sparse": True}
    assert records[1].config["engine"] == {"hopfield": False, "dg_sparse": True}
    assert sum(p.n or 0 for p in full.curves["P@1 vs time lag"].points) == 6
    assert list(tmp_path.iterdir()) == []  # temporary memories are cleaned up


def test_caller_keys_make_the_newest_fact_win(tmp_path: Path) -> None:
    # writing each override under its caller key replaces the older trace, so only the newest can be recalled
    [rec] = run_retrieval_check("B", n=6, seed=0, condition="multi_update", k=5, configs=[FULL], use_keys=True,
                                embedder=HashingEmbedder(dim=128), n_boot=200, work_dir=tmp_path)
    assert rec.metrics["p@1"].value == 1.0
    assert rec.metrics["collision"].value == 0.0


def test_live_gate_reports_gate_metrics(tmp_path: Path) -> None:
    [rec] = run_retrieval_check("C", n=4, seed=0, k=5, configs=[FULL], gate="live", cue_slots=False,
                                embedder=HashingEmbedder(dim=128), n_boot=200, work_dir=tmp_path)
    assert rec.condition == "lag_short/text-only/live-gate"
    for name in ("gate_pr_auc", "gate_recall", "writes_per_1k_tokens"):
        assert rec.metrics[name].value is not None
    assert 0.0 <= (rec.metrics["gate_pr_auc"].value or -1) <= 1.0
    assert (rec.metrics["writes_per_1k_tokens"].value or 0) > 0


def test_unknown_scenario_is_rejected() -> None:
    with pytest.raises(ValueError):
        run_retrieval_check("Q", n=1, embedder=HashingEmbedder(dim=64))


def test_configs_sharing_one_memory_rank_exactly_as_separate_memories() -> None:
    from hei_nw_eval.retrieval_check import run_config, run_configs
    from hei_nw_eval.scenarios import generate

    split = generate("D", 8, seed=0, condition="1k")
    emb = HashingEmbedder(dim=128)
    shared = run_configs(split, [FULL, NO_HOPFIELD], embedder=emb, k=5)
    for cfg in (FULL, NO_HOPFIELD):
        alone, _log = run_config(split, cfg, embedder=emb, k=5)
        assert [r.ranked for r in shared[cfg.name][0]] == [r.ranked for r in alone]
    assert [r.ranked for r in shared[FULL.name][0]] != [r.ranked for r in shared[NO_HOPFIELD.name][0]]


def test_random_writes_ablation_stores_blindly_at_the_oracle_rate() -> None:
    oracle, random_ = (run_retrieval_check("A", n=20, seed=0, k=5, configs=[FULL], gate=g,
                                           embedder=HashingEmbedder(dim=128), n_boot=200)[0] for g in ("oracle", "random"))
    assert random_.condition == "full_cue/slots-and-text/random-gate"
    # the evidence is stored only when the coin says so, so the blind writer misses most of it
    assert (oracle.metrics["p@1"].value or 0) - (random_.metrics["p@1"].value or 0) >= 0.5

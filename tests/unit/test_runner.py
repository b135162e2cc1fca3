"""The evaluation runner on a tiny random Llama and the hashing embedder: costs, truncation, probes, records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("langchain_core")

from hei_nw_eval.baselines import Bm25Store, RagStore, fit_transcript
from hei_nw_eval.costs import AttentionShape, attention_flops, kv_cache_mb
from hei_nw_eval.datasets import DatasetSample
from hei_nw_eval.items import Episode, Question
from hei_nw_eval.records import load_records
from hei_nw_eval.runner import (
    EvalRunner,
    RunOptions,
    build_record,
    refresh_comparisons,
    units_from_samples,
    units_from_split,
    write_run,
)
from hei_nw_eval.scenarios import generate
from tiny_lm import tiny_model, tiny_tokenizer

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.wrapper import HeiNwForCausalLM


def _episodes(n: int) -> list[Episode]:
    return [Episode(id=f"e{i}", text=f"word{i} " * (i % 3 + 1), should_remember=True,
                    timestamp=datetime(2024, 1, 1 + i, tzinfo=UTC)) for i in range(n)]


# ------------------------------------------------------------------ costs


def test_attention_flops_equal_a_position_by_position_sum() -> None:
    shape = AttentionShape(layers=3, heads=4, kv_heads=2, head_dim=8)
    prompt, new = 17, 5
    brute = sum(3 * 4 * (2 * 8 * i + 2 * 8 * i) for i in range(1, prompt + new + 1))  # QK^T and AV per position
    assert attention_flops(shape, prompt, new) == brute
    assert attention_flops(shape, 0, 0) == 0


def test_kv_cache_counts_keys_and_values_of_kv_heads_only() -> None:
    shape = AttentionShape(layers=30, heads=9, kv_heads=3, head_dim=64, bytes_per_value=2)  # SmolLM2-135M, fp16
    assert kv_cache_mb(shape, 1024) == pytest.approx(2 * 30 * 3 * 64 * 1024 * 2 / 2**20)  # 22.5 MiB
    with pytest.raises(ValueError):
        kv_cache_mb(shape, -1)


def test_shape_from_config_reads_gqa_heads_and_dtype() -> None:
    shape = AttentionShape.from_config(tiny_model().config, "torch.float32")
    assert (shape.layers, shape.heads, shape.kv_heads, shape.head_dim, shape.bytes_per_value) == (5, 4, 2, 16, 4)
    assert AttentionShape.from_config(tiny_model().config, "bfloat16").bytes_per_value == 2


# ------------------------------------------------------------------ truncation and units


def test_fit_transcript_keeps_the_newest_lines_and_counts_the_dropped() -> None:
    eps = _episodes(10)
    words = lambda text: len(text.split())
    whole = fit_transcript(eps, 10_000, words)
    assert (whole.kept, whole.dropped, whole.truncated) == (10, 0, False)
    cut = fit_transcript(eps, 12, words)
    assert cut.truncated and cut.kept + cut.dropped == 10 and cut.tokens <= 12
    assert cut.text.splitlines()[-1].endswith(eps[-1].text.strip())  # newest kept
    assert "word0" not in cut.text
    assert fit_transcript(eps, 0, words).dropped == 10


def test_dataset_units_write_each_episode_once_and_stop_at_n() -> None:
    eps = _episodes(6)
    qs = [Question(id=f"q{i}", cue=f"where {i}?", answer="x", evidence=[f"e{i}"], asked_after=f"e{2 * i + 1}")
          for i in range(3)]
    sample = DatasetSample(id="s", source="babi:qa1", episodes=eps, questions=qs)
    units = units_from_samples([sample])
    assert [len(u.writes) for u in units] == [2, 2, 2]
    assert [len(u.transcript) for u in units] == [2, 4, 6]
    assert [u.lag for u in units] == [1, 2, 3]
    assert len(units_from_samples([sample], n=2)) == 2


def test_per_sample_cap_covers_every_sample_and_still_writes_every_episode_once() -> None:
    samples = []
    for name in ("s1", "s2"):
        eps = _episodes(8)
        qs = [Question(id=f"{name}q{i}", cue=f"where {i}?", answer="x", evidence=[f"e{i}"], asked_after=f"e{2 * i + 1}")
              for i in range(4)]
        samples.append(DatasetSample(id=name, source="babi:qa1", episodes=eps, questions=qs))
    units = units_from_samples(samples, per_sample=2)
    assert [u.question.id for u in units] == ["s1q0", "s1q2", "s2q0", "s2q2"]
    # the second unit of a sample writes what appeared since the first one, so nothing is skipped or repeated
    assert [len(u.writes) for u in units] == [2, 4, 2, 4]
    assert [len(u.transcript) for u in units] == [2, 6, 2, 6]


def test_rag_store_returns_the_matching_chunk_first() -> None:
    store = RagStore(HashingEmbedder(dim=256), chunk_size=2)
    store.add([Episode(id="a", text="the violin sits in the loft"), Episode(id="b", text="rain all week"),
               Episode(id="c", text="Tomas parked the tractor by the mill")])
    text, ranked = store.search("where did Tomas park the tractor", k=1)
    assert ranked == ["c"] and "tractor" in text


def test_bm25_store_ranks_by_shared_terms_and_writes_dated_lines() -> None:
    pytest.importorskip("bm25s")
    store = Bm25Store()
    store.add([Episode(id="a", text="the violin sits in the loft", timestamp=datetime(2023, 5, 8, tzinfo=UTC)),
               Episode(id="b", text="rain all week"), Episode(id="c", text="Tomas parked the tractor by the mill")])
    text, ranked = store.search("where did Tomas park the tractor", k=2)
    assert ranked[0] == "c" and text.splitlines()[0] == "1. Tomas parked the tractor by the mill"
    store.add([Episode(id="d", text="violin lessons", timestamp=datetime(2023, 6, 1, tzinfo=UTC))])
    text, ranked = store.search("violin", k=3)
    assert set(ranked) == {"a", "d"} and "[2023-05-08]" in text  # new episodes are searched too
    assert store.search("zebra", k=3) == ("", [])


# ------------------------------------------------------------------ runner end to end (tiny model)


@pytest.fixture()
def runner(tmp_path: Path) -> EvalRunner:
    settings = HeiNwSettings.build(model={"answer_max_new_tokens": 3})
    lm = HeiNwForCausalLM(tiny_model(), tiny_tokenizer(), settings=settings, mode="B0")
    opts = RunOptions(max_new_tokens=3, n_boot=200, progress=False, context_window=600)
    return EvalRunner(lm, embedder=HashingEmbedder(dim=384), options=opts, work_dir=tmp_path)


def test_b1_with_empty_memory_answers_exactly_like_b0(runner: EvalRunner) -> None:
    units = units_from_split(generate("A", 3, seed=0))
    b0 = runner.run("B0", units).outcomes
    empty = runner.run("B1-empty", units).outcomes
    assert [o.prediction for o in empty] == [o.prediction for o in b0]
    assert [o.prompt_tokens for o in empty] == [o.prompt_tokens for o in b0]
    assert all(o.ranked == [] for o in empty)


def test_retrieval_only_em_tracks_p_at_1(runner: EvalRunner) -> None:
    units = units_from_split(generate("A", 6, seed=1))
    outs = runner.run("retrieval-only", units).outcomes
    for o in outs:
        hit = bool(o.ranked) and o.ranked[0] in o.relevant
        assert o.em == float(hit), (o.prediction, o.golds, o.ranked, o.relevant)


def test_long_context_counts_truncation_and_grows_cost(runner: EvalRunner) -> None:
    units = units_from_split(generate("A", 2, seed=0))
    b0 = runner.run("B0", units).outcomes
    lc = runner.run("long-context", units).outcomes
    assert all(o.truncated and o.dropped_episodes > 0 for o in lc)  # a byte tokenizer overflows 600 tokens
    for a, b in zip(lc, b0, strict=True):
        assert runner.window() - 3 >= a.prompt_tokens > b.prompt_tokens
        assert a.attention_gflops > b.attention_gflops and a.kv_cache_mb > b.kv_cache_mb


def test_records_sidecars_and_paired_comparisons(runner: EvalRunner, tmp_path: Path) -> None:
    units = units_from_split(generate("A", 3, seed=0))
    out = tmp_path / "runs"
    for mode in ("B1", "B0"):  # B0 second: the comparison must still be filled in afterwards
        res = runner.run(mode, units)
        rec = build_record(res, task="scenario:A", condition="full_cue", options=runner.options,
                           model_id="tiny", generation={"seed": 0}, config={})
        write_run(rec, res, out)
    assert refresh_comparisons(out, n_boot=200) == 1
    records = {r.mode: r for r in load_records(out)}
    b1 = records["B1"]
    assert b1.n_items == 3 and b1.git_commit
    for name in ("em", "f1", "p@1", "mrr", "prompt_tokens", "attention_gflops", "kv_cache_mb", "latency_p50",
                 "recall_p50", "generate_p50", "gate_pr_auc"):
        assert name in b1.metrics, name
    assert 0.0 <= b1.metrics["em"].value <= 1.0  # type: ignore[operator]
    assert {c.metric for c in b1.comparisons} == {"em", "f1"} and all(c.baseline == "B0" for c in b1.comparisons)
    rows = [json.loads(line) for line in (out / f"{b1.run_id}.items.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [u.id for u in units]
    assert "EM vs time lag" in b1.curves


def test_set_route_moves_the_model_and_the_recorded_options_and_rejects_unknown(runner: EvalRunner) -> None:
    runner.set_route("prefix")
    assert runner.options.route == "prefix" and runner.lm is not None and runner.lm.route == "prefix"
    with pytest.raises(ValueError, match="route must be one of"):
        runner.set_route("sideways")
    assert runner.options.route == "prefix"


def test_bm25_rag_runs_the_plain_model_over_lexical_hits(runner: EvalRunner) -> None:
    pytest.importorskip("bm25s")
    units = units_from_split(generate("A", 3, seed=0))
    outs = runner.run("bm25-rag", units).outcomes
    assert all(o.ranked is not None for o in outs)
    assert runner.lm is not None and runner.lm.settings.model.memory_reader  # restored after the plain prompt
    b0 = runner.run("B0", units).outcomes
    assert all(a.prompt_tokens > b.prompt_tokens for a, b in zip(outs, b0, strict=True))


def test_b1_is_paired_with_its_run_without_reader_and_with_the_baselines(runner: EvalRunner, tmp_path: Path) -> None:
    units = units_from_split(generate("A", 3, seed=0))
    out = tmp_path / "runs"
    assert runner.lm is not None
    for mode, reader in (("B0", True), ("B1", True), ("B1", False), ("rag", True)):
        runner.lm.settings.model.memory_reader = reader
        res = runner.run(mode, units)
        rec = build_record(res, task="scenario:A", condition="full_cue", options=runner.options, model_id="tiny",
                           generation={"seed": 0}, config={"memory_reader": reader}, tag="" if reader else "noreader")
        write_run(rec, res, out)
    runner.lm.settings.model.memory_reader = True
    assert refresh_comparisons(out, n_boot=200) == 3  # B1, B1 (noreader) and rag against B0
    records = {(r.mode, r.config.get("memory_reader")): r for r in load_records(out)}
    b1 = records[("B1", True)]
    assert {c.baseline for c in b1.comparisons} == {"B0", "B1 (noreader)", "rag"}
    assert {c.baseline for c in records[("B1", False)].comparisons} == {"B0"}
    for c in b1.comparisons:
        assert c.diff.n == 3 and c.diff.low is not None and c.diff.low <= c.diff.value <= c.diff.high  # type: ignore[operator]
    assert "abstained" in b1.metrics

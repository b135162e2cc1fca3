"""Generated training QA: reproducible, answerable, and disjoint from the eval vocabulary."""

from __future__ import annotations

import re

import pytest

from hei_nw_plugin.model.prompting import DEFAULT_ONE_SHOT
from hei_nw_plugin.model.train_data import generate_rows, training_vocabulary


def test_same_seed_same_rows() -> None:
    assert generate_rows(30, seed=3) == generate_rows(30, seed=3)
    assert generate_rows(30, seed=3) != generate_rows(30, seed=4)


def test_answer_is_in_memory_and_target_rank_is_right() -> None:
    for row in generate_rows(200, seed=0):
        lines = row.memory.split("\n")
        assert len(lines) == row.n_facts
        assert row.answer in lines[row.target_rank - 1]
        assert re.match(r"^1\. \[\d{4}-\d{2}-\d{2}\] ", lines[0])  # the packer's line format


def test_ranks_and_sizes_vary() -> None:
    rows = generate_rows(300, seed=1, max_facts=6)
    assert {r.n_facts for r in rows} == set(range(1, 7))
    assert 0.35 < sum(r.target_rank == 1 for r in rows) / len(rows) < 0.8


def test_vocabulary_is_disjoint_from_eval() -> None:
    scenarios = pytest.importorskip("hei_nw_eval.scenarios")
    overlap = training_vocabulary() & scenarios.eval_vocabulary()
    assert not overlap, sorted(overlap)


def test_one_shot_example_is_outside_both_vocabularies() -> None:
    scenarios = pytest.importorskip("hei_nw_eval.scenarios")
    words = {DEFAULT_ONE_SHOT.answer.lower(), "quillon", "pine crates"}
    assert not words & (training_vocabulary() | scenarios.eval_vocabulary())

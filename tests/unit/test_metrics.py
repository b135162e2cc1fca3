"""Metrics users read off reports: answer scores, retrieval, gate, CIs, lag bins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hei_nw_eval import metrics as M
from hei_nw_plugin.porter import stem


def test_squad_normalisation_em_and_f1() -> None:
    assert M.normalize_answer("The  Salt-Marsh!") == "saltmarsh"
    assert M.exact_match("the salt marsh.", "Salt Marsh") == 1.0
    assert M.exact_match("salt marshes", "salt marsh") == 0.0
    assert M.exact_match("Nuuk", ["Oslo", "nuuk"]) == 1.0
    assert M.token_f1("salt pan", "salt marsh") == pytest.approx(0.5)
    assert M.token_f1("x y z w", "x y") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert M.token_f1("a b c d", "a b") == pytest.approx(0.5)  # articles do not count
    assert M.token_f1("", "") == 1.0 and M.token_f1("x", "") == 0.0
    with pytest.raises(ValueError):
        M.exact_match("x", [])


def test_porter_stemmer_on_published_examples() -> None:
    pairs = {"caresses": "caress", "ponies": "poni", "agreed": "agre", "hopping": "hop", "filing": "file",
             "relational": "relat", "generalizations": "gener", "adjustable": "adjust", "controll": "control"}
    assert {w: stem(w) for w in pairs} == pairs


def test_locomo_rules_per_category() -> None:
    # stemmed F1: plural and singular match (categories 2 and 4)
    assert M.locomo_score("adoption agency", "Adoption agencies", 4) == 1.0
    # 'and' and commas are dropped by LoCoMo's normalisation
    assert M.locomo_score("bread and butter", "bread, butter", 2) == 1.0
    # category 1: comma list, mean over gold items of the best predicted item
    assert M.locomo_score("psychology", "Psychology, counseling certification", 1) == pytest.approx(0.5)
    # category 3: only the gold before ';' counts
    assert M.locomo_score("likely no", "Likely no; she wants to be a counselor", 3) == 1.0
    # category 5: right only when the answer says it is not there
    assert M.locomo_score("Not mentioned in the conversation", "anything", 5) == 1.0
    assert M.locomo_score("self-care is important", "anything", 5) == 0.0
    with pytest.raises(ValueError):
        M.locomo_score("x", "y", 6)


def test_locomo_scores_split_answerable_from_adversarial() -> None:
    s = M.locomo_scores(["Paris", "no idea", "not mentioned"], ["Paris", "Rome", "x"], [4, 2, 5], n_boot=200)
    assert s.answerable is not None and s.answerable.value == pytest.approx(0.5) and s.answerable.n == 2
    assert s.adversarial is not None and s.adversarial.value == 1.0 and s.adversarial.n == 1
    assert set(s.per_category) == {2, 4, 5}


def test_retrieval_metrics() -> None:
    ranked = ["x", "gold", "y"]
    assert M.precision_at_k(ranked, {"gold"}, 1) == 0.0
    assert M.precision_at_k(ranked, {"gold"}, 2) == 0.5
    assert M.precision_at_k(["gold"], {"gold"}, 5) == pytest.approx(0.2)  # short ranking counts as misses
    assert M.recall_at_k(ranked, {"gold", "other"}, 3) == 0.5
    assert M.reciprocal_rank(ranked, {"gold"}) == 0.5
    assert M.reciprocal_rank(["x"], {"gold"}) == 0.0
    per = M.retrieval_per_query([ranked, ["gold"]], [{"gold"}, {"gold"}], ks=(1, 2))
    assert per["p@1"].tolist() == [0.0, 1.0] and per["mrr"].tolist() == [0.5, 1.0]
    assert M.collision_per_query([["twin", "gold"], ["gold"], []], [{"twin"}, {"twin"}, {"twin"}]).tolist() == [1, 0, 0]
    assert M.near_miss_per_query([["twin", "gold"], ["a", "b"]], [{"gold"}, {"gold"}], k=2).tolist() == [1, 0]


def test_pr_auc_matches_hand_computation() -> None:
    # ranked: +, -, +, -  -> AP = 0.5*1 + 0.5*(2/3)
    assert M.pr_auc([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx(0.5 + 1 / 3)
    assert M.pr_auc([1, 2, 3], [0, 0, 1]) == 1.0
    # all tied: precision is the positive rate at the only threshold
    assert M.pr_auc([0.5] * 4, [1, 0, 0, 0]) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        M.pr_auc([0.1, 0.2], [0, 0])


def test_gate_operating_point_and_calibration() -> None:
    op = M.precision_recall_at([0.9, 0.6, 0.4, 0.2], [1, 0, 1, 0], tau=0.5)
    assert (op.precision, op.recall, op.written, op.positives) == (0.5, 0.5, 2, 2)
    assert M.precision_recall_at([0.1], [1], tau=0.5).precision is None
    cal = M.calibration_curve([0.05, 0.15, 0.95, 0.9], [0, 0, 1, 1], n_bins=2)
    assert cal.counts == [2, 2] and cal.positive_rate == [0.0, 1.0]
    assert cal.ece == pytest.approx((2 * 0.1 + 2 * 0.075) / 4)
    with pytest.raises(ValueError):
        M.calibration_curve([1.4], [1])
    assert M.calibration_curve([1.4], [1], clip=True).counts[-1] == 1
    assert M.writes_per_1k_tokens(3, 1500) == pytest.approx(2.0)


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    rng = np.random.default_rng(1)
    values = rng.random(200)
    a = M.bootstrap_ci(values, n_boot=2000, seed=7)
    b = M.bootstrap_ci(values, n_boot=2000, seed=7)
    assert a == b
    assert a.low is not None and a.high is not None and a.low < a.value < a.high
    assert a.high - a.low < 0.2
    single = M.bootstrap_ci([1.0])
    assert single.low is None and single.n == 1


def test_paired_bootstrap_detects_a_real_difference_only() -> None:
    base = np.array([0, 1] * 50, dtype=float)
    same = M.paired_bootstrap_diff(base, base, n_boot=1000)
    assert same.value == 0.0 and not M.excludes_zero(same)
    better = base.copy()
    better[::2] = 1.0  # fixes half the misses
    d = M.paired_bootstrap_diff(better, base, n_boot=1000)
    assert d.value == pytest.approx(0.5) and M.excludes_zero(d)
    with pytest.raises(ValueError):
        M.paired_bootstrap_diff([1, 0], [1])


def test_accuracy_by_lag_bins_and_latency() -> None:
    bins = M.accuracy_by_lag([1, 0, 1, 1, 0], [0, 3, 2, 500, 20], edges=(0, 1, 4, 64, math.inf), n_boot=100)
    assert [(b.low_lag, b.high_lag) for b in bins] == [(0, 1), (1, 4), (4, 64), (64, math.inf)]
    assert [None if b.estimate is None else b.estimate.value for b in bins] == [1.0, 0.5, 0.0, 1.0]
    assert [0 if b.estimate is None else b.estimate.n for b in bins] == [1, 2, 1, 1]
    lat = M.latency_summary([1.0, 2.0, 3.0, 4.0, 100.0])
    assert lat.p50_ms == 3.0 and lat.p95_ms == pytest.approx(80.8) and lat.max_ms == 100.0

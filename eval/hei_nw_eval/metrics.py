"""Metrics for the HEI-NW evaluation, in plain numpy.

Four families, each a few pure functions over per-query values so that every
figure can carry a paired-bootstrap confidence interval:

* answers: exact match and token F1 with SQuAD normalisation, and LoCoMo's
  own scoring (stemmed token F1, per-category rules, categories 1-4 reported
  together and 5 on its own);
* retrieval: P@k, recall@k, MRR, collision and near-miss rates, Hopfield
  completion lift;
* write gate: PR-AUC, precision and recall at τ, calibration curve, writes per
  1k tokens;
* everything else: latency percentiles, bootstrap and paired-bootstrap CIs,
  accuracy binned by time lag.

Per-query functions return floats; aggregate functions take sequences and
return small frozen dataclasses that :mod:`hei_nw_eval.records` turns into JSON.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from hei_nw_plugin.porter import stem

FloatArray = npt.NDArray[np.float64]

# ---------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation and articles, squeeze spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(gold: str | Sequence[str]) -> list[str]:
    golds = [gold] if isinstance(gold, str) else list(gold)
    if not golds:
        raise ValueError("at least one gold answer is needed")
    return golds


def exact_match(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _golds(gold)))


def _overlap_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, gold: str | Sequence[str]) -> float:
    """SQuAD token F1, the best over gold answers."""
    pred = normalize_answer(prediction).split()
    return max(_overlap_f1(pred, normalize_answer(g).split()) for g in _golds(gold))


# LoCoMo (snap-research/locomo, task_eval/evaluation.py): commas and "and" are
# dropped too, tokens are Porter-stemmed, multi-hop answers are comma lists
# scored item by item, open-domain golds keep only the part before ';', and an
# adversarial question counts as right when the answer says it is not there.
_LOCOMO_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
LOCOMO_ADVERSARIAL_ANSWER = "Not mentioned in the conversation"
LOCOMO_CATEGORY_NAMES: dict[int, str] = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}


def locomo_normalize(text: str) -> str:
    """LoCoMo's answer normalisation (SQuAD's, plus commas and 'and' removed)."""
    text = text.replace(",", "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    return " ".join(_LOCOMO_ARTICLES.sub(" ", text).split())


def locomo_token_f1(prediction: str, gold: str) -> float:
    """LoCoMo's stemmed token F1 of one prediction against one gold answer."""
    pred = [stem(w) for w in locomo_normalize(prediction).split()]
    ref = [stem(w) for w in locomo_normalize(gold).split()]
    if not pred or not ref:
        return 0.0
    return _overlap_f1(pred, ref)


def locomo_multi_f1(prediction: str, gold: str) -> float:
    """Multi-hop F1: mean over comma-separated gold items of the best-matching predicted item."""
    preds = [p.strip() for p in prediction.split(",")]
    refs = [g.strip() for g in gold.split(",")]
    return float(np.mean([max(locomo_token_f1(p, g) for p in preds) for g in refs]))


def is_abstention(prediction: str) -> bool:
    """True when an answer says the memory does not hold it, by LoCoMo's rule for category 5."""
    text = prediction.lower()
    return "no information available" in text or "not mentioned" in text


def locomo_score(prediction: str, gold: str, category: int) -> float:
    """One LoCoMo QA score in [0, 1], with the rule of ``category`` (1-5)."""
    if category == 1:
        return locomo_multi_f1(prediction, gold)
    if category == 3:
        return locomo_token_f1(prediction, gold.split(";")[0].strip())
    if category in (2, 4):
        return locomo_token_f1(prediction, gold)
    if category == 5:
        return float(is_abstention(prediction))
    raise ValueError(f"LoCoMo categories are 1-5, got {category!r}")


# ---------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A mean with a percentile-bootstrap interval; ``low``/``high`` are None when n < 2."""

    value: float
    low: float | None
    high: float | None
    n: int
    level: float = 0.95


def _as_array(values: Sequence[float] | FloatArray) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("expected a 1-D sequence of per-query values")
    if not np.all(np.isfinite(arr)):
        raise ValueError("per-query values must be finite")
    return arr


def _bootstrap_means(values: FloatArray, n_boot: int, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    n = len(values)
    out = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(n, 1))  # bound memory: ~16 MB of indices per chunk
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def bootstrap_ci(
    values: Sequence[float] | FloatArray, *, n_boot: int = 10_000, seed: int = 0, level: float = 0.95
) -> Estimate:
    """Mean of per-query ``values`` with a percentile-bootstrap CI (seeded, reproducible)."""
    arr = _as_array(values)
    if len(arr) == 0:
        raise ValueError("cannot estimate a mean from no values")
    if len(arr) < 2:
        return Estimate(float(arr.mean()), None, None, len(arr), level)
    boots = _bootstrap_means(arr, n_boot, seed)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(boots, [alpha, 1.0 - alpha])
    return Estimate(float(arr.mean()), float(low), float(high), len(arr), level)


def paired_bootstrap_diff(
    a: Sequence[float] | FloatArray,
    b: Sequence[float] | FloatArray,
    *,
    n_boot: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """mean(a) − mean(b) over the same queries, with a paired-bootstrap CI.

    ``a[i]`` and ``b[i]`` must score the same query under two modes; queries are
    resampled jointly, so per-query difficulty cancels out.
    """
    arr_a, arr_b = _as_array(a), _as_array(b)
    if len(arr_a) != len(arr_b):
        raise ValueError(f"paired samples differ in length: {len(arr_a)} vs {len(arr_b)}")
    return bootstrap_ci(arr_a - arr_b, n_boot=n_boot, seed=seed, level=level)


def excludes_zero(estimate: Estimate) -> bool:
    """True when the interval lies strictly on one side of 0."""
    if estimate.low is None or estimate.high is None:
        return False
    return estimate.low > 0 or estimate.high < 0


# ---------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError("k must be >= 1")


def precision_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the top ``k`` that is relevant (a ranking shorter than k is padded with misses)."""
    _check_k(k)
    return sum(1 for r in ranked[:k] if r in relevant) / k


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant ids that appear in the top ``k``."""
    _check_k(k)
    if not relevant:
        raise ValueError("recall is undefined without relevant ids")
    return len(set(ranked[:k]) & set(relevant)) / len(set(relevant))


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str]) -> float:
    """1 / rank of the first relevant id (1-based); 0 when none was retrieved."""
    for rank, r in enumerate(ranked, start=1):
        if r in relevant:
            return 1.0 / rank
    return 0.0


def retrieval_per_query(
    rankings: Sequence[Sequence[str]], relevants: Sequence[Collection[str]], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, FloatArray]:
    """Per-query arrays ``p@k``, ``recall@k`` (for each k in ``ks``) and ``mrr``."""
    if len(rankings) != len(relevants):
        raise ValueError("one relevant set per ranking is needed")
    out: dict[str, FloatArray] = {}
    for k in ks:
        out[f"p@{k}"] = np.array([precision_at_k(r, rel, k) for r, rel in zip(rankings, relevants)])
        out[f"recall@{k}"] = np.array([recall_at_k(r, rel, k) for r, rel in zip(rankings, relevants)])
    out["mrr"] = np.array([reciprocal_rank(r, rel) for r, rel in zip(rankings, relevants)])
    return out


def collision_per_query(
    rankings: Sequence[Sequence[str]], confusers: Sequence[Collection[str]]
) -> FloatArray:
    """1.0 where the top-1 trace is one of the query's confusers (a near-twin of the target).

    Its mean is the collision rate: how often a stored memory that shares most
    slots with the target wins the recall outright.
    """
    if len(rankings) != len(confusers):
        raise ValueError("one confuser set per ranking is needed")
    return np.array([float(bool(r) and r[0] in c) for r, c in zip(rankings, confusers)])


def near_miss_per_query(
    rankings: Sequence[Sequence[str]], relevants: Sequence[Collection[str]], k: int = 5
) -> FloatArray:
    """1.0 where the top-1 is wrong but a relevant trace is within the top ``k``.

    Its mean is the near-miss rate: errors a re-ranker could still fix.
    """
    _check_k(k)
    if len(rankings) != len(relevants):
        raise ValueError("one relevant set per ranking is needed")
    return np.array(
        [
            float(bool(r) and r[0] not in rel and any(x in rel for x in r[:k]))
            for r, rel in zip(rankings, relevants)
        ]
    )


def completion_lift(
    with_completion: Sequence[float] | FloatArray,
    without_completion: Sequence[float] | FloatArray,
    *,
    n_boot: int = 10_000,
    seed: int = 0,
) -> Estimate:
    """Hopfield completion lift: per-query metric with completion minus without, paired CI."""
    return paired_bootstrap_diff(with_completion, without_completion, n_boot=n_boot, seed=seed)


# ---------------------------------------------------------------------------
# Write gate
# ---------------------------------------------------------------------------


def _scores_labels(scores: Sequence[float], labels: Sequence[bool]) -> tuple[FloatArray, FloatArray]:
    s = _as_array(scores)
    y = np.asarray(labels, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError("scores and labels differ in length")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be booleans")
    return s, y


def pr_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the precision-recall curve as average precision (step-wise, ties grouped).

    AP = Σ (Rₙ − Rₙ₋₁)·Pₙ over distinct score thresholds, as scikit-learn's
    ``average_precision_score`` computes it. A random scorer scores the positive rate.
    """
    s, y = _scores_labels(scores, labels)
    if y.sum() == 0:
        raise ValueError("PR-AUC is undefined without positive labels")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(1 - y)[last_of_tie]
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class GateOperatingPoint:
    """The gate at one threshold τ: precision and recall of 'write' against the labels."""

    tau: float
    precision: float | None  # None when nothing is written
    recall: float
    written: int
    positives: int
    n: int


def precision_recall_at(scores: Sequence[float], labels: Sequence[bool], tau: float) -> GateOperatingPoint:
    """Precision and recall of writing every event whose score S ≥ τ."""
    s, y = _scores_labels(scores, labels)
    written = s >= tau
    tp = float(np.sum(written & (y == 1)))
    positives = int(y.sum())
    if positives == 0:
        raise ValueError("recall is undefined without positive labels")
    n_written = int(written.sum())
    return GateOperatingPoint(
        tau=tau,
        precision=tp / n_written if n_written else None,
        recall=tp / positives,
        written=n_written,
        positives=positives,
        n=len(s),
    )


@dataclass(frozen=True)
class CalibrationCurve:
    """Reliability diagram: per bin, mean predicted score vs observed positive rate."""

    bin_edges: list[float]
    mean_score: list[float | None]
    positive_rate: list[float | None]
    counts: list[int]
    ece: float  # expected calibration error: count-weighted |mean score − positive rate|


def calibration_curve(
    scores: Sequence[float], labels: Sequence[bool], *, n_bins: int = 10, clip: bool = False
) -> CalibrationCurve:
    """Calibration of scores in [0, 1] against labels, in ``n_bins`` equal-width bins.

    Gate scores S can exceed 1 (a pin adds δ); pass ``clip=True`` to read them as
    probabilities capped to [0, 1], otherwise out-of-range scores raise ValueError.
    """
    s, y = _scores_labels(scores, labels)
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if clip:
        s = np.clip(s, 0.0, 1.0)
    elif len(s) and (s.min() < 0 or s.max() > 1):
        raise ValueError("calibration needs scores in [0, 1]; pass clip=True to cap them")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(s, edges[1:-1], right=False), 0, n_bins - 1)
    mean_score: list[float | None] = []
    positive_rate: list[float | None] = []
    counts: list[int] = []
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        count = int(mask.sum())
        counts.append(count)
        if count:
            ms, pr = float(s[mask].mean()), float(y[mask].mean())
            mean_score.append(ms)
            positive_rate.append(pr)
            ece += count * abs(ms - pr)
        else:
            mean_score.append(None)
            positive_rate.append(None)
    return CalibrationCurve(
        bin_edges=[float(e) for e in edges],
        mean_score=mean_score,
        positive_rate=positive_rate,
        counts=counts,
        ece=ece / len(s) if len(s) else 0.0,
    )


def writes_per_1k_tokens(n_writes: int, n_tokens: int) -> float:
    """Accepted writes per 1,000 observed tokens (the gate's clutter rate)."""
    if n_tokens <= 0:
        raise ValueError("n_tokens must be positive")
    return 1000.0 * n_writes / n_tokens


# ---------------------------------------------------------------------------
# Latency and time lag
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencySummary:
    """Latency in milliseconds: median, 95th percentile, mean, max."""

    p50_ms: float
    p95_ms: float
    mean_ms: float
    max_ms: float
    n: int


def latency_summary(latencies_ms: Sequence[float]) -> LatencySummary:
    """p50 / p95 (linear interpolation) of per-call latencies in ms."""
    arr = _as_array(latencies_ms)
    if len(arr) == 0:
        raise ValueError("no latencies to summarise")
    p50, p95 = np.percentile(arr, [50, 95])
    return LatencySummary(float(p50), float(p95), float(arr.mean()), float(arr.max()), len(arr))


DEFAULT_LAG_EDGES: tuple[float, ...] = (0, 1, 4, 16, 64, 256, math.inf)


@dataclass(frozen=True)
class LagBin:
    """Accuracy of the items whose time lag falls in [low_lag, high_lag)."""

    low_lag: float
    high_lag: float
    estimate: Estimate | None  # None when the bin is empty


def accuracy_by_lag(
    correct: Sequence[float] | FloatArray,
    lags: Sequence[int],
    *,
    edges: Sequence[float] = DEFAULT_LAG_EDGES,
    n_boot: int = 2_000,
    seed: int = 0,
) -> list[LagBin]:
    """Per-item scores (EM, hit@k …) averaged within time-lag bins, each with a bootstrap CI.

    A lag is the number of episodes written between the evidence and the question.
    """
    scores = _as_array(correct)
    lag_arr = np.asarray(lags, dtype=np.float64)
    if scores.shape != lag_arr.shape:
        raise ValueError("one lag per score is needed")
    if len(edges) < 2 or any(b <= a for a, b in pairwise(edges)):
        raise ValueError("edges must be increasing with at least two values")
    out = []
    for low, high in pairwise(edges):
        mask = (lag_arr >= low) & (lag_arr < high)
        est = bootstrap_ci(scores[mask], n_boot=n_boot, seed=seed) if mask.any() else None
        out.append(LagBin(float(low), float(high), est))
    return out


def per_item(metric: Callable[[str, str], float], predictions: Sequence[str], golds: Sequence[str]) -> FloatArray:
    """Per-item scores of ``metric(prediction, gold)``, e.g. ``per_item(exact_match, preds, golds)``."""
    if len(predictions) != len(golds):
        raise ValueError("one gold per prediction is needed")
    return np.array([metric(p, g) for p, g in zip(predictions, golds)], dtype=np.float64)


@dataclass(frozen=True)
class LoCoMoScores:
    """LoCoMo token F1: per category, categories 1-4 together, category 5 apart."""

    per_category: dict[int, Estimate]
    answerable: Estimate | None  # categories 1-4, micro-averaged over questions
    adversarial: Estimate | None  # category 5


def locomo_scores(
    predictions: Sequence[str],
    golds: Sequence[str],
    categories: Sequence[int],
    *,
    n_boot: int = 10_000,
    seed: int = 0,
) -> LoCoMoScores:
    """Score LoCoMo predictions the way its evaluation code does, with bootstrap CIs."""
    if not (len(predictions) == len(golds) == len(categories)):
        raise ValueError("predictions, golds and categories differ in length")
    per_item = np.array([locomo_score(p, g, c) for p, g, c in zip(predictions, golds, categories)])
    cats = np.asarray(categories)
    per_category = {
        int(c): bootstrap_ci(per_item[cats == c], n_boot=n_boot, seed=seed) for c in sorted(set(categories))
    }
    answerable_mask = np.isin(cats, [1, 2, 3, 4])
    return LoCoMoScores(
        per_category=per_category,
        answerable=bootstrap_ci(per_item[answerable_mask], n_boot=n_boot, seed=seed)
        if answerable_mask.any()
        else None,
        adversarial=bootstrap_ci(per_item[cats == 5], n_boot=n_boot, seed=seed) if (cats == 5).any() else None,
    )

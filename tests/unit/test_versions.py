"""Newest wins among text versions, and chained recall, on small hand-built stories."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.versions import supersede_text


def _unit(*rows: list[float]) -> np.ndarray:
    x = np.array(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


MARY, KITCHEN, OFFICE, MOVE, FOOTBALL, JOHN = 1, 2, 3, 4, 5, 6


def _call(scores: list[float], terms: list[set[int]], feats: np.ndarray, anchors: set[int], named: set[int] | None = None,
          **kw: object) -> list[float]:
    out = supersede_text(np.array(scores, dtype=np.float32), order=[(float(i), i) for i in range(len(scores))],
                         terms=[frozenset(t) for t in terms], features=feats, anchors=frozenset(anchors),
                         named_by=frozenset(anchors if named is None else named), similar=0.6, similar_shared=0.45,
                         penalty=0.2, **kw)  # type: ignore[arg-type]
    return [round(float(v), 5) for v in out]


def test_the_newer_version_outranks_the_older_one_whatever_the_cue_similarity() -> None:
    feats = _unit([1, 0.1, 0], [1, 0, 0.1], [0, 0, 1])
    terms = [{MARY, KITCHEN}, {MARY, OFFICE}, {JOHN, FOOTBALL}]
    out = _call([1.5, 1.0, 0.9], terms, feats, {MARY})
    assert out[1] > out[0] and out[0] <= 1.0 - 1e-4 and out[2] == 0.9  # John's trace is no version of Mary's


def test_a_cue_naming_the_older_version_keeps_it_and_before_lifts_its_predecessor() -> None:
    feats = _unit([1, 0.1, 0], [1, 0.05, 0.05], [1, 0, 0.1])
    terms = [{MARY, MOVE, KITCHEN}, {MARY, MOVE, OFFICE}, {MARY, MOVE, KITCHEN}]
    # "Where was Mary before the office?": the office version is named; the kitchen before it comes right after.
    out = _call([0.5, 0.9, 0.6], terms, feats, {MARY, OFFICE}, before=True)
    assert out[1] == 0.9 and out[0] == 0.8999 and out[2] == 0.6
    # Without "before" the first kitchen version is superseded by the later kitchen one and sinks.
    out = _call([0.5, 0.9, 0.6], terms, feats, {MARY, OFFICE})
    assert out[1] == 0.9 and out[0] < 0.6 - 0.1


def test_dissimilar_statements_about_one_entity_are_not_versions() -> None:
    feats = _unit([1, 0, 0], [0, 1, 0])  # cosine 0: "Mary went to the kitchen" vs "Mary picked up the football"
    out = _call([1.0, 0.8], [{MARY, KITCHEN}, {MARY, FOOTBALL}], feats, {MARY})
    assert out == [1.0, 0.8]


def test_as_of_keeps_the_state_at_the_first_hops_moment_beside_the_current_one() -> None:
    feats = _unit([1, 0.1, 0], [1, 0, 0.1], [1, 0.05, 0.05])
    terms = [{JOHN, KITCHEN}, {JOHN, OFFICE}, {JOHN, MOVE}]
    out = _call([0.9, 0.8, 0.7], terms, feats, {JOHN}, as_of=(1.5, 1))
    assert out[1] == 0.8 and out[2] == 0.7 and out[0] < 0.8  # 1 is the newest before the moment, 2 the newest after


def test_recall_gives_the_newest_state_and_follows_an_entity_when_the_cue_names_none(
        mem_factory: Callable[..., HEIMemory]) -> None:
    from hei_nw_plugin.embed import HashingEmbedder

    mem = mem_factory(embedder=HashingEmbedder(dim=256))
    story = ["Mary went to the kitchen.", "John went to the garden.", "Mary went to the office.",
             "John picked up the football.", "Daniel went to the hallway.", "John went to the cellar.",
             "Sandra went to the bathroom.", "Daniel went back to the garden.", "Sandra journeyed to the attic."]
    ids = [mem.write({"text": t, "force": True}, namespace="s").trace_id for t in story]
    assert mem.recall("Where is Mary?", k=1, namespace="s").traces[0].trace.id == ids[2]
    r = mem.recall("Where is the football?", k=3, namespace="s")
    got = [t.trace.id for t in r.traces]
    assert got[0] == ids[3] and ids[5] in got[:3] and r.traces[got.index(ids[5])].hop == 2
    mem.settings.recall.chain = "off"
    plain = mem.recall("Where is the football?", k=9, namespace="s").traces
    assert {t.hop for t in plain} == {1}  # (Hopfield completion alone lifts John's traces here too)


def _reference(scores, *, order, terms, features, anchors, named_by, similar, similar_shared, penalty,  # type: ignore[no-untyped-def]
               before=False, after=False, as_of=None, max_terms=None):
    """The definition pair by pair (reference for the matrix version)."""
    out = scores.astype(np.float32, copy=True)
    part = [i for i, t in enumerate(terms) if anchors & t and (max_terms is None or len(t) <= max_terms)]
    related: dict[int, list[int]] = {i: [] for i in part}
    for a, i in enumerate(part):
        for j in part[a + 1:]:
            shared = anchors & terms[i] & terms[j]
            cos = float(features[i] @ features[j])
            if shared and (cos >= similar or (cos >= similar_shared and (terms[i] & terms[j]) - shared)):
                related[i].append(j)
                related[j].append(i)

    def same_side(i: int, j: int) -> bool:
        return as_of is None or (order[i] <= as_of) == (order[j] <= as_of)

    newer = {i: [j for j in js if order[j] > order[i] and same_side(i, j) and not (named_by & (terms[i] - terms[j]))]
             for i, js in related.items()}
    for i in sorted((i for i, js in newer.items() if js), key=lambda x: order[x], reverse=True):
        out[i] = min(out[i] - penalty, min(out[j] for j in newer[i]) - 1e-4)
    named = {i for i, js in related.items() if not newer[i] and any(named_by & (terms[i] - terms[j]) for j in js)}
    for n in sorted(named, key=lambda x: order[x]):
        earlier = [j for j in related[n] if order[j] < order[n]]
        later = [j for j in related[n] if order[j] > order[n]]
        if before and earlier:
            j = max(earlier, key=lambda x: order[x])
            out[j] = max(out[j], out[n] - 1e-4)
        if after and later:
            j = min(later, key=lambda x: order[x])
            out[j] = max(out[j], out[n] - 1e-4)
    return out


def test_supersede_text_equals_the_pairwise_definition_on_random_candidate_sets() -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(2, 25))
        terms = [frozenset(int(t) for t in rng.choice(12, size=int(rng.integers(1, 6)), replace=False)) for _ in range(n)]
        feats = rng.standard_normal((n, 8)).astype(np.float32)
        feats[: n // 2] += 3 * rng.standard_normal(8).astype(np.float32)  # a cluster of similar ones
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        times = rng.integers(0, 5, size=n).astype(float)
        kw = {"order": [(float(times[i]), i) for i in range(n)], "terms": terms, "features": feats,
                  "anchors": frozenset({0, 1, 2}), "named_by": frozenset({0, 1, 2, 3}), "similar": 0.6, "similar_shared": 0.3, "penalty": 0.2,
                  "before": bool(rng.random() < 0.5), "after": bool(rng.random() < 0.3),
                  "as_of": (2.0, n // 2) if rng.random() < 0.3 else None, "max_terms": 4 if rng.random() < 0.3 else None}
        scores = rng.random(n).astype(np.float32)
        np.testing.assert_allclose(supersede_text(scores, **kw), _reference(scores, **kw), rtol=0, atol=1e-6)  # type: ignore[arg-type]

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

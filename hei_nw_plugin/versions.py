"""Newest wins among versions of one fact: by structured slots, and by text.

A memory that keeps every turn keeps every stale state too ("Mary went to the
kitchen", later "Mary journeyed to the office"). Cue similarity cannot tell which
is current, and a global recency bonus hurts every question whose answer is old.
So recency acts only between traces that are *versions of one another*:

* **Slots** (:func:`supersede_slots`): same slot keys (at least three), values
  differing in exactly one; the later one ranks first, the older just below it.
* **Text** (:func:`supersede_text`): two short traces that share a term the cue is about
  (an *anchor*: "Mary" in "Where is Mary?") and say the same kind of thing about it
  (feature cosine ≥ ``similar``, or ≥ ``similar_shared`` when they share a second
  term too). The older ranks below every newer version and loses ``penalty`` from its
  score, unless the cue names a term of it that the newer lacks ("Where was Mary before the kitchen?" names the kitchen
  version). A cue with "before"/"after" lifts the version just before/after the one
  it names to just below it.

Order is by ``created_at`` then write order, so dated events written out of order
(an import of old sessions) still version correctly.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

BEFORE_WORDS = frozenset({"before", "previously", "earlier", "prior", "formerly"})
AFTER_WORDS = frozenset({"after", "afterwards", "later", "next", "subsequently"})
_EPS = 1e-4

Signatures = tuple[tuple[str, int], ...]
"""A trace's leave-one-out slot signatures for newest-wins: (slot left out, hash of the rest)."""


def slot_signatures(slots: Mapping[str, Any] | None) -> Signatures:
    """Signatures of one trace's slots (empty below three slots: see :func:`supersede_slots`)."""
    if not slots or len(slots) < 3:  # two slots differing in one could be two facts about one subject
        return ()
    items = sorted((str(k), _hashable(v)) for k, v in slots.items())
    keys = tuple(k for k, _ in items)
    return tuple((x, hash((keys, x, tuple(items[:pos] + items[pos + 1:])))) for pos, (x, _v) in enumerate(items))


def supersede_slots(scores: np.ndarray, slots: Sequence[Mapping[str, Any] | None], seqs: Sequence[int],
                    cue_slots: Mapping[str, Any] | None = None, sigs: Sequence[Signatures] | None = None) -> np.ndarray:
    """Newest wins among slot versions of one fact.

    Two traces are versions of one fact when their slots have the same keys (at
    least three) and differ in exactly one value (``who=Lorcan, attribute=manager,
    value=Casimir`` → ``…value=Ottilie``); the later-written one (higher seq)
    ranks first, the older just below it — unless the cue itself names the
    older value of the differing slot, which asks for that version.

    Pairs are found through leave-one-out signatures (same keys, same values but
    for slot ``x``), so the cost is linear in candidates × slots, not quadratic.
    ``sigs`` are the candidates' :func:`slot_signatures` when the caller keeps them cached.
    """
    cue = {k: str(v).strip().lower() for k, v in (cue_slots or {}).items()}
    out = scores.copy()
    sigs = sigs if sigs is not None else [slot_signatures(si) for si in slots]
    buckets: dict[tuple[str, int], list[int]] = {}
    for i, sg in enumerate(sigs):
        for member in sg:
            buckets.setdefault(member, []).append(i)
    if all(len(js) < 2 for js in buckets.values()):  # no two candidates are versions of one fact
        return out
    for i in sorted((i for i, sg in enumerate(sigs) if sg), key=lambda x: -seqs[x]):  # newest first: a newer version's score is final
        si = slots[i]
        assert si is not None
        for member in sigs[i]:
            if len(buckets[member]) < 2:  # only this trace has that signature
                continue
            x = member[0]
            if cue.get(x) == str(si[x]).strip().lower():
                continue  # the cue asks for this very version
            for j in buckets[member]:
                sj = slots[j]
                if seqs[j] > seqs[i] and sj is not None and sj.get(x, si[x]) != si[x]:
                    out[i] = min(out[i], out[j] - 1e-4)
    return out


def supersede_text(
    scores: np.ndarray, *, order: Sequence[tuple[float, int]], terms: Sequence[frozenset[int]], features: np.ndarray,
    anchors: frozenset[int], named_by: frozenset[int], similar: float, similar_shared: float, penalty: float,
    before: bool = False, after: bool = False, as_of: tuple[float, int] | None = None, max_terms: int | None = None,
) -> np.ndarray:
    """Newest wins among text versions of what the cue asks about (see the module docstring).

    ``order`` is each candidate's (created_at, seq); ``terms`` its lexical term ids;
    ``features`` its unit-length dense features (rows). ``anchors`` are the term ids
    that make two traces versions (the cue's terms, or in a chained hop the entity it
    follows); ``named_by`` the term ids that ask for a particular version. With
    ``as_of`` (a chained hop), a version only supersedes one on the same side of that
    moment, so the state as of the first hop's trace survives beside the current one.
    A trace with more than ``max_terms`` distinct terms states several things and takes
    no part. Returns adjusted scores; the input is not modified.
    """
    out = scores.astype(np.float32, copy=True)
    part = [i for i, t in enumerate(terms) if anchors & t and (max_terms is None or len(t) <= max_terms)]
    if len(part) < 2:
        return out
    # Pairwise relations as matrices over the participants (a few dozen at most): term incidence M,
    # anchor and named columns of it, feature cosines.
    sizes = [len(terms[i]) for i in part]
    flat = np.fromiter(itertools.chain.from_iterable(terms[i] for i in part), dtype=np.int64, count=sum(sizes))
    vocab, cols = np.unique(flat, return_inverse=True)
    inc = np.zeros((len(part), len(vocab)), dtype=np.float32)
    inc[np.repeat(np.arange(len(part)), sizes), cols] = 1.0
    is_anchor = np.isin(vocab, np.fromiter(anchors, dtype=np.int64, count=len(anchors)))
    is_named = np.isin(vocab, np.fromiter(named_by, dtype=np.int64, count=len(named_by)))
    anc, nam = inc[:, is_anchor], inc[:, is_named]
    shared_anchor = anc @ anc.T
    shared_other = inc @ inc.T - shared_anchor
    sims = features[part] @ features[part].T
    related = (shared_anchor > 0) & ((sims >= similar) | ((sims >= similar_shared) & (shared_other > 0)))
    np.fill_diagonal(related, False)
    distinct = (nam.sum(axis=1)[:, None] - nam @ nam.T) > 0  # [i, j]: i holds a cue-named term that j lacks
    rank = np.empty(len(part), dtype=np.int64)
    rank[sorted(range(len(part)), key=lambda r: order[part[r]])] = np.arange(len(part))
    newer = rank[None, :] > rank[:, None]  # [i, j]: j is newer than i
    if as_of is not None:
        side = np.array([order[i] <= as_of for i in part])
        newer &= side[:, None] == side[None, :]
    # j supersedes i when it is newer, on the same side of as_of, and holds every term of i that the cue names.
    supersedes = related & newer & ~distinct
    sub = out[part]
    for r in sorted(np.flatnonzero(supersedes.any(axis=1)).tolist(), key=lambda x: -rank[x]):  # newest first
        sub[r] = min(sub[r] - penalty, float(sub[supersedes[r]].min()) - _EPS)  # below every newer version, and lower
    # A version the cue names: the newest of those holding a cue term that another version lacks.
    named = (related & distinct).any(axis=1) & ~supersedes.any(axis=1)
    for n in sorted(np.flatnonzero(named).tolist(), key=lambda x: rank[x]):
        earlier = np.flatnonzero(related[n] & (rank < rank[n]))
        later = np.flatnonzero(related[n] & (rank > rank[n]))
        if before and len(earlier):
            j = earlier[np.argmax(rank[earlier])]
            sub[j] = max(sub[j], sub[n] - _EPS)
        if after and len(later):
            j = later[np.argmin(rank[later])]
            sub[j] = max(sub[j], sub[n] - _EPS)
    out[part] = sub
    return out


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value

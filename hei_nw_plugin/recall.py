"""The recall path: a partial cue → candidates → one ranking → the traces returned, packed.

Stages, each timed in ms:

* **embed**: the cue's dense features and sparse DG key (:mod:`hei_nw_plugin.keyer`).
* **ann**: candidates from two channels: the HNSW graph over DG keys, and the BM25
  index over stemmed terms (:mod:`hei_nw_plugin.lexical`; names, numbers and rare
  words that the embedding blurs).
* **fetch**: the candidates' dense features from the warm cache (decrypted from the
  store once), and the returned traces, decrypted with the provenance check.
* **hopfield**: completion over the candidates, fusion (dense score + w · BM25 / best
  BM25), newest-wins among versions (:mod:`hei_nw_plugin.versions`), the cold-tier
  penalty, and chained recall: when the cue names no entity but its best trace does
  ("Where is the football?" → "Daniel grabbed the football."), a second hop cues with
  that entity and the first hop's trace, and its best traces follow right after.
* **pack**: :class:`~hei_nw_plugin.pack.Packer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hei_nw_plugin.cache import FeatureCache
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.hopfield import HopfieldCompleter
from hei_nw_plugin.index import ANNIndex
from hei_nw_plugin.keyer import DGKeyer
from hei_nw_plugin.lexical import LexicalIndex, analyze, entities, term_ids
from hei_nw_plugin.pack import Packer
from hei_nw_plugin.store import SQLTraceStore
from hei_nw_plugin.text import tokenize
from hei_nw_plugin.types import Cue, MemoryTokens, RecalledTrace, RecallResult, Trace
from hei_nw_plugin.versions import AFTER_WORDS, BEFORE_WORDS, supersede_slots, supersede_text

_NO_TERMS = np.zeros(0, dtype=np.uint32)


@dataclass
class _Hop:
    """One hop's candidates and their scores (aligned arrays)."""

    seqs: list[int]
    scores: np.ndarray  # final ranking score
    cue_sims: np.ndarray  # cosine to the cue in feature space
    weights: np.ndarray  # Hopfield attention
    lexical: np.ndarray  # BM25

    def ranked(self) -> list[int]:
        return [int(j) for j in np.argsort(-self.scores, kind="stable")]


@dataclass(frozen=True)
class _Query:
    """What ranking needs to know about a cue."""

    vector: np.ndarray  # unit-length features
    terms: np.ndarray  # lexical term ids (the BM25 query)
    anchors: frozenset[int]  # terms that make two traces versions
    named_by: frozenset[int]  # terms that ask for one particular version
    slots: Mapping[str, Any]
    before: bool
    after: bool
    as_of: tuple[float, int] | None = None


class Recaller:
    """Runs recalls for :class:`~hei_nw_plugin.memory.HEIMemory` over its keyer, indexes, store and cache."""

    def __init__(self, settings: HeiNwSettings, *, keyer: DGKeyer, hopfield: HopfieldCompleter, store: SQLTraceStore,
                 cache: FeatureCache, graph_for: Callable[[str], ANNIndex], lexicon_for: Callable[[str], LexicalIndex],
                 redact: Callable[[str], str]) -> None:
        self.settings = settings
        self.keyer, self.hopfield, self.store, self.cache = keyer, hopfield, store, cache
        self.graph_for, self.lexicon_for, self.redact = graph_for, lexicon_for, redact

    def terms(self, text: str, slots: Mapping[str, Any] | None = None) -> list[str]:
        """Lexical terms of an event or cue: its text's, then its string slot values' (see :func:`~hei_nw_plugin.lexical.analyze`)."""
        out = analyze(text)
        for v in (slots or {}).values():
            if isinstance(v, str):
                out.extend(analyze(v))
        return out

    def term_ids(self, terms: Sequence[str]) -> np.ndarray:
        return term_ids(terms, self.settings.keyer.seed) if terms else _NO_TERMS

    # ------------------------------------------------------------------ recall
    def recall(self, ns: str, c: Cue, k: int, *, where: Mapping[str, Any] | None, max_tokens: int | None,
               min_similarity: float | None, packer: Packer, t0: float) -> tuple[RecallResult, list[int]]:
        """The ``k`` best traces for a validated cue (timings from ``t0``, a perf_counter reading); also their seqs."""
        s = self.settings
        timings: dict[str, float] = {}
        feats, keys = self.keyer.encode([c.text], [c.slots])
        feat, key = feats[0], keys[0]
        t1 = time.perf_counter()
        timings["embed"] = (t1 - t0) * 1000
        graph, lex = self.graph_for(ns), self.lexicon_for(ns)
        n_cand = max(s.index.candidates, k * (4 if where else 1))
        shard_slot = s.index.shard_slot
        route = c.slots.get(shard_slot, (where or {}).get(shard_slot))  # read by slot-sharded indexes only
        route = self.redact(route) if isinstance(route, str) else route  # stored slots are redacted copies
        q_terms = self.term_ids(self.terms(c.text, c.slots))
        words = set(tokenize(c.text))
        query = _Query(feat, q_terms, frozenset(q_terms.tolist()), frozenset(q_terms.tolist()), c.slots,
                       before=bool(words & BEFORE_WORDS), after=bool(words & AFTER_WORDS))
        seqs = self._candidates(graph, lex, key, q_terms, n_cand, route)
        t2 = time.perf_counter()
        timings["ann"] = (t2 - t1) * 1000
        found: dict[int, Trace] = {}
        cand, fmap = self._load(ns, seqs, where, found)
        t3 = time.perf_counter()
        timings["fetch"] = (t3 - t2) * 1000
        fetch_ms = 0.0
        order: list[int] = []
        info: dict[int, tuple[float, float, float, float, int]] = {}  # seq -> score, cue sim, weight, bm25, hop
        if cand:
            hop = self._rank(query, cand, fmap, lex)
            ranked = hop.ranked()
            if min_similarity is not None:
                ranked = [j for j in ranked if float(hop.cue_sims[j]) >= min_similarity]
            order = [cand[j] for j in ranked]
            info = {cand[j]: (float(hop.scores[j]), float(hop.cue_sims[j]), float(hop.weights[j]), float(hop.lexical[j]), 1)
                    for j in ranked}
            follow = s.recall.chain == "always" or (s.recall.chain == "auto" and not entities(c.text))
            if follow and order:
                tc = time.perf_counter()
                self._fetch_returned(ns, order[:1], found)
                fetch_ms += (time.perf_counter() - tc) * 1000
                if order[0] in found:
                    order = self._chain(ns, c, query, order, info, fmap, found, graph, lex, n_cand, route, where, min_similarity)
        t_ranked = time.perf_counter()
        recalled: list[RecalledTrace] = []
        top: list[int] = []
        pos = 0
        while len(recalled) < k and pos < len(order):  # a row deleted, expired or tampered since is skipped
            chunk = order[pos: pos + (k - len(recalled))]
            pos += len(chunk)
            self._fetch_returned(ns, chunk, found)
            for seq in chunk:
                if seq in found and len(recalled) < k:
                    score, sim, weight, bm25, hop_no = info[seq]
                    recalled.append(RecalledTrace(trace=found[seq], score=score, ann_similarity=sim, hopfield_weight=weight,
                                                  lexical_score=bm25, hop=hop_no))
                    top.append(seq)
                elif seq not in found:
                    self.cache.forget([seq])
        t4 = time.perf_counter()
        # "hopfield" is completion and ranking; decrypting the returned traces counts as fetch.
        timings["hopfield"] = (t_ranked - t3) * 1000 - fetch_ms
        timings["fetch"] += (t4 - t_ranked) * 1000 + fetch_ms
        tokens = packer.pack([r.trace for r in recalled], max_tokens=max_tokens) if recalled else \
            MemoryTokens(text="", n_tokens=0, trace_ids=[], truncated=False)
        t5 = time.perf_counter()
        timings["pack"] = (t5 - t4) * 1000
        timings["total"] = (t5 - t0) * 1000
        return RecallResult(namespace=ns, traces=recalled, memory_tokens=tokens, timings_ms=timings), top

    # ---------------------------------------------------------------- pieces
    def _candidates(self, graph: ANNIndex, lex: LexicalIndex, key: np.ndarray, q_terms: np.ndarray, n: int,
                    route: Any) -> list[int]:
        """ANN candidates by DG key, then the lexical channel's best that the graph did not return."""
        seqs = [int(x) for x in graph.search(key, n, route=route)[0]]
        rs = self.settings.recall
        routed = route is not None and self.settings.index.shard_by == "slot"  # the cue asked for one shard only
        if rs.lexical and rs.lexical_candidates and len(q_terms) and not routed:
            have = set(seqs)
            seqs += [int(x) for x in lex.search(q_terms, rs.lexical_candidates).seqs if int(x) not in have]
        return seqs

    def _load(self, ns: str, seqs: list[int], where: Mapping[str, Any] | None,
              found: dict[int, Trace]) -> tuple[list[int], dict[int, np.ndarray]]:
        """Candidates that pass ``where`` (all of them without one) and their dense features."""
        if where:  # filtering needs slots and metadata of every candidate
            got, fmap, _errors = self.store.fetch(ns, seqs)
            found.update(got)
            self.cache.put(fmap, got)
            return [x for x in seqs if x in got and matches(got[x], where)], fmap
        fmap, missing = self.cache.lookup(seqs)
        if missing:
            # Ranking features only: every trace recall returns is fetched again with the provenance check.
            traces, more, _errors = self.store.fetch(ns, missing, attest=False)
            self.cache.put(more, traces)
            fmap.update(more)
        return [x for x in seqs if x in fmap], fmap

    def _fetch_returned(self, ns: str, seqs: Sequence[int], found: dict[int, Trace]) -> None:
        need = [x for x in seqs if x not in found]
        if need:
            got, _f, _errors = self.store.fetch(ns, need)
            found.update(got)

    def _rank(self, q: _Query, cand: list[int], fmap: Mapping[int, np.ndarray], lex: LexicalIndex) -> _Hop:
        """Scores of one hop: completion, lexical fusion, newest-wins by slots, cold penalty, newest-wins by text."""
        s, rs = self.settings, self.settings.recall
        X = np.stack([fmap[x] for x in cand]).astype(np.float32)
        X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        cue_sims = X @ q.vector
        if s.hopfield.enabled:
            comp = self.hopfield.complete(q.vector, X)
            scores, weights = comp.scores.copy(), comp.weights
        else:
            scores, weights = cue_sims.copy(), np.zeros_like(cue_sims)
        bm25 = lex.score(q.terms, cand) if len(q.terms) else np.zeros(len(cand), dtype=np.float32)
        if rs.lexical and float(bm25.max(initial=0.0)) > 0:
            scores = scores + rs.lexical_weight * bm25 / float(bm25.max())
        if s.hopfield.supersede_slots:
            scores = supersede_slots(scores, [self.cache.slots(x) for x in cand], cand, q.slots,
                                     [self.cache.signatures(x) for x in cand])
        if rs.cold_penalty:  # before versions: a newer cold version still outranks the version it supersedes
            cold = np.array([self.cache.is_cold(x) for x in cand])
            scores = np.where(cold, scores - rs.cold_penalty, scores)
        if rs.versions and q.anchors:
            scores = supersede_text(
                scores, order=[(lex.time_of(x) or 0.0, x) for x in cand], terms=[lex.terms_of(x) for x in cand], features=X,
                anchors=q.anchors, named_by=q.named_by, similar=rs.version_similarity,
                similar_shared=rs.version_similarity_shared, penalty=rs.version_penalty, before=q.before, after=q.after,
                as_of=q.as_of, max_terms=rs.version_max_terms)
        return _Hop(cand, np.asarray(scores, dtype=np.float32), cue_sims, weights, bm25)

    def _chain(self, ns: str, c: Cue, q: _Query, order: list[int], info: dict[int, tuple[float, float, float, float, int]],
               fmap: dict[int, np.ndarray], found: dict[int, Trace], graph: ANNIndex, lex: LexicalIndex, n_cand: int,
               route: Any, where: Mapping[str, Any] | None, min_similarity: float | None) -> list[int]:
        """Order after an optional second hop from the best trace (``order`` unchanged when no hop is made)."""
        rs = self.settings.recall
        first = order[0]
        cue_stems = set(self.terms(c.text, c.slots))
        bridge = sorted(entities(found[first].text) - cue_stems)
        if not bridge:
            return order
        x1 = fmap[first].astype(np.float32)
        vec = q.vector + x1 / max(float(np.linalg.norm(x1)), 1e-12)
        vec /= max(float(np.linalg.norm(vec)), 1e-12)
        b_terms = self.term_ids(bridge)
        anchors = frozenset(b_terms.tolist())
        q2 = _Query(vec, b_terms, anchors, anchors | q.named_by, q.slots, q.before, q.after,
                    as_of=(lex.time_of(first) or 0.0, first))
        key2 = self.keyer.sparsify(vec[None, :])[0]
        seqs2 = self._candidates(graph, lex, key2, b_terms, n_cand, route)
        cand2, fmap2 = self._load(ns, [first, *[x for x in seqs2 if x != first]], where, found)
        fmap.update(fmap2)
        if len(cand2) < 2:
            return order
        hop = self._rank(q2, cand2, fmap2, lex)
        # The second hop is for what the entity adds: traces holding a term of the cue were ranked by the first.
        second = [cand2[j] for j in hop.ranked() if cand2[j] != first and not (lex.terms_of(cand2[j]) & q.anchors) and
                  (min_similarity is None or float(hop.cue_sims[j]) >= min_similarity)]
        for j, x in enumerate(cand2):
            if x != first and (x not in info or float(hop.scores[j]) > info[x][0]) and x in second:
                info[x] = (float(hop.scores[j]), float(hop.cue_sims[j]), float(hop.weights[j]), float(hop.lexical[j]), 2)
        lead = [first, *second[: rs.chain_heads]]
        rest = sorted((x for x in info if x not in lead), key=lambda x: -info[x][0])
        return lead + rest


def matches(trace: Trace, where: Mapping[str, Any]) -> bool:
    """Whether every ``where`` item equals the trace's slot (or, failing that, metadata) value."""
    for k, v in where.items():
        have = trace.slots.get(k, trace.metadata.get(k, _MISSING))
        if have is _MISSING or have != v:
            return False
    return True


_MISSING = object()

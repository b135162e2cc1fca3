"""The write path: events → validated, redacted, keyed → gated → one transaction in the store → indexes and cache.

:class:`Writer` runs it for :class:`~hei_nw_plugin.memory.HEIMemory`, which validates the
namespace and hands over. A batch is validated before anything is written, so one bad event
changes nothing; a bulk stream is embedded one batch ahead in a worker thread.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from hei_nw_plugin.cache import FeatureCache
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.errors import InputError
from hei_nw_plugin.gate import WriteGate
from hei_nw_plugin.index import ANNIndex
from hei_nw_plugin.keyer import DGKeyer, pack_sparse
from hei_nw_plugin.lexical import LexicalIndex
from hei_nw_plugin.recall import Recaller
from hei_nw_plugin.store import NewTrace, SQLTraceStore
from hei_nw_plugin.telemetry import EngineTelemetry
from hei_nw_plugin.types import MemoryEvent, WriteDecision
from hei_nw_plugin.validate import check_event, timestamp_s


@dataclass
class _Prepared:
    """A batch validated, redacted and keyed, ready to be gated and stored."""

    events: list[MemoryEvent]
    texts: list[str]
    slots: list[dict[str, Any]]
    features: np.ndarray
    keys: np.ndarray
    terms: list[np.ndarray]


class Writer:
    """Gates and stores batches for one memory (its keyer, gate, store, indexes and cache)."""

    def __init__(self, settings: HeiNwSettings, *, keyer: DGKeyer, gate: Callable[[], WriteGate], store: SQLTraceStore,
                 cache: FeatureCache, telemetry: Callable[[], EngineTelemetry], recaller: Recaller,
                 graph_for: Callable[[str], ANNIndex], lexicon_for: Callable[[str], LexicalIndex],
                 unindex: Callable[[str, Sequence[int]], None], evict: Callable[[str], list[str]],
                 count_tokens: Callable[[str], int], redact: Callable[[str], str], lock: threading.RLock) -> None:
        self.settings, self.keyer, self.gate, self.store, self.cache = settings, keyer, gate, store, cache
        self.telemetry, self.recaller, self.graph_for, self.lexicon_for = telemetry, recaller, graph_for, lexicon_for
        self.unindex, self.evict, self.count_tokens, self.redact, self.lock = unindex, evict, count_tokens, redact, lock

    def stream(self, ns: str, events: Iterable[MemoryEvent | str | Mapping[str, Any]], batch: int) -> Iterator[list[WriteDecision]]:
        """Commit ``events`` a batch at a time, preparing the next batch in a worker thread meanwhile."""
        chunks = _chunks(iter(events), batch)

        def prepare(start: int, chunk: list[Any]) -> _Prepared:
            try:
                return self.prepare(chunk)
            except InputError as err:
                raise type(err)(f"event batch starting at position {start}: {err}") from err

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hei-nw-embed") as pool:
            start, first = 0, next(chunks, None)
            pending = pool.submit(prepare, 0, first) if first else None
            while pending is not None:
                ready = pending.result()
                start += len(ready.events)
                nxt = next(chunks, None)
                pending = pool.submit(prepare, start, nxt) if nxt else None
                yield self.commit(ns, ready)

    def prepare(self, events: Sequence[MemoryEvent | str | Mapping[str, Any]]) -> _Prepared:
        """Validate, redact and key a batch (no store access; safe in a worker thread)."""
        evs = [check_event(e, self.settings.limits) for e in events]
        texts = [self.redact(e.text) for e in evs]
        slots = [{k: (self.redact(v) if isinstance(v, str) else v) for k, v in e.slots.items()} for e in evs]
        feats, keys = self.keyer.encode(texts, slots) if evs else (np.zeros((0, 0)), np.zeros((0, 0)))
        terms = [self.recaller.term_ids(self.recaller.terms(t, sl)) for t, sl in zip(texts, slots, strict=True)]
        return _Prepared(evs, texts, slots, feats, keys, terms)

    def commit(self, ns: str, prep: _Prepared) -> list[WriteDecision]:
        """Gate a prepared batch against the store and write what passes, in one transaction."""
        evs, texts, slots, feats, keys = prep.events, prep.texts, prep.slots, prep.features, prep.keys
        if not evs:
            return []
        with self.lock:
            graph, lex = self.graph_for(ns), self.lexicon_for(ns)
            decisions: list[WriteDecision] = []
            rows: list[NewTrace] = []
            row_keys: list[np.ndarray] = []
            row_feats: list[np.ndarray] = []
            row_terms: list[np.ndarray] = []
            batch = np.zeros((len(evs), keys.shape[1]), dtype=np.float32)  # accepted keys so far, for novelty
            now = time.time()
            # A keyed event whose key is already stored is an update: it always replaces the old trace,
            # since refusing it would leave the stale version live.
            known = self.store.existing_keys(ns, [e.key for e in evs if e.key is not None])
            stored_sims = graph.nearest(keys)  # the batch's novelty against the store, in one search
            for ev, text, sl, key, feat, terms, stored in zip(evs, texts, slots, keys, feats, prep.terms, stored_sims,
                                                              strict=True):
                nearest = self._nearest(stored, key, batch[: len(row_keys)])
                n_tokens = ev.context_tokens if ev.context_tokens is not None else self.count_tokens(ev.text)
                decision = self.gate().decide(
                    namespace=ns, text=text, nearest_similarity=nearest, reward=ev.reward, pin=ev.pin,
                    tokens=n_tokens, force=ev.force, update=ev.key is not None and ev.key in known)
                self.telemetry().observe_decision(ns, decision, n_tokens, ev.label)
                if decision.accepted:
                    created = timestamp_s(ev.timestamp) if ev.timestamp else now
                    row = NewTrace(
                        namespace=ns, text=text, slots=sl, metadata=ev.metadata, source=ev.source,
                        key_blob=pack_sparse(key), created_at=created, expires_at=self._expiry(ev, decision, created, now),
                        pinned=ev.pin, gate_score=decision.score, ext_key=ev.key,
                        features=feat.astype(np.float16).tobytes(), cold=decision.tier == "cold",
                        gate={"score": round(decision.score, 6), "reason": decision.reason, "tau": decision.threshold,
                              "components": decision.components.model_dump()},
                    )
                    decision.trace_id = row.id
                    batch[len(row_keys)] = key
                    rows.append(row)
                    row_keys.append(key)
                    row_feats.append(feat)
                    row_terms.append(terms)
                    if ev.key is not None:
                        known.add(ev.key)
                decisions.append(decision)
            if rows:
                refs = self.store.insert(rows)
                replaced = {r.replaced_seq for r in refs if r.replaced_seq is not None}
                if replaced:
                    self.unindex(ns, sorted(replaced))
                    self.telemetry().observe_removed("replaced", len(replaced))
                # A key repeated inside one batch: only its last version is live.
                live = [i for i, r in enumerate(refs) if r.seq not in replaced]
                graph.add(np.array([refs[i].seq for i in live], dtype=np.uint64), np.stack([row_keys[i] for i in live]),
                          slots=[rows[i].slots for i in live])
                lex.add([refs[i].seq for i in live], [row_terms[i] for i in live], [rows[i].created_at for i in live])
                lex.maybe_save(self.settings.index.save_every)
                # Warm-key cache: what was just written is the likeliest to be recalled next.
                self.cache.put_written([(refs[i].seq, row_feats[i], rows[i].slots, "cold" if rows[i].cold else "salient")
                                        for i in live])
                if self.settings.decay.capacity is not None:
                    self.evict(ns)
        return decisions

    def _expiry(self, ev: MemoryEvent, decision: WriteDecision, created: float, now: float) -> float | None:
        """When an accepted event's trace expires (s since epoch): never when pinned; a cold trace by decay.cold_ttl_s
        from now; else by its own or the default TTL from when it happened."""
        if ev.pin:
            return None
        d = self.settings.decay
        if decision.tier == "cold" and d.cold_ttl_s is not None and ev.ttl_s is None:
            return now + d.cold_ttl_s
        ttl = ev.ttl_s or d.ttl_s
        return None if ttl is None else created + ttl

    @staticmethod
    def _nearest(stored: float, key: np.ndarray, batch_keys: np.ndarray) -> float | None:
        """Cosine to the closest stored key (``stored``, -inf for none) or earlier accepted key of the same batch
        (None if there is neither)."""
        best: float | None = float(stored) if np.isfinite(stored) else None
        if len(batch_keys):
            nz = np.flatnonzero(key)  # keys are k-sparse: touch only the winners
            b = float(np.max(batch_keys[:, nz] @ key[nz]))
            best = b if best is None else max(best, b)
        return best


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk

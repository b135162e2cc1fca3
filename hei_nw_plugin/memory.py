"""HEIMemory: the one object an agent talks to.

write(event) → gate → encrypted, signed trace in the store (salient, or cold when
below τ) → key in the namespace's HNSW graph and terms in its lexical index.
recall(cue) → :class:`~hei_nw_plugin.recall.Recaller` (DG key and BM25 candidates →
Hopfield completion, fusion, versions, chained hop → ranked traces → packed memory
tokens, with a timing breakdown). The store is the source of truth; the indexes are
rebuilt or caught up from it. Async twins run the same sync code in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, Field

from hei_nw_plugin.cache import FeatureCache, Prefetcher
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import Embedder, embedder_from_settings
from hei_nw_plugin.errors import (
    ConfigError,
    InvalidEventError,
    UnknownNamespaceError,
)
from hei_nw_plugin.gate import SurpriseScorer, WriteGate
from hei_nw_plugin.hopfield import HopfieldCompleter
from hei_nw_plugin.index import ANNIndex, NamespacedIndex
from hei_nw_plugin.keyer import DGKeyer
from hei_nw_plugin.lexical import LexicalIndex, NamespacedLexicon
from hei_nw_plugin.pack import Packer, TokenCounter, redact
from hei_nw_plugin.recall import Recaller, matches
from hei_nw_plugin.store import LocalKeyFile, SQLTraceStore
from hei_nw_plugin.store.keys import KeyProvider
from hei_nw_plugin.telemetry import EngineTelemetry
from hei_nw_plugin.types import (
    DEFAULT_NAMESPACE,
    Cue,
    MemoryEvent,
    RecallResult,
    Trace,
    WriteDecision,
)
from hei_nw_plugin.validate import (
    check_cue,
    check_int,
    check_namespace,
    check_number,
    check_trace_id,
    check_where,
    representable,
)
from hei_nw_plugin.writer import Writer

log = logging.getLogger(__name__)


class VerifyReport(BaseModel):
    """Outcome of :meth:`HEIMemory.verify`."""

    ok: bool
    records_checked: int
    live_traces: int
    problems: list[dict[str, Any]] = Field(description="One entry per tampered, missing or unexpected item.")


class MemoryStats(BaseModel):
    """Counters for one namespace or all of them."""

    namespace: str | None
    traces: int
    namespaces: int
    index_size: int
    replay_queue: int
    gate: dict[str, Any]
    recall_p50_ms: float | None
    recall_p95_ms: float | None
    feature_cache: dict[str, float] = Field(default_factory=dict, description="Warm-key cache figures (see HEIMemory.cache_stats).")


class HEIMemory:
    """Episodic memory for one or many tenants; every call is scoped by ``namespace``."""

    def __init__(
        self,
        settings: HeiNwSettings | None = None,
        *,
        embedder: Embedder | None = None,
        surprise: SurpriseScorer | None = None,
        token_counter: TokenCounter | None = None,
        key_provider: KeyProvider | None = None,
        persist_index: bool = True,
    ) -> None:
        self.settings = settings or HeiNwSettings()
        s = self.settings
        _limit_blas(s.index.blas_threads)
        self.embedder = embedder or embedder_from_settings(s.embedder)
        self.keyer = DGKeyer(s.keyer, self.embedder)
        self.gate = WriteGate(s.gate, surprise=surprise)
        self.hopfield = HopfieldCompleter(beta=s.hopfield.beta, steps=s.hopfield.steps, mix=s.hopfield.mix)
        self.packer = Packer(s.pack, token_counter=token_counter)
        self.keys = key_provider or LocalKeyFile(s.key_file_path)
        self.store = SQLTraceStore(s.sqlalchemy_url, self.keys, pool_size=s.store.pool_size, reconnect_s=s.store.reconnect_s,
                                   connect_timeout_s=s.store.connect_timeout_s)
        index_dir = (s.store.data_dir / "index" / _url_tag(s.sqlalchemy_url)) if persist_index else None
        self.index = NamespacedIndex(s.keyer.dim, s.index, index_dir)
        self.lexicon = NamespacedLexicon(index_dir, seed=s.keyer.seed, k1=s.recall.bm25_k1, b=s.recall.bm25_b)
        self._pending_touch: dict[int, tuple[int, float]] = {}
        self._flusher: threading.Thread | None = None
        self.cache = FeatureCache(s.index.feature_cache)
        self._prefetcher = Prefetcher(self.cache, self._load_unattested, self._neighbours)
        self._recaller = Recaller(s, keyer=self.keyer, hopfield=self.hopfield, store=self.store, cache=self.cache,
                                  graph_for=self._graph, lexicon_for=self._lexicon, redact=self._redact)
        self._touch_lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=2048)
        self._write_lock = threading.RLock()
        self._writer = Writer(s, keyer=self.keyer, gate=lambda: self.gate, store=self.store, cache=self.cache,
                              telemetry=lambda: self.telemetry, recaller=self._recaller, graph_for=self._graph,
                              lexicon_for=self._lexicon, unindex=self._unindex, evict=self._evict_capacity,
                              count_tokens=lambda text: self.packer.count(text), redact=self._redact, lock=self._write_lock)
        self._synced_heads: dict[str, str] = {}  # namespace -> store chain head its graph was last reconciled at
        self.telemetry = EngineTelemetry(s.telemetry, gate_target_per_1k=s.gate.target_write_rate,
                                         pack_budget_tokens=s.pack.max_mem_tokens)

    @classmethod
    def open(cls, data_dir: str | Path, **kwargs: Any) -> HEIMemory:
        """Memory with SQLite, index and key file under ``data_dir`` and default settings otherwise."""
        return cls(HeiNwSettings.build(store={"data_dir": Path(data_dir)}), **kwargs)

    def attach_surprise(self, scorer: SurpriseScorer | None) -> None:
        """Use a language model's token NLL for the gate's surprise (None: back to the proxy)."""
        self.gate.model_surprise = scorer

    def set_token_counter(self, counter: TokenCounter | None) -> None:
        """Count memory tokens with the model's tokenizer."""
        self.packer = Packer(self.settings.pack, token_counter=counter)

    def _check_ns(self, namespace: str) -> str:
        return check_namespace(namespace, self.settings.limits)

    def _graph(self, namespace: str) -> ANNIndex:
        graph = self.index.get(namespace)
        if graph is None:
            graph = self.index.open(namespace, self.store.seqs(namespace), self.store.key_vectors,
                                    lambda seqs: self._slots_of(namespace, seqs))
        return graph

    def _lexicon(self, namespace: str) -> LexicalIndex:
        lex = self.lexicon.get(namespace)
        if lex is None:
            lex = self.lexicon.open(namespace, self.store.seqs(namespace), lambda seqs: self._terms_of(namespace, seqs))
        return lex

    def _slots_of(self, ns: str, seqs: list[int]) -> dict[int, dict[str, Any]]:
        """Slots of stored traces (decrypted; used to place traces in slot shards when the index is rebuilt)."""
        traces, _f, _errors = self.store.fetch(ns, seqs, attest=False)
        return {s: t.slots for s, t in traces.items()}

    def _terms_of(self, ns: str, seqs: list[int]) -> dict[int, tuple[list[str], float]]:
        """Lexical terms and created_at of stored traces (decrypted; used when the lexical index is rebuilt)."""
        traces, _f, _errors = self.store.fetch(ns, seqs, attest=False)
        return {s: (self._recaller.terms(t.text, t.slots), t.created_at.timestamp()) for s, t in traces.items()}

    def _load_unattested(self, ns: str, seqs: list[int]) -> tuple[dict[int, Trace], dict[int, np.ndarray]]:
        traces, fmap, _errors = self.store.fetch(ns, seqs, attest=False)
        return traces, fmap

    def _neighbours(self, ns: str, seqs: list[int]) -> list[int]:
        graph = self.index.get(ns)
        want: list[int] = []
        if graph is None:
            return want
        for seq in seqs:
            vec = graph.vector(seq)
            if vec is not None:
                want.extend(int(i) for i in graph.search(vec, 2 * self.settings.index.candidates)[0])
        return want

    def _unindex(self, ns: str, seqs: Sequence[int]) -> None:
        """Take traces out of the namespace's graph, lexical index and feature cache (they left the store)."""
        seqs = [int(x) for x in seqs]
        if not seqs:
            return
        self._graph(ns).remove(seqs)
        self._lexicon(ns).remove(seqs)
        self.cache.forget(seqs)

    def _redact(self, text: str) -> str:
        p = self.settings.pack
        return redact(text, p.pii_kinds) if p.redact_pii else text

    # --------------------------------------------------------------------- write
    def write(self, event: MemoryEvent | str | Mapping[str, Any], *, namespace: str = DEFAULT_NAMESPACE) -> WriteDecision:
        """Offer one event to the gate; stores it when accepted. See :meth:`write_many`."""
        return self.write_many([event], namespace=namespace)[0]

    def write_many(self, events: Sequence[MemoryEvent | str | Mapping[str, Any]], *, namespace: str = DEFAULT_NAMESPACE) -> list[WriteDecision]:
        """Gate and store a batch in one transaction.

        Every event is validated before anything is written, so one bad event
        rejects the whole batch and changes nothing.
        """
        ns = self._check_ns(namespace)
        if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Sequence):
            raise InvalidEventError("write_many takes a list of events")
        return self._writer.commit(ns, self._writer.prepare(events))

    def write_stream(self, events: Iterable[MemoryEvent | str | Mapping[str, Any]], *, namespace: str = DEFAULT_NAMESPACE,
                     batch: int = 512) -> Iterator[list[WriteDecision]]:
        """Gate and store a long stream (a bulk import), one transaction per ``batch`` events.

        Yields each batch's decisions once it is stored. The next batch is validated and
        embedded in a worker thread while the current one is gated and stored, so an import
        costs about what embedding alone costs. A bad event stops the import with an error
        naming its position; every batch before it is stored, its own batch is not.
        """
        ns = self._check_ns(namespace)
        check_int("batch", batch, minimum=1)
        if isinstance(events, (str, bytes, Mapping)):
            raise InvalidEventError("write_stream takes an iterable of events")
        yield from self._writer.stream(ns, events, batch)

    # -------------------------------------------------------------------- recall
    def recall(
        self, cue: Cue | str | Mapping[str, Any], k: int = 5, *, namespace: str = DEFAULT_NAMESPACE,
        where: Mapping[str, Any] | None = None, max_tokens: int | None = None, min_similarity: float | None = None,
    ) -> RecallResult:
        """The ``k`` traces best matching a partial cue, ranked, plus packed memory tokens.

        ``where`` keeps only traces whose slots or metadata equal every given value;
        ``min_similarity`` drops traces whose cosine to the cue (feature space) is lower.
        Timings are in milliseconds. A namespace never written to recalls nothing.
        """
        t0 = time.perf_counter()
        ns = self._check_ns(namespace)
        c = check_cue(cue, self.settings.limits)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.settings.limits.max_k:
            raise InvalidEventError(f"k must be an integer in 1..{self.settings.limits.max_k}, got {k!r}")
        check_where(where)
        if max_tokens is not None:
            check_int("max_tokens", max_tokens, minimum=1)
        if min_similarity is not None:
            check_number("min_similarity", min_similarity)
        result, top = self._recaller.recall(ns, c, k, where=where, max_tokens=max_tokens, min_similarity=min_similarity,
                                            packer=self.packer, t0=t0)
        self._latencies.append(result.timings_ms["total"])
        self.telemetry.observe_recall(result.timings_ms, result.memory_tokens)
        self._note_recalled(top)  # feeds retention
        if self.settings.index.prefetch and top:
            self._prefetcher.schedule(ns, top[: self.settings.index.prefetch_seeds])
        return result

    def has_trace(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Whether a live trace with this id is in the namespace (no decryption)."""
        return self.store.seq_of(self._check_ns(namespace), check_trace_id(trace_id)) is not None

    def store_figures(self) -> dict[str, float]:
        """Live traces, namespaces, index entries and shards of this process's graphs, and the warm-key cache figures."""
        graphs = list(self.index._graphs.values())
        return {"traces": self.store.count(), "namespaces": len(self.store.namespaces()),
                "index_entries": sum(len(g) for g in graphs),
                "shards": sum(len(getattr(g, "shards", None) or {0: g}) for g in graphs), **self.cache_stats()}

    def cache_stats(self) -> dict[str, float]:
        """Warm-key cache figures since start (see :meth:`FeatureCache.stats`)."""
        return self.cache.stats()

    def reset_cache_stats(self) -> None:
        self.cache.reset_stats()

    def warm_features(self, *, namespace: str = DEFAULT_NAMESPACE, batch: int = 2048) -> int:
        """Decrypt the namespace's dense features into the in-process cache (up to its capacity)
        so the first recalls after opening a large store cost what later ones do; returns how many."""
        ns = self._require_ns(namespace)
        seqs = [int(x) for x in self.store.seqs(ns)][: self.settings.index.feature_cache]
        for start in range(0, len(seqs), batch):
            missing = self.cache.uncached(seqs[start:start + batch])
            if missing:
                traces, fmap = self._load_unattested(ns, missing)
                self.cache.put(fmap, traces)
        return len(seqs)

    def _note_recalled(self, seqs: list[int]) -> None:
        now = time.time()
        with self._touch_lock:
            for s in seqs:
                n, _ = self._pending_touch.get(s, (0, now))
                self._pending_touch[s] = (n + 1, now)
            flush = len(self._pending_touch) >= 256 and (self._flusher is None or not self._flusher.is_alive())
            if flush:
                # Recall counts only steer eviction: write them off the recall path.
                self._flusher = threading.Thread(target=self._flush_quietly, name="hei-nw-touch", daemon=True)
                self._flusher.start()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # a later flush or close() retries; counts are advisory
            log.warning("recall-count flush failed", exc_info=True)

    def flush(self) -> None:
        """Write pending recall counts and save index files."""
        with self._touch_lock:
            pending, self._pending_touch = self._pending_touch, {}
        self.store.touch(pending)

    # ---------------------------------------------------------------- lifecycle
    def _require_ns(self, namespace: str) -> str:
        ns = self._check_ns(namespace)
        if not self.store.has_namespace(ns):
            raise UnknownNamespaceError(f"namespace {ns!r} has never been written to")
        return ns

    def get(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> Trace:
        """One trace by id (TraceNotFoundError if it is not in this namespace)."""
        return self.store.get(self._require_ns(namespace), check_trace_id(trace_id))

    def get_by_key(self, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> Trace | None:
        """The trace written with caller key ``key``, or None."""
        if not isinstance(key, str) or not key:
            raise InvalidEventError("key must be a non-empty string")
        if any(unicodedata.category(c) == "Cs" for c in key):  # writes refuse such keys too (not encodable as UTF-8)
            raise InvalidEventError("key must not contain lone surrogate characters")
        return self.store.get_by_key(self._check_ns(namespace), key)

    def list_traces(self, *, namespace: str = DEFAULT_NAMESPACE, limit: int = 100, offset: int = 0,
                    where: Mapping[str, Any] | None = None) -> list[Trace]:
        """Traces in write order (oldest first), optionally filtered on slots/metadata."""
        check_int("limit", limit, minimum=0)
        check_int("offset", offset, minimum=0)
        check_where(where)
        out = self.store.list_traces(self._check_ns(namespace), limit=limit if not where else 1_000_000, offset=0 if where else offset)
        if where:
            out = [t for t in out if matches(t, where)][offset: offset + limit]
        return out

    def delete(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Delete a trace from store, index and replay queue; its data key is destroyed.

        The namespace's index files are rewritten before this returns (cost: one index
        save), so the trace's key and terms leave the disk with it, not at the next save.
        """
        ns = self._require_ns(namespace)
        with self._write_lock:
            seq = self.store.delete(ns, check_trace_id(trace_id))
            self._unindex(ns, [seq])
            self._graph(ns).save()
            self._lexicon(ns).save()
        self.telemetry.observe_removed("deleted")

    def delete_by_key(self, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Delete the trace written with ``key``; False when there is none."""
        t = self.get_by_key(key, namespace=namespace)
        if t is None:
            return False
        self.delete(t.id, namespace=namespace)
        return True

    def pin(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Protect a trace from decay and eviction."""
        self.store.set_pinned(self._require_ns(namespace), check_trace_id(trace_id), True)

    def unpin(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Make a pinned trace evictable again."""
        self.store.set_pinned(self._require_ns(namespace), check_trace_id(trace_id), False)

    def set_expiry(self, trace_id: str, ttl_s: float | None, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Expire a trace ``ttl_s`` seconds from now (None: never). Pinned traces are never evicted regardless."""
        if ttl_s is not None and (isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not math.isfinite(ttl_s) or ttl_s <= 0):
            raise InvalidEventError(f"ttl_s must be a positive number of seconds or None, got {ttl_s!r}")
        if ttl_s is not None and not representable(time.time() + ttl_s):
            raise InvalidEventError(f"ttl_s {ttl_s!r} puts the expiry beyond year 9999")
        self.store.set_expiry(self._require_ns(namespace), check_trace_id(trace_id), None if ttl_s is None else time.time() + ttl_s)

    def retention_score(self, gate_score: float, age_s: float, recall_count: int, *, cold: bool = False) -> float:
        """Eviction order, lowest first: gate_score · 2^(−age/half_life) + 0.1 · ln(1 + recalls), with
        decay.cold_half_life_s as the half-life of a cold trace."""
        d = self.settings.decay
        return gate_score * 2.0 ** (-age_s / (d.cold_half_life_s if cold else d.half_life_s)) + 0.1 * math.log1p(recall_count)

    def evict(self, *, namespace: str | None = None, now: float | None = None) -> list[str]:
        """Drop expired traces, then the lowest-retention ones over capacity; pinned ones never. Returns ids."""
        now = time.time() if now is None else check_number("now", now)
        self.flush()
        spaces = [self._check_ns(namespace)] if namespace is not None else self.store.namespaces()  # live ones
        gone: list[str] = []
        with self._write_lock:
            for ns in spaces:
                expired = self.store.expired(ns, now)
                self.store.delete_many(ns, expired, reason="expired")
                self._unindex(ns, [s for s, _ in expired])
                self.telemetry.observe_removed("expired", len(expired))
                gone += [t for _, t in expired]
                gone += self._evict_capacity(ns, now=now)
        return gone

    def _evict_capacity(self, ns: str, *, now: float | None = None) -> list[str]:
        cap = self.settings.decay.capacity
        if cap is None or self.store.count(ns) <= cap:
            return []
        now = time.time() if now is None else now
        rows = self.store.retention_rows(ns)
        excess = self.store.count(ns) - cap
        rows.sort(key=lambda r: (self.retention_score(r.gate_score, now - r.created_at, r.recall_count, cold=bool(r.tier)),
                                 r.seq))
        victims = [(int(r.seq), r.id) for r in rows[:excess]]
        self.store.delete_many(ns, victims, reason="evicted")
        self._unindex(ns, [s for s, _ in victims])
        self.telemetry.observe_removed("evicted", len(victims))
        return [t for _, t in victims]

    def verify(self, *, namespace: str | None = None, deep: bool = True) -> VerifyReport:
        """Check signatures, the hash chain and every live row; names each problem."""
        if namespace is not None:
            self._check_ns(namespace)
        checked, problems = self.store.verify(namespace=namespace, deep=deep)
        return VerifyReport(ok=not problems, records_checked=checked, live_traces=self.store.count(namespace),
                            problems=[p.__dict__ for p in problems])

    def backup(self, path: str | Path) -> Path:
        """Write a consistent copy of the SQLite store to ``path`` (a new file) while the memory stays in use.

        The copy holds ciphertexts and wrapped data keys but no key-encryption keys
        (keep the key provider's backup apart); traces deleted before it are not in
        it. The index is not copied: it is rebuilt from the store on first use.
        """
        self.flush()
        return self.store.backup(path)

    def rotate_keys(self) -> int:
        """Re-wrap every data key under a new key-encryption key; returns how many were re-wrapped."""
        with self._write_lock:
            _, n = self.store.rotate()
        return n

    def namespaces(self, *, include_empty: bool = False) -> list[str]:
        """Namespaces holding live traces (``include_empty``: every namespace ever written to)."""
        return self.store.namespaces(include_empty=include_empty)

    def store_head(self) -> str:
        """The store's provenance chain head; it changes with every write, delete or pin by any process."""
        return self.store.head()

    def refresh(self, namespace: str) -> tuple[int, int]:
        """Catch the namespace's index up with the store; returns (added, removed) index entries.

        For processes sharing one store (server replicas on PostgreSQL): writes and
        deletes made by another process reach this process's HNSW graph here. When
        the store's chain head has not moved since the last refresh it costs one read.
        """
        ns = self._check_ns(namespace)
        head = self.store.head()  # read first: a change landing after it is caught next time
        with self._write_lock:
            if self._synced_heads.get(ns) == head:
                return 0, 0
            graph, lex = self.index.get(ns), self.lexicon.get(ns)
            if graph is None:
                changed = (len(self._graph(ns)), 0)  # opening reconciles with the store
            else:
                seqs = self.store.seqs(ns)
                changed = graph.reconcile(seqs, self.store.key_vectors)
                if lex is not None:
                    gone = sorted(set(lex.ids().tolist()) - {int(x) for x in seqs})
                    self.cache.forget(gone)  # a trace deleted by another process
                    lex.reconcile(seqs, lambda missing: self._terms_of(ns, missing), self.settings.keyer.seed)
            if lex is None:
                self._lexicon(ns)
            self._synced_heads[ns] = head
        return changed

    def stats(self, *, namespace: str | None = None) -> MemoryStats:
        """Counts, gate telemetry and recall latency percentiles (ms, this process)."""
        ns = None
        if namespace is not None:  # a namespace is known once written to, or offered events in this process
            ns = self._check_ns(namespace)
            ns = ns if ns in self.gate.telemetry.tokens else self._require_ns(ns)
        lat = np.array(self._latencies) if self._latencies else None
        graph = self.index.get(ns) if ns else None
        return MemoryStats(
            namespace=ns, traces=self.store.count(ns), namespaces=len(self.store.namespaces()),
            index_size=len(graph) if graph else sum(len(g) for g in self.index._graphs.values()),
            replay_queue=self.store.replay_count(ns), gate=self.gate.telemetry.summary(ns),
            recall_p50_ms=float(np.percentile(lat, 50)) if lat is not None else None,
            recall_p95_ms=float(np.percentile(lat, 95)) if lat is not None else None,
            feature_cache=self.cache_stats(),
        )

    def close(self) -> None:
        """Flush recall counts, save index files, release connections."""
        self._prefetcher.close()
        if self._flusher is not None:
            self._flusher.join()
        self.flush()
        self.index.save_all()
        self.lexicon.save_all()
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- async twins
    async def awrite(self, event: MemoryEvent | str | Mapping[str, Any], *, namespace: str = DEFAULT_NAMESPACE) -> WriteDecision:
        return await asyncio.to_thread(self.write, event, namespace=namespace)

    async def awrite_many(self, events: Sequence[MemoryEvent | str | Mapping[str, Any]], *, namespace: str = DEFAULT_NAMESPACE) -> list[WriteDecision]:
        return await asyncio.to_thread(self.write_many, events, namespace=namespace)

    async def arecall(self, cue: Cue | str | Mapping[str, Any], k: int = 5, *, namespace: str = DEFAULT_NAMESPACE,
                      where: Mapping[str, Any] | None = None, max_tokens: int | None = None,
                      min_similarity: float | None = None) -> RecallResult:
        return await asyncio.to_thread(self.recall, cue, k, namespace=namespace, where=where, max_tokens=max_tokens,
                                       min_similarity=min_similarity)

    async def aget(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> Trace:
        return await asyncio.to_thread(self.get, trace_id, namespace=namespace)

    async def aget_by_key(self, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> Trace | None:
        return await asyncio.to_thread(self.get_by_key, key, namespace=namespace)

    async def alist_traces(self, *, namespace: str = DEFAULT_NAMESPACE, limit: int = 100, offset: int = 0,
                           where: Mapping[str, Any] | None = None) -> list[Trace]:
        return await asyncio.to_thread(self.list_traces, namespace=namespace, limit=limit, offset=offset, where=where)

    async def adelete(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        await asyncio.to_thread(self.delete, trace_id, namespace=namespace)

    async def adelete_by_key(self, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> bool:
        return await asyncio.to_thread(self.delete_by_key, key, namespace=namespace)

    async def apin(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        await asyncio.to_thread(self.pin, trace_id, namespace=namespace)

    async def aunpin(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        await asyncio.to_thread(self.unpin, trace_id, namespace=namespace)

    async def aevict(self, *, namespace: str | None = None, now: float | None = None) -> list[str]:
        return await asyncio.to_thread(self.evict, namespace=namespace, now=now)

    async def averify(self, *, namespace: str | None = None, deep: bool = True) -> VerifyReport:
        return await asyncio.to_thread(self.verify, namespace=namespace, deep=deep)

    async def astats(self, *, namespace: str | None = None) -> MemoryStats:
        return await asyncio.to_thread(self.stats, namespace=namespace)

    async def anamespaces(self, *, include_empty: bool = False) -> list[str]:
        return await asyncio.to_thread(self.namespaces, include_empty=include_empty)

    async def arefresh(self, namespace: str) -> tuple[int, int]:
        return await asyncio.to_thread(self.refresh, namespace)

    async def aset_expiry(self, trace_id: str, ttl_s: float | None, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        await asyncio.to_thread(self.set_expiry, trace_id, ttl_s, namespace=namespace)


def _limit_blas(threads: int | None) -> None:
    """Cap numpy's BLAS pool (see ``IndexSettings.blas_threads``); a no-op without threadpoolctl."""
    if threads is None:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a core dependency
        return
    threadpool_limits(threads, user_api="blas")


def _url_tag(url: str) -> str:
    import hashlib

    return hashlib.sha256(url.encode()).hexdigest()[:12]


__all__ = ["Callable", "ConfigError", "HEIMemory", "MemoryStats", "VerifyReport"]

"""HEIMemory: the one object an agent talks to.

write(event) → gate → encrypted, signed trace in the store → key in the
namespace's HNSW graph. recall(cue) → DG key → ANN candidates → Hopfield
completion → ranked traces → packed memory tokens, with a timing breakdown.
The store is the source of truth; the index is rebuilt or caught up from it.
Async twins run the same sync code in a worker thread.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import queue
import threading
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import Embedder, default_embedder
from hei_nw_plugin.errors import (
    ConfigError,
    InputError,
    InvalidEventError,
    InvalidNamespaceError,
    PayloadTooLargeError,
    UnknownNamespaceError,
)
from hei_nw_plugin.gate import SurpriseScorer, WriteGate
from hei_nw_plugin.hopfield import HopfieldCompleter
from hei_nw_plugin.index import ANNIndex, NamespacedIndex
from hei_nw_plugin.keyer import DGKeyer, pack_sparse
from hei_nw_plugin.pack import Packer, TokenCounter, redact
from hei_nw_plugin.store import LocalKeyFile, NewTrace, SQLTraceStore
from hei_nw_plugin.store.keys import KeyProvider
from hei_nw_plugin.telemetry import EngineTelemetry
from hei_nw_plugin.types import (
    DEFAULT_NAMESPACE,
    Cue,
    MemoryEvent,
    MemoryTokens,
    RecalledTrace,
    RecallResult,
    Trace,
    WriteDecision,
)

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


@dataclass
class _Prepared:
    """A batch validated, redacted and keyed, ready to be gated and stored."""

    events: list[MemoryEvent]
    texts: list[str]
    slots: list[dict[str, Any]]
    features: np.ndarray
    keys: np.ndarray


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
        self.embedder = embedder or default_embedder(
            name=s.embedder.name, path=s.embedder.path, batch_size=s.embedder.batch_size, cache_size=s.embedder.cache_size,
            backend=s.embedder.backend, threads=s.embedder.threads, spin=s.embedder.spin)
        self.keyer = DGKeyer(s.keyer, self.embedder)
        self.gate = WriteGate(s.gate, surprise=surprise)
        self.hopfield = HopfieldCompleter(beta=s.hopfield.beta, steps=s.hopfield.steps, mix=s.hopfield.mix)
        self.packer = Packer(s.pack, token_counter=token_counter)
        self.keys = key_provider or LocalKeyFile(s.key_file_path)
        self.store = SQLTraceStore(s.sqlalchemy_url, self.keys, pool_size=s.store.pool_size, reconnect_s=s.store.reconnect_s,
                                   connect_timeout_s=s.store.connect_timeout_s)
        index_dir = (s.store.data_dir / "index" / _url_tag(s.sqlalchemy_url)) if persist_index else None
        self.index = NamespacedIndex(s.keyer.dim, s.index, index_dir)
        self._pending_touch: dict[int, tuple[int, float]] = {}
        self._flusher: threading.Thread | None = None
        self._feat_cache: OrderedDict[int, np.ndarray] = OrderedDict()  # seq -> dense features (float16)
        self._slot_cache: dict[int, dict[str, Any]] = {}  # seq -> slots, for newest-wins ranking
        self._sig_cache: dict[int, Signatures] = {}  # seq -> slot_signatures(slots), filled by recall
        self._touch_lock = threading.Lock()
        self._cache_counts = {"hits": 0, "misses": 0, "prefetched": 0, "prefetch_hits": 0}
        self._prefetched: set[int] = set()  # loaded by prefetch and not yet used by a recall
        self._prefetch_q: queue.Queue[tuple[str, list[int]] | None] = queue.Queue(maxsize=64)
        self._prefetcher: threading.Thread | None = None
        self._latencies: deque[float] = deque(maxlen=2048)
        self._write_lock = threading.RLock()
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

    # ---------------------------------------------------------------- validation
    def _ns(self, namespace: str) -> str:
        if not isinstance(namespace, str):
            raise InvalidNamespaceError(f"namespace must be a string, got {type(namespace).__name__}")
        if not namespace or len(namespace) > self.settings.limits.max_namespace_chars:
            raise InvalidNamespaceError(
                f"namespace must be 1..{self.settings.limits.max_namespace_chars} characters, got {len(namespace)}")
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in namespace):
            raise InvalidNamespaceError("namespace must not contain control characters")
        return namespace

    def _event(self, event: MemoryEvent | str | Mapping[str, Any]) -> MemoryEvent:
        lim = self.settings.limits
        try:
            if isinstance(event, MemoryEvent):
                ev = event
            elif isinstance(event, str):
                ev = MemoryEvent(text=event)
            elif isinstance(event, Mapping):
                ev = MemoryEvent.model_validate(dict(event))
            else:
                raise InvalidEventError(f"event must be a MemoryEvent, str or mapping, got {type(event).__name__}")
        except ValidationError as err:
            raise InvalidEventError(f"invalid event: {_pydantic_msg(err)}") from err
        if not ev.text.strip():
            raise InvalidEventError("event text is empty")
        if len(ev.text) > lim.max_text_chars:
            raise PayloadTooLargeError(f"event text has {len(ev.text)} characters; the limit is {lim.max_text_chars}")
        self._check_slots(ev.slots)
        try:
            meta_size = len(json.dumps(ev.metadata, allow_nan=False))
        except (TypeError, ValueError) as err:
            raise InvalidEventError(f"event metadata must be JSON-serialisable: {err}") from err
        if meta_size > 4 * lim.max_text_chars:
            raise PayloadTooLargeError(f"event metadata is {meta_size} bytes as JSON; the limit is {4 * lim.max_text_chars}")
        if "\x00" in ev.text:
            raise InvalidEventError("event text must not contain NUL characters")
        try:
            created = _ts(ev.timestamp) if ev.timestamp else time.time()
        except OverflowError as err:
            raise InvalidEventError(f"timestamp {ev.timestamp} is out of range") from err
        if not _representable(created) or (ev.ttl_s is not None and not _representable(created + ev.ttl_s)):
            raise InvalidEventError("timestamp and ttl_s must put the trace's creation and expiry within years 1..9999")
        return ev

    def _check_slots(self, slots: Mapping[str, Any]) -> None:
        lim = self.settings.limits
        if len(slots) > lim.max_slots:
            raise PayloadTooLargeError(f"{len(slots)} slots; the limit is {lim.max_slots}")
        for k, v in slots.items():
            if not k.strip():
                raise InvalidEventError("slot names must not be empty")
            if len(k) > lim.max_slot_chars or len(str(v)) > lim.max_slot_chars:
                raise PayloadTooLargeError(f"slot {k[:40]!r} is longer than {lim.max_slot_chars} characters")
            if isinstance(v, float) and not math.isfinite(v):
                raise InvalidEventError(f"slot {k!r} must be a finite number")

    def _cue(self, cue: Cue | str | Mapping[str, Any]) -> Cue:
        try:
            if isinstance(cue, Cue):
                c = cue
            elif isinstance(cue, str):
                c = Cue(text=cue)
            elif isinstance(cue, Mapping):
                c = Cue.model_validate(dict(cue))
            else:
                raise InvalidEventError(f"cue must be a Cue, str or mapping, got {type(cue).__name__}")
        except ValidationError as err:
            raise InvalidEventError(f"invalid cue: {_pydantic_msg(err)}") from err
        if not c.text.strip() and not c.slots:
            raise InvalidEventError("cue is empty: give text or at least one slot")
        if len(c.text) > self.settings.limits.max_text_chars:
            raise PayloadTooLargeError(f"cue has {len(c.text)} characters; the limit is {self.settings.limits.max_text_chars}")
        self._check_slots(c.slots)
        return c

    def _graph(self, namespace: str) -> ANNIndex:
        graph = self.index.get(namespace)
        if graph is None:
            graph = self.index.open(namespace, self.store.seqs(namespace), self.store.key_vectors,
                                    lambda seqs: self._slots_of(namespace, seqs))
        return graph

    def _slots_of(self, ns: str, seqs: list[int]) -> dict[int, dict[str, Any]]:
        """Slots of stored traces (decrypted; used to place traces in slot shards when the index is rebuilt)."""
        traces, _f, _errors = self.store.fetch(ns, seqs, attest=False)
        return {s: t.slots for s, t in traces.items()}

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
        ns = self._ns(namespace)
        if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Sequence):
            raise InvalidEventError("write_many takes a list of events")
        return self._commit(ns, self._prepare(events))

    def write_stream(self, events: Iterable[MemoryEvent | str | Mapping[str, Any]], *, namespace: str = DEFAULT_NAMESPACE,
                     batch: int = 512) -> Iterator[list[WriteDecision]]:
        """Gate and store a long stream (a bulk import), one transaction per ``batch`` events.

        Yields each batch's decisions once it is stored. The next batch is validated and
        embedded in a worker thread while the current one is gated and stored, so an import
        costs about what embedding alone costs. A bad event stops the import with an error
        naming its position; every batch before it is stored, its own batch is not.
        """
        ns = self._ns(namespace)
        _check_int("batch", batch, minimum=1)
        if isinstance(events, (str, bytes, Mapping)):
            raise InvalidEventError("write_stream takes an iterable of events")
        chunks = _chunks(iter(events), batch)

        def prepare(start: int, chunk: list[Any]) -> _Prepared:
            try:
                return self._prepare(chunk)
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
                yield self._commit(ns, ready)

    def _prepare(self, events: Sequence[MemoryEvent | str | Mapping[str, Any]]) -> _Prepared:
        """Validate, redact and key a batch (no store access; safe in a worker thread)."""
        evs = [self._event(e) for e in events]
        texts = [self._redact(e.text) for e in evs]
        slots = [{k: (self._redact(v) if isinstance(v, str) else v) for k, v in e.slots.items()} for e in evs]
        feats, keys = self.keyer.encode(texts, slots) if evs else (np.zeros((0, 0)), np.zeros((0, 0)))
        return _Prepared(evs, texts, slots, feats, keys)

    def _commit(self, ns: str, prep: _Prepared) -> list[WriteDecision]:
        """Gate a prepared batch against the store and write what passes, in one transaction."""
        evs, texts, slots, feats, keys = prep.events, prep.texts, prep.slots, prep.features, prep.keys
        if not evs:
            return []
        with self._write_lock:
            graph = self._graph(ns)
            decisions: list[WriteDecision] = []
            rows: list[NewTrace] = []
            row_keys: list[np.ndarray] = []
            row_feats: list[np.ndarray] = []
            batch = np.zeros((len(evs), keys.shape[1]), dtype=np.float32)  # accepted keys so far, for novelty
            now = time.time()
            # A keyed event whose key is already stored is an update: it always replaces the old trace,
            # since refusing it would leave the stale version live.
            known = self.store.existing_keys(ns, [e.key for e in evs if e.key is not None])
            for ev, text, sl, key, feat in zip(evs, texts, slots, keys, feats, strict=True):
                nearest = self._nearest(graph, key, batch[: len(row_keys)])
                n_tokens = ev.context_tokens if ev.context_tokens is not None else self.packer.count(ev.text)
                decision = self.gate.decide(
                    namespace=ns, text=text, nearest_similarity=nearest, reward=ev.reward, pin=ev.pin,
                    tokens=n_tokens, force=ev.force, update=ev.key is not None and ev.key in known)
                self.telemetry.observe_decision(ns, decision, n_tokens, ev.label)
                if decision.accepted:
                    created = _ts(ev.timestamp) if ev.timestamp else now
                    ttl = ev.ttl_s or self.settings.decay.ttl_s
                    row = NewTrace(
                        namespace=ns, text=text, slots=sl, metadata=ev.metadata, source=ev.source,
                        key_blob=pack_sparse(key), created_at=created,
                        expires_at=None if (ev.pin or ttl is None) else created + ttl,
                        pinned=ev.pin, gate_score=decision.score, ext_key=ev.key,
                        features=feat.astype(np.float16).tobytes(),
                        gate={"score": round(decision.score, 6), "reason": decision.reason, "tau": decision.threshold,
                              "components": decision.components.model_dump()},
                    )
                    decision.trace_id = row.id
                    batch[len(row_keys)] = key
                    rows.append(row)
                    row_keys.append(key)
                    row_feats.append(feat)
                    if ev.key is not None:
                        known.add(ev.key)
                decisions.append(decision)
            if rows:
                refs = self.store.insert(rows)
                replaced = {r.replaced_seq for r in refs if r.replaced_seq is not None}
                if replaced:
                    graph.remove(sorted(replaced))
                    self._forget_features(sorted(replaced))
                    self.telemetry.observe_removed("replaced", len(replaced))
                # A key repeated inside one batch: only its last version is live.
                live = [i for i, r in enumerate(refs) if r.seq not in replaced]
                graph.add(np.array([refs[i].seq for i in live], dtype=np.uint64), np.stack([row_keys[i] for i in live]),
                          slots=[rows[i].slots for i in live])
                # Warm-key cache: what was just written is the likeliest to be recalled next.
                self._cache_written([(refs[i].seq, row_feats[i], rows[i].slots) for i in live])
                if self.settings.decay.capacity is not None:
                    self._evict_capacity(ns)
        return decisions

    def _nearest(self, graph: ANNIndex, key: np.ndarray, batch_keys: np.ndarray) -> float | None:
        """Cosine to the closest stored key or earlier accepted key of the same batch (None if there is none)."""
        best: float | None = None
        if len(graph):
            _, sims = graph.search(key, 1)
            if len(sims):
                best = float(sims[0])
        if len(batch_keys):
            nz = np.flatnonzero(key)  # keys are k-sparse: touch only the winners
            b = float(np.max(batch_keys[:, nz] @ key[nz]))
            best = b if best is None else max(best, b)
        return best

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
        ns = self._ns(namespace)
        c = self._cue(cue)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.settings.limits.max_k:
            raise InvalidEventError(f"k must be an integer in 1..{self.settings.limits.max_k}, got {k!r}")
        _check_where(where)
        if max_tokens is not None:
            _check_int("max_tokens", max_tokens, minimum=1)
        if min_similarity is not None:
            _check_number("min_similarity", min_similarity)
        timings: dict[str, float] = {}
        feats, keys = self.keyer.encode([c.text], [c.slots])
        feat, key = feats[0], keys[0]
        t1 = time.perf_counter()
        timings["embed"] = (t1 - t0) * 1000
        graph = self._graph(ns)
        n_cand = max(self.settings.index.candidates, k * (4 if where else 1))
        shard_slot = self.settings.index.shard_slot
        route = c.slots.get(shard_slot, (where or {}).get(shard_slot))  # read by slot-sharded indexes only
        route = self._redact(route) if isinstance(route, str) else route  # stored slots are redacted copies
        seqs, _sims = graph.search(key, n_cand, route=route)
        t2 = time.perf_counter()
        timings["ann"] = (t2 - t1) * 1000
        seq_list = [int(s) for s in seqs]
        found: dict[int, Trace] = {}
        if where:  # filtering needs slots and metadata of every candidate
            found, fmap, _errors = self.store.fetch(ns, seq_list)
            self._cache_features(fmap, found)
            cand = [s for s in seq_list if s in found and _matches(found[s], where)]
        else:
            fmap = self._features(ns, seq_list)
            cand = [s for s in seq_list if s in fmap]
        t3 = time.perf_counter()
        timings["fetch"] = (t3 - t2) * 1000
        t_ranked = t3
        recalled: list[RecalledTrace] = []
        top: list[int] = []
        if cand:
            # Ranking happens in the dense feature space (k-WTA only finds candidates).
            X = np.stack([fmap[s] for s in cand]).astype(np.float32)
            X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
            if self.settings.hopfield.enabled:
                comp = self.hopfield.complete(feat, X)
                scores, weights = comp.scores.copy(), comp.weights
            else:
                scores = X @ feat
                weights = np.zeros_like(scores)
            cue_sims = X @ feat
            if self.settings.hopfield.supersede_slots:
                scores = _supersede(scores, [self._slot_cache.get(s) for s in cand], cand, c.slots,
                                    [self._signatures(s) for s in cand])
            ranked = [int(j) for j in np.argsort(-scores, kind="stable")]
            if min_similarity is not None:
                ranked = [j for j in ranked if float(cue_sims[j]) >= min_similarity]
            t_ranked = time.perf_counter()
            # Decrypt only what is returned; a row deleted, expired or tampered since is skipped.
            pos = 0
            while len(recalled) < k and pos < len(ranked):
                chunk = ranked[pos: pos + (k - len(recalled))]  # more only if one of these is gone or refused
                pos += len(chunk)
                need = [cand[j] for j in chunk if cand[j] not in found]
                if need:
                    got, _f, _errors = self.store.fetch(ns, need)
                    found.update(got)
                for j in chunk:
                    s = cand[j]
                    if s in found and len(recalled) < k:
                        recalled.append(RecalledTrace(trace=found[s], score=float(scores[j]),
                                                      ann_similarity=float(cue_sims[j]), hopfield_weight=float(weights[j])))
                        top.append(s)
                    elif s not in found:
                        self._forget_features([s])
        t4 = time.perf_counter()
        # "hopfield" is completion and ranking; decrypting the returned traces counts as fetch.
        timings["hopfield"] = (t_ranked - t3) * 1000
        timings["fetch"] += (t4 - t_ranked) * 1000
        tokens = self.packer.pack([r.trace for r in recalled], max_tokens=max_tokens) if recalled else \
            MemoryTokens(text="", n_tokens=0, trace_ids=[], truncated=False)
        t5 = time.perf_counter()
        timings["pack"] = (t5 - t4) * 1000
        timings["total"] = (t5 - t0) * 1000
        self._latencies.append(timings["total"])
        self.telemetry.observe_recall(timings, tokens)
        self._note_recalled(top)  # feeds retention
        if self.settings.index.prefetch and top:
            self._schedule_prefetch(ns, top[: self.settings.index.prefetch_seeds])
        return RecallResult(namespace=ns, traces=recalled, memory_tokens=tokens, timings_ms=timings)

    def _features(self, ns: str, seqs: list[int]) -> dict[int, np.ndarray]:
        """Dense features of candidates: from the in-process cache, else decrypted from the store once."""
        out: dict[int, np.ndarray] = {}
        missing: list[int] = []
        with self._touch_lock:
            for s in seqs:
                f = self._feat_cache.get(s)
                if f is None:
                    missing.append(s)
                else:
                    self._feat_cache.move_to_end(s)
                    out[s] = f
                    if self._prefetched and s in self._prefetched:
                        self._prefetched.discard(s)
                        self._cache_counts["prefetch_hits"] += 1
            self._cache_counts["hits"] += len(out)
            self._cache_counts["misses"] += len(missing)
        if missing:
            # Ranking features only: every trace recall returns is fetched again with the provenance check.
            traces, fmap, _errors = self.store.fetch(ns, missing, attest=False)
            self._cache_features(fmap, traces)
            out.update(fmap)
        return out

    def cache_stats(self) -> dict[str, float]:
        """Warm-key cache figures since start: entries, capacity, hits and misses of recall's feature
        lookups, hit rate, entries loaded by prefetch and how many of those a recall then used."""
        with self._touch_lock:
            c = dict(self._cache_counts)
            size = len(self._feat_cache)
        looked = c["hits"] + c["misses"]
        return {"entries": size, "capacity": self.settings.index.feature_cache, **c,
                "hit_rate": c["hits"] / looked if looked else 0.0,
                "prefetch_use_rate": c["prefetch_hits"] / c["prefetched"] if c["prefetched"] else 0.0}

    def reset_cache_stats(self) -> None:
        with self._touch_lock:
            self._cache_counts = dict.fromkeys(self._cache_counts, 0)

    def _schedule_prefetch(self, ns: str, seqs: list[int]) -> None:
        """Queue the ANN neighbours (2 x candidates each) of just-recalled traces for the warm-key cache.

        A follow-up question usually lands near the last answer, so its candidates are then
        already decrypted. Runs in one daemon thread; a full queue drops the request.
        """
        if self._prefetcher is None or not self._prefetcher.is_alive():
            self._prefetcher = threading.Thread(target=self._prefetch_loop, name="hei-nw-prefetch", daemon=True)
            self._prefetcher.start()
        try:
            self._prefetch_q.put_nowait((ns, seqs))
        except queue.Full:
            pass

    def _prefetch_loop(self) -> None:
        while (job := self._prefetch_q.get()) is not None:
            ns, seqs = job
            if len(self._prefetched) > self.settings.index.feature_cache:  # evicted unused entries linger here
                with self._touch_lock:
                    self._prefetched.intersection_update(self._feat_cache)
            try:
                graph = self.index.get(ns)
                if graph is None:
                    continue
                want: list[int] = []
                for seq in seqs:
                    vec = graph.vector(seq)
                    if vec is not None:
                        want.extend(int(i) for i in graph.search(vec, 2 * self.settings.index.candidates)[0])
                with self._touch_lock:
                    missing = list(dict.fromkeys(s for s in want if s not in self._feat_cache))
                if missing:
                    traces, fmap, _errors = self.store.fetch(ns, missing, attest=False)
                    self._cache_features(fmap, traces)
                    with self._touch_lock:
                        self._cache_counts["prefetched"] += len(fmap)
                        self._prefetched.update(fmap)
            except Exception:  # advisory: a failed prefetch only costs the next recall a decrypt
                log.debug("prefetch failed", exc_info=True)
            finally:
                self._prefetch_q.task_done()

    def warm_features(self, *, namespace: str = DEFAULT_NAMESPACE, batch: int = 2048) -> int:
        """Decrypt the namespace's dense features into the in-process cache (up to its capacity)
        so the first recalls after opening a large store cost what later ones do; returns how many."""
        ns = self._require_ns(namespace)
        seqs = [int(x) for x in self.store.seqs(ns)][: self.settings.index.feature_cache]
        for start in range(0, len(seqs), batch):
            self._features(ns, seqs[start:start + batch])
        return len(seqs)

    def _cache_features(self, fmap: Mapping[int, np.ndarray], traces: Mapping[int, Trace]) -> None:
        cap = self.settings.index.feature_cache
        with self._touch_lock:
            for s, t in traces.items():
                self._slot_cache[s] = t.slots
        with self._touch_lock:
            for s, f in fmap.items():
                self._feat_cache[s] = f.astype(np.float16)
            while len(self._feat_cache) > cap:
                old, _ = self._feat_cache.popitem(last=False)
                self._slot_cache.pop(old, None)
                self._sig_cache.pop(old, None)

    def _signatures(self, seq: int) -> Signatures:
        sig = self._sig_cache.get(seq)
        if sig is None:
            sig = slot_signatures(self._slot_cache.get(seq))
            if seq in self._slot_cache:
                self._sig_cache[seq] = sig
        return sig

    def _cache_written(self, entries: Sequence[tuple[int, np.ndarray, dict[str, Any]]]) -> None:
        cap = self.settings.index.feature_cache
        if cap == 0:
            return
        with self._touch_lock:
            for seq, feat, slots in entries[-cap:]:
                self._feat_cache[seq] = feat.astype(np.float16)
                self._slot_cache[seq] = slots
            while len(self._feat_cache) > cap:
                old, _ = self._feat_cache.popitem(last=False)
                self._slot_cache.pop(old, None)
                self._sig_cache.pop(old, None)

    def _forget_features(self, seqs: Sequence[int]) -> None:
        with self._touch_lock:
            for s in seqs:
                self._feat_cache.pop(int(s), None)
                self._slot_cache.pop(int(s), None)
                self._sig_cache.pop(int(s), None)

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
        ns = self._ns(namespace)
        if not self.store.has_namespace(ns):
            raise UnknownNamespaceError(f"namespace {ns!r} has never been written to")
        return ns

    def get(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> Trace:
        """One trace by id (TraceNotFoundError if it is not in this namespace)."""
        return self.store.get(self._require_ns(namespace), _tid(trace_id))

    def get_by_key(self, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> Trace | None:
        """The trace written with caller key ``key``, or None."""
        if not isinstance(key, str) or not key:
            raise InvalidEventError("key must be a non-empty string")
        if any(unicodedata.category(c) == "Cs" for c in key):  # writes refuse such keys too (not encodable as UTF-8)
            raise InvalidEventError("key must not contain lone surrogate characters")
        return self.store.get_by_key(self._ns(namespace), key)

    def list_traces(self, *, namespace: str = DEFAULT_NAMESPACE, limit: int = 100, offset: int = 0,
                    where: Mapping[str, Any] | None = None) -> list[Trace]:
        """Traces in write order (oldest first), optionally filtered on slots/metadata."""
        _check_int("limit", limit, minimum=0)
        _check_int("offset", offset, minimum=0)
        _check_where(where)
        out = self.store.list_traces(self._ns(namespace), limit=limit if not where else 1_000_000, offset=0 if where else offset)
        if where:
            out = [t for t in out if _matches(t, where)][offset: offset + limit]
        return out

    def delete(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Delete a trace from store, index and replay queue; its data key is destroyed.

        The namespace's index file is rewritten before this returns (cost: one index
        save), so the trace's key leaves the disk with it, not at the next save.
        """
        ns = self._require_ns(namespace)
        with self._write_lock:
            seq = self.store.delete(ns, _tid(trace_id))
            graph = self._graph(ns)
            graph.remove([seq])
            graph.save()
            self._forget_features([seq])
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
        self.store.set_pinned(self._require_ns(namespace), _tid(trace_id), True)

    def unpin(self, trace_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Make a pinned trace evictable again."""
        self.store.set_pinned(self._require_ns(namespace), _tid(trace_id), False)

    def set_expiry(self, trace_id: str, ttl_s: float | None, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Expire a trace ``ttl_s`` seconds from now (None: never). Pinned traces are never evicted regardless."""
        if ttl_s is not None and (isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not math.isfinite(ttl_s) or ttl_s <= 0):
            raise InvalidEventError(f"ttl_s must be a positive number of seconds or None, got {ttl_s!r}")
        if ttl_s is not None and not _representable(time.time() + ttl_s):
            raise InvalidEventError(f"ttl_s {ttl_s!r} puts the expiry beyond year 9999")
        self.store.set_expiry(self._require_ns(namespace), _tid(trace_id), None if ttl_s is None else time.time() + ttl_s)

    def retention_score(self, gate_score: float, age_s: float, recall_count: int) -> float:
        """Eviction order, lowest first: gate_score · 2^(−age/half_life) + 0.1 · ln(1 + recalls)."""
        return gate_score * 2.0 ** (-age_s / self.settings.decay.half_life_s) + 0.1 * math.log1p(recall_count)

    def evict(self, *, namespace: str | None = None, now: float | None = None) -> list[str]:
        """Drop expired traces, then the lowest-retention ones over capacity; pinned ones never. Returns ids."""
        now = time.time() if now is None else _check_number("now", now)
        self.flush()
        spaces = [self._ns(namespace)] if namespace is not None else self.store.namespaces()  # live ones
        gone: list[str] = []
        with self._write_lock:
            for ns in spaces:
                expired = self.store.expired(ns, now)
                self.store.delete_many(ns, expired, reason="expired")
                self._graph(ns).remove([s for s, _ in expired])
                self._forget_features([s for s, _ in expired])
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
        rows.sort(key=lambda r: (self.retention_score(r.gate_score, now - r.created_at, r.recall_count), r.seq))
        victims = [(int(r.seq), r.id) for r in rows[:excess]]
        self.store.delete_many(ns, victims, reason="evicted")
        self._graph(ns).remove([s for s, _ in victims])
        self._forget_features([s for s, _ in victims])
        self.telemetry.observe_removed("evicted", len(victims))
        return [t for _, t in victims]

    def verify(self, *, namespace: str | None = None, deep: bool = True) -> VerifyReport:
        """Check signatures, the hash chain and every live row; names each problem."""
        if namespace is not None:
            self._ns(namespace)
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
        ns = self._ns(namespace)
        head = self.store.head()  # read first: a change landing after it is caught next time
        with self._write_lock:
            if self._synced_heads.get(ns) == head:
                return 0, 0
            graph = self.index.get(ns)
            if graph is None:
                changed = (len(self._graph(ns)), 0)  # opening reconciles with the store
            else:
                changed = graph.reconcile(self.store.seqs(ns), self.store.key_vectors)
            self._synced_heads[ns] = head
        return changed

    def stats(self, *, namespace: str | None = None) -> MemoryStats:
        """Counts, gate telemetry and recall latency percentiles (ms, this process)."""
        ns = None
        if namespace is not None:  # a namespace is known once written to, or offered events in this process
            ns = self._ns(namespace)
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
        if self._prefetcher is not None and self._prefetcher.is_alive():
            self._prefetch_q.put(None)
            self._prefetcher.join()
        if self._flusher is not None:
            self._flusher.join()
        self.flush()
        self.index.save_all()
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


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


Signatures = tuple[tuple[str, int], ...]
"""A trace's leave-one-out slot signatures for newest-wins: (slot left out, hash of the rest)."""


def slot_signatures(slots: Mapping[str, Any] | None) -> Signatures:
    """Signatures of one trace's slots (empty below three slots: see :func:`_supersede`)."""
    if not slots or len(slots) < 3:  # two slots differing in one could be two facts about one subject
        return ()
    items = sorted((str(k), _hashable(v)) for k, v in slots.items())
    keys = tuple(k for k, _ in items)
    return tuple((x, hash((keys, x, tuple(items[:pos] + items[pos + 1:])))) for pos, (x, _v) in enumerate(items))


def _supersede(scores: np.ndarray, slots: Sequence[Mapping[str, Any] | None], seqs: Sequence[int],
               cue_slots: Mapping[str, Any] | None = None, sigs: Sequence[Signatures] | None = None) -> np.ndarray:
    """Newest wins among versions of one fact.

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
    for i in sorted((i for i, sg in enumerate(sigs) if sg), key=lambda x: -seqs[x]):  # newest first: a newer version's score is final
        si = slots[i]
        assert si is not None
        for member in sigs[i]:
            x = member[0]
            if cue.get(x) == str(si[x]).strip().lower():
                continue  # the cue asks for this very version
            for j in buckets[member]:
                sj = slots[j]
                if seqs[j] > seqs[i] and sj is not None and sj.get(x, si[x]) != si[x]:
                    out[i] = min(out[i], out[j] - 1e-4)
    return out


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _matches(trace: Trace, where: Mapping[str, Any]) -> bool:
    for k, v in where.items():
        have = trace.slots.get(k, trace.metadata.get(k, _MISSING))
        if have is _MISSING or have != v:
            return False
    return True


_MISSING = object()


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    # The upper bound is the store's: SQL integers are 64-bit.
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value < 2**63:
        raise InvalidEventError(f"{name} must be an integer in {minimum}..2**63-1, got {value!r}")
    return value


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidEventError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_where(where: Any) -> None:
    if where is not None and not (isinstance(where, Mapping) and all(isinstance(k, str) for k in where)):
        raise InvalidEventError("where must be a mapping from slot or metadata names to values")


def _tid(trace_id: Any) -> str:
    if not isinstance(trace_id, str) or not trace_id or len(trace_id) > 64:
        raise InvalidEventError(f"trace id must be a non-empty string of at most 64 characters, got {trace_id!r}")
    return trace_id


def _ts(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _representable(ts: float) -> bool:
    """Whether a Unix time (s) reads back as a datetime; a stored one that does not would break every recall of it."""
    try:
        datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return False
    return True


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


def _pydantic_msg(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ())) or "event"
        parts.append(f"{loc}: {e.get('msg')}")
    return "; ".join(parts)


__all__ = ["Callable", "ConfigError", "HEIMemory", "MemoryStats", "VerifyReport"]

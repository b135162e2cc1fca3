"""The warm-key cache: decrypted dense features (and slots and tier) of traces, kept in process memory.

Recall ranks its candidates in the dense feature space, and those features are
stored encrypted with each trace; decrypting dozens per recall would dominate its
latency. So features stay here once read (LRU, ``index.feature_cache`` entries),
what was just written goes in first (the likeliest to be recalled next), and an
optional background prefetch loads the ANN neighbourhood of what was just recalled.
Only the traces a recall returns are decrypted again, with the provenance check.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hei_nw_plugin.types import Trace
from hei_nw_plugin.versions import Signatures, slot_signatures

log = logging.getLogger(__name__)

Loader = Callable[[str, list[int]], tuple[Mapping[int, Trace], Mapping[int, np.ndarray]]]
"""(traces, features) of stored traces by seq, decrypted without the provenance check."""
Neighbours = Callable[[str, list[int]], list[int]]
"""Seqs near the given ones in the namespace's ANN graph."""


class FeatureCache:
    """LRU of seq → float16 features, with the slots and tier recall needs beside them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.lock = threading.Lock()
        self._feats: OrderedDict[int, np.ndarray] = OrderedDict()
        self._slots: dict[int, dict[str, Any]] = {}
        self._sigs: dict[int, Signatures] = {}
        self._cold: set[int] = set()
        self._prefetched: set[int] = set()  # loaded by prefetch and not yet used by a recall
        self._counts = {"hits": 0, "misses": 0, "prefetched": 0, "prefetch_hits": 0}

    def lookup(self, seqs: Sequence[int]) -> tuple[dict[int, np.ndarray], list[int]]:
        """(cached features, seqs not cached); counts hits, misses and prefetch hits."""
        out: dict[int, np.ndarray] = {}
        missing: list[int] = []
        with self.lock:
            for s in seqs:
                f = self._feats.get(s)
                if f is None:
                    missing.append(s)
                    continue
                self._feats.move_to_end(s)
                out[s] = f
                if self._prefetched and s in self._prefetched:
                    self._prefetched.discard(s)
                    self._counts["prefetch_hits"] += 1
            self._counts["hits"] += len(out)
            self._counts["misses"] += len(missing)
        return out, missing

    def uncached(self, seqs: Sequence[int]) -> list[int]:
        with self.lock:
            return list(dict.fromkeys(s for s in seqs if s not in self._feats))

    def put(self, fmap: Mapping[int, np.ndarray], traces: Mapping[int, Trace], *, prefetched: bool = False) -> None:
        """Cache features read from the store (with their traces' slots and tier)."""
        with self.lock:
            for s, t in traces.items():
                self._slots[s] = t.slots
                self._note_tier(s, t.tier)
            for s, f in fmap.items():
                self._feats[s] = f.astype(np.float16)
            if prefetched:
                self._counts["prefetched"] += len(fmap)
                self._prefetched.update(fmap)
            self._trim()

    def put_written(self, entries: Sequence[tuple[int, np.ndarray, dict[str, Any], str]]) -> None:
        """Cache just-written traces: (seq, features, slots, tier)."""
        if self.capacity == 0:
            return
        with self.lock:
            for seq, feat, slots, tier in entries[-self.capacity:]:
                self._feats[seq] = feat.astype(np.float16)
                self._slots[seq] = slots
                self._note_tier(seq, tier)
            self._trim()

    def _note_tier(self, seq: int, tier: str) -> None:
        if tier == "cold":
            self._cold.add(seq)
        else:
            self._cold.discard(seq)

    def _trim(self) -> None:
        while len(self._feats) > self.capacity:
            old, _ = self._feats.popitem(last=False)
            self._slots.pop(old, None)
            self._sigs.pop(old, None)
            self._cold.discard(old)
        if len(self._prefetched) > self.capacity:  # evicted unused entries linger here
            self._prefetched.intersection_update(self._feats)

    def forget(self, seqs: Sequence[int]) -> None:
        with self.lock:
            for s in seqs:
                s = int(s)
                self._feats.pop(s, None)
                self._slots.pop(s, None)
                self._sigs.pop(s, None)
                self._cold.discard(s)

    def slots(self, seq: int) -> dict[str, Any] | None:
        return self._slots.get(seq)

    def is_cold(self, seq: int) -> bool:
        return seq in self._cold

    def signatures(self, seq: int) -> Signatures:
        sig = self._sigs.get(seq)
        if sig is None:
            sig = slot_signatures(self._slots.get(seq))
            if seq in self._slots:
                self._sigs[seq] = sig
        return sig

    def stats(self) -> dict[str, float]:
        """Entries, capacity, hits and misses of recall's feature lookups, hit rate, entries loaded by
        prefetch and how many of those a recall then used."""
        with self.lock:
            c = dict(self._counts)
            size = len(self._feats)
        looked = c["hits"] + c["misses"]
        return {"entries": size, "capacity": self.capacity, **c,
                "hit_rate": c["hits"] / looked if looked else 0.0,
                "prefetch_use_rate": c["prefetch_hits"] / c["prefetched"] if c["prefetched"] else 0.0}

    def reset_stats(self) -> None:
        with self.lock:
            self._counts = dict.fromkeys(self._counts, 0)

    def clear(self) -> None:
        """Drop every entry (as after a restart)."""
        with self.lock:
            self._feats.clear()
            self._slots.clear()
            self._sigs.clear()
            self._cold.clear()
            self._prefetched.clear()


class Prefetcher:
    """Loads the ANN neighbourhood of just-recalled traces into a :class:`FeatureCache`, in one daemon thread.

    A follow-up question usually lands near the last answer, so its candidates are then
    already decrypted. A full queue drops the request; a failed load only costs the next
    recall a decrypt.
    """

    def __init__(self, cache: FeatureCache, load: Loader, neighbours: Neighbours) -> None:
        self.cache, self.load, self.neighbours = cache, load, neighbours
        self._q: queue.Queue[tuple[str, list[int]] | None] = queue.Queue(maxsize=64)
        self._thread: threading.Thread | None = None

    def schedule(self, ns: str, seqs: list[int]) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="hei-nw-prefetch", daemon=True)
            self._thread.start()
        try:
            self._q.put_nowait((ns, seqs))
        except queue.Full:
            pass

    def _loop(self) -> None:
        while (job := self._q.get()) is not None:
            ns, seqs = job
            try:
                missing = self.cache.uncached(self.neighbours(ns, seqs))
                if missing:
                    traces, fmap = self.load(ns, missing)
                    self.cache.put(fmap, traces, prefetched=True)
            except Exception:  # advisory
                log.debug("prefetch failed", exc_info=True)
            finally:
                self._q.task_done()

    def wait(self) -> None:
        """Block until every scheduled prefetch has run."""
        self._q.join()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._q.put(None)
            self._thread.join()

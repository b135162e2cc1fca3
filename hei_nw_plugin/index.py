"""Approximate nearest-neighbour index over the sparse keys (USearch HNSW).

One HNSW graph per namespace, so a recall can never return another tenant's
trace even before the store's own namespace check. The trace store is the
source of truth: :meth:`USearchIndex.reconcile` adds what the store has and the
index lacks and removes what the index has and the store lost, which is how a
missing, corrupt or stale index file is repaired after a crash.

usearch's ``remove`` only marks an entry free: the vector (a key derived from
the trace's text) would stay in the saved file. The bytes of removed vectors
are therefore zeroed in every file :meth:`USearchIndex.save` writes.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hei_nw_plugin.config import IndexSettings
from hei_nw_plugin.derived import save_atomically

log = logging.getLogger(__name__)

KeyLoader = Callable[[list[int]], np.ndarray]
SlotLoader = Callable[[list[int]], dict[int, dict[str, Any]]]
"""Slots of stored traces by seq (a seq missing from the answer is gone)."""

_NUMPY_DTYPES = {"f32": np.float32, "f16": np.float16, "i8": np.int8}


def _preload_onnxruntime() -> None:
    """Import onnxruntime (the embedder's runtime), when installed, before usearch ever loads.

    Importing onnxruntime once usearch's extension is loaded segfaults the process
    (usearch 2.26.6, onnxruntime 1.32.0), so this module loads it first: at import (0.15 s),
    which also covers a caller importing usearch after this package.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        pass


_preload_onnxruntime()


def usearch_index_class() -> Any:
    """``usearch.index.Index`` (imported on first use)."""
    from usearch.index import Index

    return Index


class ANNIndex(Protocol):
    """The index interface the engine relies on (keys are integer row ids)."""

    def add(self, ids: np.ndarray, vectors: np.ndarray, *, slots: Sequence[Mapping[str, Any]] | None = None) -> None: ...
    def remove(self, ids: Iterable[int]) -> None: ...
    def search(self, vector: np.ndarray, count: int, *, route: Any = None) -> tuple[np.ndarray, np.ndarray]: ...
    def nearest(self, vectors: np.ndarray) -> np.ndarray: ...
    def vector(self, key: int) -> np.ndarray | None: ...
    def ids(self) -> np.ndarray: ...
    def save(self) -> bool: ...
    def reconcile(self, store_ids: np.ndarray, load_keys: KeyLoader) -> tuple[int, int]: ...
    def __len__(self) -> int: ...


class USearchIndex:
    """A single HNSW graph (cosine metric) with save/load.

    ``search`` returns (ids, similarities) with similarity = 1 − cosine distance.
    """

    def __init__(self, ndim: int, settings: IndexSettings, path: Path | None = None) -> None:
        Index = usearch_index_class()

        self.ndim = ndim
        self.settings = settings
        self.path = path
        self._lock = threading.RLock()
        self._dirty = 0
        self._removed: set[bytes] = set()  # stored bytes of removed vectors whose slots still hold them
        self._removed_since_save = False  # the file on disk may still hold an entry removed since
        self.loaded_from_disk = False
        self._index = Index(
            ndim=ndim, metric="cos", dtype=settings.dtype, connectivity=settings.connectivity,
            expansion_add=settings.expansion_add, expansion_search=settings.expansion_search,
        )
        if path is not None and path.exists():
            self._try_load(path)

    def _try_load(self, path: Path) -> None:
        Index = usearch_index_class()

        try:
            loaded = Index.restore(str(path))
        except Exception as err:  # noqa: BLE001 (usearch raises ValueError/RuntimeError on garbage; any failure means rebuild)
            log.warning("index file %s unreadable (%s); it will be rebuilt from the store", path, err)
            return
        if loaded is None or loaded.ndim != self.ndim:
            log.warning("index file %s does not match (ndim %s != %s); rebuilding", path, getattr(loaded, "ndim", None), self.ndim)
            return
        loaded.expansion_search = self.settings.expansion_search  # type: ignore[misc]  # settable at run time
        self._index = loaded
        self.loaded_from_disk = True

    def __len__(self) -> int:
        return len(self._index)

    def ids(self) -> np.ndarray:
        with self._lock:
            # One call: iterating usearch's key view costs O(offset) per key (115 s for 100k keys).
            return np.asarray(self._index.keys, dtype=np.uint64).reshape(-1)

    def vector(self, key: int) -> np.ndarray | None:
        """The stored key vector of ``key`` as float32, or None when absent."""
        with self._lock:
            vec = self._index.get(int(key), dtype="f32")
            return None if vec is None else np.asarray(vec, dtype=np.float32).reshape(-1)

    def add(self, ids: np.ndarray, vectors: np.ndarray, *, slots: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Add keys (``slots`` only matters to a sharded index)."""
        if len(ids) == 0:
            return
        with self._lock:
            ids = np.asarray(ids, dtype=np.uint64)
            present = np.asarray(self._index.contains(ids), dtype=bool).reshape(-1)
            if present.any():  # re-adding replaces: usearch would otherwise keep duplicates
                for i in ids[present]:
                    self._index.remove(int(i))
            self._index.add(ids, np.ascontiguousarray(vectors, dtype=np.float32), threads=1)
            self._dirty += len(ids)
            self._maybe_save()

    def remove(self, ids: Iterable[int]) -> None:
        with self._lock:
            for i in ids:
                self._forget(int(i))
                self._dirty += 1
            self._maybe_save()

    def _forget(self, key: int) -> None:
        """Remove one entry, remembering its stored bytes so the next save zeroes them."""
        vec = self._index.get(key, dtype=self._index.dtype)
        if vec is not None:
            self._removed.add(np.ascontiguousarray(vec).tobytes())
            self._removed_since_save = True
        self._index.remove(key)

    def search(self, vector: np.ndarray, count: int, *, route: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` nearest keys as (ids, similarities); ``route`` only matters to a sharded index."""
        with self._lock:
            if len(self._index) == 0:
                return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float32)
            m = self._index.search(np.ascontiguousarray(vector, dtype=np.float32), min(count, len(self._index)), threads=1)
            keys = np.asarray(m.keys, dtype=np.uint64)
            sims = 1.0 - np.asarray(m.distances, dtype=np.float32)
            return keys, sims

    def nearest(self, vectors: np.ndarray) -> np.ndarray:
        """Similarity of each row of ``vectors`` to its nearest key (one batch search; -inf when the graph is empty)."""
        out = np.full(len(vectors), -np.inf, dtype=np.float32)
        with self._lock:
            if len(self._index) == 0 or not len(vectors):
                return out
            if len(vectors) == 1:  # usearch answers a single query with Matches, not BatchMatches
                _keys, sims = self.search(vectors[0], 1)
                out[: len(sims)] = sims[:1]
                return out
            m = self._index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1, threads=1)
            found = np.asarray(m.counts).reshape(-1) > 0
            out[found] = 1.0 - np.asarray(m.distances, dtype=np.float32).reshape(len(vectors), -1)[found, 0]
            return out

    def _maybe_save(self) -> None:
        # A save rewrites the whole file, so a large graph saves after a share of its size changed,
        # not every save_every changes (the store is the source of truth; reconcile() catches up).
        if self.path is not None and self._dirty >= max(self.settings.save_every, len(self._index) // 10):
            self.save()

    def save(self) -> bool:
        """Write the index atomically (temp file + rename) so a crash leaves the old file or the new one.

        See :func:`hei_nw_plugin.derived.save_atomically`: processes sharing the folder take turns,
        and a failed save (a full disk) logs and returns False instead of raising.
        """
        if self.path is None:
            return True
        with self._lock:
            def write(tmp: Path) -> None:
                self._index.save(str(tmp))
                self._zero_removed(tmp)

            saved = save_atomically(self.path, write, holds_removed=self._removed_since_save, what="index file")
            self._dirty = 0  # after a failure the next automatic attempt waits for another save_every changes
            if saved:
                self._removed_since_save = False
            return saved

    def _zero_removed(self, file: Path) -> None:
        """Zero the bytes of removed vectors in a just-written index file.

        The vectors sit on a tape of fixed-size slots, so one aligned pass finds them.
        A freed slot keeps its bytes in memory until an add reuses it, so a pattern
        is zeroed at every save until a save no longer finds it. A removed vector
        identical to a live one (a keyed update with the same text) is left alone:
        zeroing would hit the live copy, and it reveals nothing new.
        """
        live = set()
        for pattern in self._removed:
            keys, sims = self.search(np.frombuffer(pattern, dtype=_NUMPY_DTYPES[str(self.settings.dtype)]).astype(np.float32), 1)
            if len(keys) and sims[0] > 0.9999:
                vec = self._index.get(int(keys[0]), dtype=self._index.dtype)
                if vec is not None and np.ascontiguousarray(vec).tobytes() == pattern:
                    live.add(pattern)
        self._removed -= live
        if not self._removed:
            return
        width = len(next(iter(self._removed)))
        zeros = bytes(width)
        hit: set[bytes] = set()
        with file.open("r+b") as fh, mmap.mmap(fh.fileno(), 0) as mm:
            start = next((at for p in self._removed if (at := mm.find(p)) >= 0), -1)
            if start >= 0:
                for off in range(start % width, len(mm) - width + 1, width):
                    if (window := mm[off:off + width]) in self._removed:
                        hit.add(window)
                        mm[off:off + width] = zeros
                mm.flush()
        self._removed = hit  # the others' slots were reused: their bytes are gone

    def reconcile(self, store_ids: np.ndarray, load_keys: KeyLoader) -> tuple[int, int]:
        """Make the index hold exactly ``store_ids``; returns (added, removed)."""
        with self._lock:
            store_ids = np.asarray(store_ids, dtype=np.uint64)
            have = self.ids()
            extra = np.setdiff1d(have, store_ids, assume_unique=True)
            missing = np.setdiff1d(store_ids, have, assume_unique=True)
            for i in extra:
                self._forget(int(i))
            added = 0
            for start in range(0, len(missing), 4096):
                chunk = missing[start : start + 4096]
                vecs = load_keys([int(i) for i in chunk])
                good = np.isfinite(vecs).all(axis=1) & (np.abs(vecs).sum(axis=1) > 0) if vecs.shape[1:] == (self.ndim,) \
                    else np.zeros(len(chunk), dtype=bool)
                if not good.all():  # deleted since the store was listed (another process), or a tampered key
                    log.warning("%d key(s) stay out of the index: deleted since the store's rows were listed, or "
                                "malformed (run verify())", int((~good).sum()))
                if good.any():  # all of a chunk can be gone: its zero rows then have no width at all
                    self._index.add(chunk[good], np.ascontiguousarray(vecs[good], dtype=np.float32), threads=1)
                    added += int(good.sum())
            changed = len(extra) + len(missing)
            if changed:
                self._dirty += changed
                self.save()
            return added, len(extra)



class ShardedIndex:
    """One namespace's keys split over several :class:`USearchIndex` shards, searched by fan-out.

    ``time`` shards hold runs of ``shard_capacity`` consecutive seqs ((seq - 1) // capacity), so all
    writes go to the newest shard and older ones stop growing. ``slot`` shards hold one value of
    the slot ``shard_slot`` each (traces without it share a default shard); a search given that
    value as ``route`` reads its shard only. Shard files are named by a hash of the namespace and
    the shard value, so slot values never appear in file names. Every other search fans out to
    all shards and merges their candidates by similarity.
    """

    def __init__(self, ndim: int, settings: IndexSettings, folder: Path | None, stem: str,
                 load_slots: SlotLoader | None = None) -> None:
        self.ndim = ndim
        self.settings = settings
        self.folder = folder
        self.stem = stem
        self.load_slots = load_slots
        self._shards: dict[str, USearchIndex] = {}
        self._lock = threading.RLock()
        self.loaded_from_disk = False
        if folder is not None and folder.exists():
            for f in sorted(folder.glob(f"{stem}-*.usearch")):
                tag = f.stem[len(stem) + 1:]
                graph = USearchIndex(ndim, settings, f)
                self.loaded_from_disk |= graph.loaded_from_disk
                self._shards[tag] = graph

    @property
    def shards(self) -> dict[str, USearchIndex]:
        return dict(self._shards)

    def _tag(self, value: Any) -> str:
        st = self.settings
        return hashlib.sha256(f"{self.stem}|{st.shard_by}|{st.shard_slot}|{value!r}".encode()).hexdigest()[:16]

    def _tags_for(self, ids: Sequence[int], slots: Sequence[Mapping[str, Any] | None] | None) -> list[str]:
        if self.settings.shard_by == "time":
            return [f"t{(int(i) - 1) // self.settings.shard_capacity:06d}" for i in ids]  # seqs start at 1
        if slots is None:
            found = self.load_slots([int(i) for i in ids]) if self.load_slots is not None else {}
            slots = [found.get(int(i)) for i in ids]
        return [self._tag((sl or {}).get(self.settings.shard_slot)) for sl in slots]

    def _shard(self, tag: str) -> USearchIndex:
        graph = self._shards.get(tag)
        if graph is None:
            path = self.folder / f"{self.stem}-{tag}.usearch" if self.folder is not None else None
            graph = self._shards[tag] = USearchIndex(self.ndim, self.settings, path)
        return graph

    def __len__(self) -> int:
        return sum(len(g) for g in self._shards.values())

    def ids(self) -> np.ndarray:
        with self._lock:
            parts = [g.ids() for g in self._shards.values()]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)

    def add(self, ids: np.ndarray, vectors: np.ndarray, *, slots: Sequence[Mapping[str, Any]] | None = None) -> None:
        if len(ids) == 0:
            return
        ids = np.asarray(ids, dtype=np.uint64)
        with self._lock:
            self.remove(int(i) for i in ids if self._holder(int(i)) is not None)  # re-adding replaces, wherever it was
            tags = self._tags_for([int(i) for i in ids], slots)
            for tag in dict.fromkeys(tags):
                pick = np.array([t == tag for t in tags])
                self._shard(tag).add(ids[pick], vectors[pick])

    def _holder(self, key: int) -> USearchIndex | None:
        for graph in self._shards.values():
            if key in graph._index:
                return graph
        return None

    def remove(self, ids: Iterable[int]) -> None:
        with self._lock:
            for i in ids:
                graph = self._holder(int(i))
                if graph is not None:
                    graph.remove([int(i)])

    def vector(self, key: int) -> np.ndarray | None:
        graph = self._holder(int(key))
        return graph.vector(key) if graph is not None else None

    def search(self, vector: np.ndarray, count: int, *, route: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest ``count`` keys over every shard (or only ``route``'s shard, for slot shards)."""
        with self._lock:
            if route is not None and self.settings.shard_by == "slot":
                graph = self._shards.get(self._tag(route))
                return graph.search(vector, count) if graph is not None else (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float32))
            hits = [g.search(vector, count) for g in self._shards.values() if len(g)]
        if not hits:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float32)
        keys = np.concatenate([h[0] for h in hits])
        sims = np.concatenate([h[1] for h in hits])
        top = np.argsort(-sims, kind="stable")[:count]
        return keys[top], sims[top]

    def nearest(self, vectors: np.ndarray) -> np.ndarray:
        """Similarity of each row to its nearest key over every shard."""
        with self._lock:
            out = np.full(len(vectors), -np.inf, dtype=np.float32)
            for graph in self._shards.values():
                out = np.maximum(out, graph.nearest(vectors))
            return out

    def save(self) -> bool:
        with self._lock:
            saved = [graph.save() for graph in self._shards.values()]  # every shard, even after one failed
            return all(saved)

    def reconcile(self, store_ids: np.ndarray, load_keys: KeyLoader) -> tuple[int, int]:
        """Make the shards hold exactly ``store_ids``: stale entries leave their shard, missing ones join theirs."""
        with self._lock:
            store_ids = np.asarray(store_ids, dtype=np.uint64)
            expected: dict[str, list[np.ndarray]] = {}
            placed = []
            for tag, graph in self._shards.items():
                keep = np.intersect1d(graph.ids(), store_ids, assume_unique=True)
                expected[tag] = [keep]
                placed.append(keep)
            missing = np.setdiff1d(store_ids, np.concatenate(placed) if placed else np.zeros(0, dtype=np.uint64), assume_unique=True)
            for start in range(0, len(missing), 4096):
                chunk = missing[start:start + 4096]
                tags = self._tags_for([int(i) for i in chunk], None)
                for tag in dict.fromkeys(tags):
                    expected.setdefault(tag, []).append(chunk[np.array([t == tag for t in tags])])
            added = removed = 0
            for tag, parts in expected.items():
                a, r = self._shard(tag).reconcile(np.concatenate(parts), load_keys)
                added, removed = added + a, removed + r
            return added, removed


class NamespacedIndex:
    """One index per namespace (a :class:`USearchIndex`, or a :class:`ShardedIndex` when
    ``shard_by`` is set), created lazily, files under ``folder``."""

    def __init__(self, ndim: int, settings: IndexSettings, folder: Path | None) -> None:
        self.ndim = ndim
        self.settings = settings
        self.folder = folder
        self._graphs: dict[str, USearchIndex | ShardedIndex] = {}
        self._lock = threading.Lock()

    def _stem(self, namespace: str) -> str:
        return hashlib.sha256(namespace.encode("utf-8")).hexdigest()[:32]

    def path_for(self, namespace: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{self._stem(namespace)}.usearch"

    def get(self, namespace: str) -> USearchIndex | ShardedIndex | None:
        return self._graphs.get(namespace)

    def open(self, namespace: str, store_ids: np.ndarray, load_keys: KeyLoader,
             load_slots: SlotLoader | None = None) -> USearchIndex | ShardedIndex:
        """The namespace's graph, loaded from disk and reconciled with the store on first use."""
        with self._lock:
            graph = self._graphs.get(namespace)
            if graph is None:
                if self.settings.shard_by == "none":
                    graph = USearchIndex(self.ndim, self.settings, self.path_for(namespace))
                else:
                    st = self.settings
                    layout = f"time-{st.shard_capacity}" if st.shard_by == "time" else \
                        "slot-" + hashlib.sha256(st.shard_slot.encode("utf-8")).hexdigest()[:12]
                    folder = self.folder / layout if self.folder is not None else None
                    graph = ShardedIndex(self.ndim, self.settings, folder, self._stem(namespace), load_slots)
                graph.reconcile(store_ids, load_keys)
                self._graphs[namespace] = graph
            return graph

    def drop(self, namespace: str) -> None:
        with self._lock:
            self._graphs.pop(namespace, None)

    def save_all(self) -> None:
        for graph in list(self._graphs.values()):
            graph.save()

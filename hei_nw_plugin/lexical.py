"""The lexical channel of recall: BM25 over stemmed terms, one inverted index per namespace.

Dense sentence embeddings blur names, numbers and rare words; on LoCoMo's dialogue a
plain BM25 over turns finds more evidence than MiniLM does. Recall therefore takes its
candidates from both the DG-key HNSW graph and this index, and fuses the two scores
(:mod:`hei_nw_plugin.recall`). The same analysed terms give the version logic its term
sets (:mod:`hei_nw_plugin.versions`) without decrypting a trace.

Two choices shape it:

* Terms are Porter stems of lower-cased words minus English stopwords (NLTK's list),
  hashed to 32-bit ids with BLAKE2b keyed by the keyer seed, so neither memory nor the
  index file holds a word in clear. Collisions at 32 bits are rare enough to ignore.
* The index is derived data, like the HNSW graph: the store is the source of truth.
  A namespace's index is saved beside its graph file, and on open it is reconciled with
  the store (rows it lacks are decrypted and analysed, rows the store lost are dropped),
  so a missing or stale file is repaired, never trusted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hei_nw_plugin.derived import save_atomically
from hei_nw_plugin.gate import COMMON_WORDS
from hei_nw_plugin.porter import stem

log = logging.getLogger(__name__)

STOPWORDS = frozenset(["i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "your", "yours", "yourself", "yourselves", "he", "him", "his", "himself", "she", "her", "hers", "herself", "it", "its", "itself", "they", "them", "their", "theirs", "themselves", "what", "which", "who", "whom", "this", "that", "these", "those", "am", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an", "the", "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by", "for", "with", "about", "against", "between", "into", "through", "during", "before", "after", "above", "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under", "again", "further", "then", "once", "here", "there", "when", "where", "why", "how", "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not", "only", "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just", "don", "should", "now", "d", "ll", "m", "o", "re", "ve", "y", "ain", "aren", "couldn", "didn", "doesn", "hadn", "hasn", "haven", "isn", "ma", "mightn", "mustn", "needn", "shan", "shouldn", "wasn", "weren", "won", "wouldn", "would", "could", "shall", "may", "might", "must", "also"])
"""NLTK's English stopword list (plus a few modal verbs): words that carry no episode content."""

_WORD = re.compile(r"[\w']+", re.UNICODE)
_CAPITALISED = re.compile(r"\b[^\W\d_][\w'-]*", re.UNICODE)
TermLoader = Callable[[list[int]], Mapping[int, tuple[Sequence[str], float]]]
"""(terms, created_at) of stored traces by seq, for rebuilding an index (a seq missing from the answer is gone)."""


def analyze(text: str) -> list[str]:
    """Lexical terms of ``text``: stems of lower-cased words, stopwords and single letters dropped, in order."""
    out = []
    for raw in _WORD.findall(text.lower()):
        word = raw.strip("'")
        word = word.removesuffix("'s")
        if not word or word in STOPWORDS or (len(word) == 1 and not word.isdigit()):
            continue
        out.append(stem(word) if word.isalpha() else word)
    return out


def entities(text: str) -> set[str]:
    """Stems of the names in ``text``: capitalised words that are neither stopwords nor chat boilerplate.

    Sentence-initial words count too ("Mary went to the kitchen."), which is why common
    words ("The", "Thanks", "Where") are excluded by list rather than by position.
    """
    found = set()
    for w in _CAPITALISED.findall(text):
        low = w.lower().strip("'")
        low = low.removesuffix("'s")
        if w[:1].isupper() and w != "I" and low and low not in STOPWORDS and low not in COMMON_WORDS:
            found.add(stem(low) if low.isalpha() else low)
    return found


def term_ids(terms: Iterable[str], seed: int) -> np.ndarray:
    """32-bit ids of ``terms`` (keyed BLAKE2b), in order, as uint32."""
    key = seed.to_bytes(8, "little", signed=True)
    return np.array([int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=4, key=key).digest(), "little")
                     for t in terms], dtype=np.uint32)


@dataclass(frozen=True)
class LexicalHits:
    """BM25 hits of one query: seqs and scores, best first, and the best score (0 when nothing matched)."""

    seqs: np.ndarray
    scores: np.ndarray

    @property
    def best(self) -> float:
        return float(self.scores[0]) if len(self.scores) else 0.0


class LexicalIndex:
    """BM25 (Okapi, k1, b) inverted index over term ids, keyed by trace seq.

    Documents get dense row numbers; postings are compact ``array`` buffers of row
    numbers and term frequencies, so a million short traces cost tens of MB. Removal
    marks a row dead and fixes the document frequencies; dead rows are compacted away
    once they are half the index.
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, path: Path | None = None) -> None:
        self.k1, self.b, self.path = k1, b, path
        self._lock = threading.RLock()
        self._row: dict[int, int] = {}  # seq -> row
        self._seq = array("Q")
        self._len = array("I")
        self._time = array("d")
        self._alive = bytearray()
        self._terms: list[np.ndarray] = []  # row -> unique term ids
        self._tfs: list[np.ndarray] = []  # row -> their counts
        self._post: dict[int, array] = {}  # term -> rows
        self._post_tf: dict[int, array] = {}  # term -> counts
        self._df: dict[int, int] = {}
        self._live_len = 0
        self._lengths: np.ndarray | None = None  # float32 copy of _len for scoring (see _row_arrays)
        self._acc, self._touched = np.zeros(0, dtype=np.float64), np.zeros(0, dtype=bool)
        self._dirty = 0
        self._removed_since_save = False  # the file on disk may still hold the terms of a trace removed since
        self.loaded_from_disk = False
        if path is not None and path.exists():
            self._try_load(path)

    def __len__(self) -> int:
        return len(self._row)

    def ids(self) -> np.ndarray:
        with self._lock:
            return np.array(sorted(self._row), dtype=np.uint64)

    def __contains__(self, seq: int) -> bool:
        return int(seq) in self._row

    # ------------------------------------------------------------------ changes
    def add(self, seqs: Sequence[int], terms: Sequence[np.ndarray], times: Sequence[float]) -> None:
        """Index traces (``terms`` are term ids with repeats, ``times`` their created_at, s); re-adding replaces."""
        with self._lock:
            for seq, ids, when in zip(seqs, terms, times, strict=True):
                seq = int(seq)
                if seq in self._row:
                    self._drop(seq)
                uniq, counts = np.unique(np.asarray(ids, dtype=np.uint32), return_counts=True)
                row = len(self._seq)
                self._row[seq] = row
                self._seq.append(seq)
                self._len.append(int(counts.sum()))
                self._time.append(float(when))
                self._alive.append(1)
                self._terms.append(uniq)
                self._tfs.append(counts.astype(np.uint16))
                for t, c in zip(uniq.tolist(), counts.tolist(), strict=True):
                    self._post.setdefault(t, array("I")).append(row)
                    self._post_tf.setdefault(t, array("H")).append(min(c, 65535))
                    self._df[t] = self._df.get(t, 0) + 1
                self._live_len += int(counts.sum())
            self._dirty += len(seqs)

    def remove(self, seqs: Iterable[int]) -> None:
        with self._lock:
            for seq in seqs:
                if int(seq) in self._row:
                    self._drop(int(seq))
                    self._dirty += 1
                    self._removed_since_save = True
            if len(self._seq) > 64 and len(self._row) < len(self._seq) // 2:
                self._compact()

    def _drop(self, seq: int) -> None:
        row = self._row.pop(seq)
        self._alive[row] = 0
        self._live_len -= self._len[row]
        for t in self._terms[row].tolist():
            left = self._df[t] - 1
            if left:
                self._df[t] = left
            else:
                del self._df[t]

    def _compact(self) -> None:
        live = sorted(self._row.items(), key=lambda kv: kv[1])
        seqs = [s for s, _ in live]
        terms = [np.repeat(self._terms[r], self._tfs[r]) for _, r in live]
        times = [self._time[r] for _, r in live]
        self._reset()
        self.add(seqs, terms, times)

    def _reset(self) -> None:
        self._row, self._seq, self._len, self._time, self._alive = {}, array("Q"), array("I"), array("d"), bytearray()
        self._terms, self._tfs, self._post, self._post_tf, self._df = [], [], {}, {}, {}
        self._live_len = 0
        self._lengths = None

    # ------------------------------------------------------------------ reading
    def terms_of(self, seq: int) -> frozenset[int]:
        """The distinct term ids of a trace (empty when it is not indexed)."""
        row = self._row.get(int(seq))
        return frozenset(self._terms[row].tolist()) if row is not None else frozenset()

    def time_of(self, seq: int) -> float | None:
        """created_at of a trace (s), or None when it is not indexed."""
        row = self._row.get(int(seq))
        return self._time[row] if row is not None else None

    def document_frequency(self, term: int) -> int:
        return self._df.get(int(term), 0)

    def search(self, query: np.ndarray, count: int) -> LexicalHits:
        """The ``count`` best traces for the query's term ids by BM25 (repeated query terms count once)."""
        with self._lock:
            n_docs = len(self._row)
            terms = [t for t in dict.fromkeys(np.asarray(query, dtype=np.uint32).tolist()) if t in self._df]
            if not n_docs or not terms or count < 1:
                return LexicalHits(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float32))
            lengths, alive = self._row_arrays()
            avg = max(self._live_len / n_docs, 1e-9)
            # Scores accumulate in a buffer over all rows, term after term (a row appears once per
            # posting list), so no sort of the touched rows is needed; touched rows come out ascending.
            acc, touched = self._scratch()
            for t in terms:
                df = self._df[t]
                idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
                rows = np.frombuffer(self._post[t], dtype=np.uint32)
                tf = np.frombuffer(self._post_tf[t], dtype=np.uint16).astype(np.float32)
                if alive is not None:
                    keep = alive[rows]
                    rows, tf = rows[keep], tf[keep]
                norm = self.k1 * (1.0 - self.b + self.b * lengths[rows] / avg)
                acc[rows] += idf * tf * (self.k1 + 1.0) / (tf + norm)
                touched[rows] = True
            uniq = np.flatnonzero(touched)
            scores = acc[uniq].astype(np.float32)
            acc[uniq] = 0.0
            touched[uniq] = False
            top = np.argsort(-scores, kind="stable")[:count] if len(scores) <= count else \
                np.argpartition(-scores, count - 1)[:count]
            top = top[np.argsort(-scores[top], kind="stable")]
            seq_arr = np.frombuffer(self._seq, dtype=np.uint64)
            return LexicalHits(seq_arr[uniq[top]].copy(), scores[top])

    def _row_arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Row lengths as float32, and the alive mask (None while no row is dead); rebuilt after a change."""
        if self._lengths is None or len(self._lengths) != len(self._len):
            self._lengths = np.frombuffer(self._len, dtype=np.uint32).astype(np.float32)
        if len(self._row) == len(self._seq):
            return self._lengths, None
        return self._lengths, np.frombuffer(self._alive, dtype=np.uint8).astype(bool)

    def _scratch(self) -> tuple[np.ndarray, np.ndarray]:
        """Zeroed per-row score and touched buffers for one search (grown with the index; held under the lock)."""
        if len(self._acc) < len(self._seq):
            self._acc = np.zeros(len(self._seq) * 2, dtype=np.float64)
            self._touched = np.zeros(len(self._seq) * 2, dtype=bool)
        return self._acc, self._touched

    def score(self, query: np.ndarray, seqs: Sequence[int]) -> np.ndarray:
        """BM25 of the query against the given traces (0 for one not indexed or not matching)."""
        with self._lock:
            n_docs = len(self._row)
            out = np.zeros(len(seqs), dtype=np.float32)
            if not n_docs or not len(seqs):
                return out
            rows = np.array([self._row.get(int(x), -1) for x in seqs], dtype=np.int64)
            have = rows >= 0
            lengths, _alive = self._row_arrays()
            norm = np.zeros(len(seqs), dtype=np.float32)
            norm[have] = self.k1 * (1.0 - self.b + self.b * lengths[rows[have]] / max(self._live_len / n_docs, 1e-9))
            for t in dict.fromkeys(np.asarray(query, dtype=np.uint32).tolist()):
                df = self._df.get(t)
                if not df:
                    continue
                post = np.frombuffer(self._post[t], dtype=np.uint32)  # ascending: rows are appended in order
                at = np.minimum(np.searchsorted(post, rows), len(post) - 1)
                hit = have & (post[at] == rows)
                if hit.any():
                    tf = np.frombuffer(self._post_tf[t], dtype=np.uint16)[at[hit]].astype(np.float32)
                    out[hit] += np.log1p((n_docs - df + 0.5) / (df + 0.5)) * tf * (self.k1 + 1.0) / (tf + norm[hit])
            return out

    # -------------------------------------------------------------- persistence
    def maybe_save(self, every: int) -> None:
        """Save once ``every`` changes (or a tenth of the index, if more) have piled up since the last save."""
        if self.path is not None and self._dirty >= max(every, len(self._row) // 10):
            self.save()

    def save(self) -> bool:
        """Write the live rows through :func:`hei_nw_plugin.derived.save_atomically` (False: the save failed
        and was logged); removed traces leave no terms in the file."""
        if self.path is None:
            return True
        with self._lock:
            live = sorted(self._row.items(), key=lambda kv: kv[1])
            rows = [r for _, r in live]
            terms = [self._terms[r] for r in rows]
            arrays: dict[str, Any] = {
                "seq": np.array([s for s, _ in live], dtype=np.uint64),
                "time": np.array([self._time[r] for r in rows], dtype=np.float64),
                "offsets": np.cumsum([0] + [len(t) for t in terms]).astype(np.int64),
                "terms": np.concatenate(terms) if terms else np.zeros(0, dtype=np.uint32),
                "tfs": np.concatenate([self._tfs[r] for r in rows]) if rows else np.zeros(0, dtype=np.uint16),
            }

            def write(tmp: Path) -> None:
                with tmp.open("wb") as fh:
                    np.savez(fh, **arrays)
                    fh.flush()
                    os.fsync(fh.fileno())

            saved = save_atomically(self.path, write, holds_removed=self._removed_since_save, what="lexical index")
            self._dirty = 0
            if saved:
                self._removed_since_save = False
            return saved

    def _try_load(self, path: Path) -> None:
        try:
            with np.load(path) as data:
                seqs, times, offsets = data["seq"], data["time"], data["offsets"]
                terms, tfs = data["terms"], data["tfs"]
                if len(offsets) != len(seqs) + 1 or offsets[-1] != len(terms) or len(tfs) != len(terms):
                    raise ValueError("inconsistent arrays")
                self.add([int(s) for s in seqs],
                         [np.repeat(terms[offsets[i]:offsets[i + 1]], tfs[offsets[i]:offsets[i + 1]]) for i in range(len(seqs))],
                         times.tolist())
        except Exception as err:  # noqa: BLE001 (any unreadable file means a rebuild from the store)
            log.warning("lexical index %s unreadable (%s); it will be rebuilt from the store", path, err)
            self._reset()
            return
        self._dirty = 0
        self.loaded_from_disk = True

    def reconcile(self, store_ids: np.ndarray, load: TermLoader, seed: int) -> tuple[int, int]:
        """Make the index hold exactly ``store_ids``; returns (added, removed)."""
        with self._lock:
            store_ids = np.asarray(store_ids, dtype=np.uint64)
            have = self.ids()
            extra = np.setdiff1d(have, store_ids, assume_unique=True)
            missing = np.setdiff1d(store_ids, have, assume_unique=True)
            self.remove(int(s) for s in extra)
            added = 0
            for start in range(0, len(missing), 2048):
                found = load([int(s) for s in missing[start:start + 2048]])
                self.add(list(found), [term_ids(t, seed) for t, _ in found.values()], [w for _, w in found.values()])
                added += len(found)
            if added or len(extra):
                self._dirty += 1
                self.save()
            return added, len(extra)


class NamespacedLexicon:
    """One :class:`LexicalIndex` per namespace, created lazily, files ``<folder>/<stem>.lex.npz``."""

    def __init__(self, folder: Path | None, *, seed: int, k1: float = 1.2, b: float = 0.75) -> None:
        self.folder, self.seed, self.k1, self.b = folder, seed, k1, b
        self._indexes: dict[str, LexicalIndex] = {}
        self._lock = threading.Lock()

    def path_for(self, namespace: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{hashlib.sha256(namespace.encode('utf-8')).hexdigest()[:32]}.lex.npz"

    def get(self, namespace: str) -> LexicalIndex | None:
        return self._indexes.get(namespace)

    def open(self, namespace: str, store_ids: np.ndarray, load: TermLoader) -> LexicalIndex:
        """The namespace's index, loaded from disk and reconciled with the store on first use."""
        with self._lock:
            index = self._indexes.get(namespace)
            if index is None:
                index = LexicalIndex(k1=self.k1, b=self.b, path=self.path_for(namespace))
                index.reconcile(store_ids, load, self.seed)
                self._indexes[namespace] = index
            return index

    def ids_for(self, terms: Iterable[str]) -> np.ndarray:
        return term_ids(terms, self.seed)

    def drop(self, namespace: str) -> None:
        with self._lock:
            self._indexes.pop(namespace, None)

    def save_all(self) -> None:
        for index in list(self._indexes.values()):
            index.save()

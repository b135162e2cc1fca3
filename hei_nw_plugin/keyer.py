"""Dentate-gyrus keyer: episodes and cues become sparse, separated keys.

Schema-agnostic: the feature vector is the text embedding concatenated with
hashed features of whatever slots are present (``key=value`` and bare ``value``
tokens, signed feature hashing), so no scenario needs its own code. A fixed,
seeded Gaussian projection expands it to D dimensions and k-winners-take-all
keeps the k largest activations (pattern separation); the result is
L2-normalised so that cosine similarity is a dot product.

k-WTA codes separate patterns but quantise similarity coarsely, so they are
used to *find* candidates (the HNSW index); the dense features, stored
encrypted with each trace, are what Hopfield completion and ranking use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hei_nw_plugin.config import KeyerSettings
from hei_nw_plugin.embed import Embedder
from hei_nw_plugin.text import hash_tokens, tokenize

__all__ = ["DGKeyer", "hash_tokens", "pack_sparse", "slot_tokens", "tokenize", "unpack_sparse"]


def slot_tokens(slots: Mapping[str, Any]) -> list[str]:
    """Tokens for structured slots: ``key=value`` pairs plus bare values.

    Bare values let a cue slot match an episode that put the same value under
    another key (``who=alice`` vs ``speaker=alice``).
    """
    toks: list[str] = []
    for key in sorted(slots):
        value = str(slots[key]).strip().lower()
        k = str(key).strip().lower()
        toks.append(f"{k}={value}")
        toks.append(f"v:{value}")
    return toks


class DGKeyer:
    """Deterministic feature → expansion → k-WTA keyer.

    ``featurize`` gives the dense feature vector (text embedding ⊕ slot hash);
    ``key`` gives the sparse D-dimensional key. Both accept batches.
    """

    def __init__(self, settings: KeyerSettings, embedder: Embedder) -> None:
        self.settings = settings
        self.embedder = embedder
        self.feature_dim = embedder.dim + settings.slot_hash_dim
        rng = np.random.default_rng(settings.seed)
        # Fixed projection; never trained, so keys stay comparable across restarts.
        self._proj = (rng.standard_normal((self.feature_dim, settings.dim)) / np.sqrt(self.feature_dim)).astype(np.float32)

    @property
    def dim(self) -> int:
        return self.settings.dim

    def featurize(self, texts: list[str], slots: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Dense features, shape (n, embedder.dim + slot_hash_dim), each block L2-normalised and weighted."""
        n = len(texts)
        emb = np.zeros((n, self.embedder.dim), dtype=np.float32)
        nonempty = [i for i, t in enumerate(texts) if t.strip()]
        if nonempty:
            emb[nonempty] = self.embedder.embed([texts[i] for i in nonempty])
        hashed = np.zeros((n, self.settings.slot_hash_dim), dtype=np.float32)
        for i, s in enumerate(slots):
            if s:
                hash_tokens(slot_tokens(s), hashed[i], seed=self.settings.seed)
                norm = float(np.linalg.norm(hashed[i]))
                if norm > 0:
                    hashed[i] /= norm
        return np.concatenate([emb * self.settings.text_weight, hashed * self.settings.slot_weight], axis=1)

    def sparsify(self, features: np.ndarray) -> np.ndarray:
        """Random expansion then k-WTA; rows L2-normalised (all-zero rows stay zero)."""
        z = features.astype(np.float32, copy=False) @ self._proj
        k = self.settings.k
        if k < z.shape[1]:
            # Winners are the k largest activations; losers are silenced.
            losers = np.argpartition(z, -k, axis=1)[:, :-k]
            np.put_along_axis(z, losers, 0.0, axis=1)
        z = np.maximum(z, 0.0) if k < z.shape[1] else z
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        np.divide(z, norms, out=z, where=norms > 0)
        return z

    def key(self, texts: list[str], slots: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Sparse keys, shape (n, D), float32."""
        return self.sparsify(self.featurize(texts, slots))

    def encode(self, texts: list[str], slots: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(dense features L2-normalised, sparse keys): the ANN uses keys, completion uses features."""
        feats = self.featurize(texts, slots)
        keys = self.sparsify(feats)
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        np.divide(feats, norms, out=feats, where=norms > 0)
        return feats, keys


def pack_sparse(key: np.ndarray) -> bytes:
    """Compact storage of a sparse key: uint16/uint32 indices then float16 values."""
    idx = np.flatnonzero(key)
    itype = np.uint16 if key.shape[0] <= 65536 else np.uint32
    header = np.array([key.shape[0], idx.size], dtype=np.uint32).tobytes()
    return header + idx.astype(itype).tobytes() + key[idx].astype(np.float16).tobytes()


def unpack_sparse(blob: bytes) -> np.ndarray:
    """Inverse of :func:`pack_sparse` (values come back as float32).

    Raises ValueError for a blob that is not a well-formed key (a tampered row),
    rather than allocating whatever its header claims or indexing out of range.
    """
    if len(blob) < 8:
        raise ValueError("sparse key shorter than its header")
    dim, nnz = (int(x) for x in np.frombuffer(blob[:8], dtype=np.uint32))
    itype = np.uint16 if dim <= 65536 else np.uint32
    isz = np.dtype(itype).itemsize
    if not 0 < dim <= 1 << 20 or nnz > dim or len(blob) != 8 + nnz * (isz + 2):
        raise ValueError(f"malformed sparse key (dim {dim}, {nnz} entries, {len(blob)} bytes)")
    idx = np.frombuffer(blob[8 : 8 + nnz * isz], dtype=itype)
    vals = np.frombuffer(blob[8 + nnz * isz : 8 + nnz * isz + nnz * 2], dtype=np.float16)
    if nnz and int(idx.max()) >= dim:
        raise ValueError("malformed sparse key (index out of range)")
    out = np.zeros(dim, dtype=np.float32)
    out[idx.astype(np.int64)] = vals.astype(np.float32)
    return out

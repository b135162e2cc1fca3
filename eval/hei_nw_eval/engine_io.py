"""What every evaluation shares when it feeds a memory: one embedding per distinct text, episodes as events,
write batches in stream order, and the gate's log with its metrics.

Used by the retrieval check, the end-to-end runner, the evidence-recall evaluation and the
consolidation evaluation, so each writes to a memory the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hei_nw_eval import metrics as M
from hei_nw_eval.items import Episode
from hei_nw_eval.records import MetricValue

if TYPE_CHECKING:
    from hei_nw_plugin.embed import Embedder


class CachingEmbedder:
    """Wraps an embedder so each distinct text is embedded once across memories."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self._cache: dict[str, np.ndarray] = {}
        self.embed_seconds = 0.0
        self.embedded_texts = 0

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def warm(self, texts: Sequence[str], batch: int = 256) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            t0 = time.perf_counter()
            vecs = self.inner.embed(chunk)
            self.embed_seconds += time.perf_counter() - t0
            self.embedded_texts += len(chunk)
            for text, vec in zip(chunk, vecs, strict=True):
                self._cache[text] = np.asarray(vec, dtype=np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.warm(texts)
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


@dataclass
class GateLog:
    scores: list[float]
    labels: list[bool]
    accepted: list[bool]
    tokens: int
    tau: float


def episode_event(ep: Episode, *, pin: bool, use_keys: bool) -> Any:
    from hei_nw_plugin import MemoryEvent, SourcePointer

    src = ep.source
    return MemoryEvent(
        text=ep.text,
        slots=dict(ep.slots),
        key=ep.key if use_keys else None,
        metadata={"episode_id": ep.id},
        source=SourcePointer(conversation_id=src.conversation_id if src else None, turn=src.turn if src else None),
        pin=pin,
        timestamp=ep.timestamp,
        label=ep.should_remember,
    )


def write_batches(episodes: Sequence[Episode], size: int, use_keys: bool) -> list[list[Episode]]:
    """Write batches in stream order; with caller keys, a batch ends before a key repeats.

    (One ``write_many`` holding the same caller key twice is rejected by the
    engine's index, and in a real stream the override arrives in a later call.)
    """
    out: list[list[Episode]] = [[]]
    keys: set[str] = set()
    for ep in episodes:
        repeat = use_keys and ep.key is not None and ep.key in keys
        if len(out[-1]) >= size or repeat:
            out.append([])
            keys = set()
        out[-1].append(ep)
        if ep.key is not None:
            keys.add(ep.key)
    return [b for b in out if b]


def gate_metrics(log: GateLog) -> dict[str, MetricValue]:
    if not log.scores or not any(log.labels):
        return {}
    op = M.precision_recall_at(log.scores, log.labels, log.tau)
    return {
        "gate_pr_auc": MetricValue(value=M.pr_auc(log.scores, log.labels), n=len(log.scores)),
        "gate_precision": MetricValue(value=op.precision, n=op.written),
        "gate_recall": MetricValue(value=op.recall, n=op.positives),
        "writes_per_1k_tokens": MetricValue(
            value=M.writes_per_1k_tokens(sum(log.accepted), log.tokens), n=log.tokens, unit="per 1k tokens"
        ),
    }

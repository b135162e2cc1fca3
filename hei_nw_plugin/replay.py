"""Replay queue and CA2-style scheduler: which memories to rehearse, in what order.

The queue is the ``hei_replay_queue`` table of the trace store, fed by every
accepted write in the same transaction and emptied of a trace when it is
deleted, so a restart loses nothing and a deleted trace is never replayed.

The scheduler scores each queued trace with a documented priority

    p = w_gate · gate_score + w_recency · 2^(−age / half_life) + w_fresh / (1 + replay_count)
        + w_recalled · ln(1 + recall_count)

(``recall_count``: how often recall has returned the trace, so what the agent
actually uses is consolidated first)

then fills a batch greedily: each next pick maximises ``p − w_diversity ·
max_cos(candidate, picked)``, where the cosine between dense features is the
gradient-overlap proxy (episodes with overlapping features push the same
weights, so rehearsing them together interferes) and also spreads the batch
across slots and clusters. ``order="shuffled"`` is the ablation: the same
candidates in a seeded random order.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.types import DEFAULT_NAMESPACE, Trace


@dataclass(frozen=True)
class SchedulerWeights:
    """Weights of the replay priority; see the module docstring."""

    gate: float = 1.0
    recency: float = 0.5
    fresh: float = 0.5
    recalled: float = 1.0
    diversity: float = 0.8
    half_life_s: float = 24 * 3600.0


@dataclass
class ReplayItem:
    """One trace chosen for replay, with the numbers that chose it."""

    trace: Trace
    seq: int
    priority: float
    overlap: float  # max cosine to earlier picks in the batch (the interference proxy)
    replay_count: int


@dataclass
class ReplayBatch:
    namespace: str
    items: list[ReplayItem] = field(default_factory=list)
    order: str = "ca2"

    @property
    def trace_ids(self) -> list[str]:
        return [i.trace.id for i in self.items]

    @property
    def mean_overlap(self) -> float:
        """Mean interference proxy over the batch (lower is better)."""
        return float(np.mean([i.overlap for i in self.items[1:]])) if len(self.items) > 1 else 0.0


class ReplayScheduler:
    """Chooses replay batches from a memory's queue."""

    def __init__(self, memory: HEIMemory, *, weights: SchedulerWeights | None = None) -> None:
        self.memory = memory
        self.weights = weights or SchedulerWeights()

    def queue(self, namespace: str = DEFAULT_NAMESPACE) -> list[tuple[int, int, float]]:
        """(seq, replay_count, enqueued_at) of every queued trace in ``namespace``."""
        return [(int(r.trace_seq), int(r.replay_count), float(r.enqueued_at))
                for r in self.memory.store.replay_rows(namespace)]

    def next_batch(self, size: int, *, namespace: str = DEFAULT_NAMESPACE,
                   order: Literal["ca2", "shuffled"] = "ca2", seed: int = 0, now: float | None = None) -> ReplayBatch:
        """Up to ``size`` traces to replay next; ``shuffled`` is the ablation ordering."""
        if size < 1:
            raise ValueError("size must be >= 1")
        rows = self.queue(namespace)
        if not rows:
            return ReplayBatch(namespace=namespace, order=order)
        traces, feats, _errors = self.memory.store.fetch(namespace, [s for s, _, _ in rows])
        rows = [r for r in rows if r[0] in traces]  # deleted, expired or tampered: never replayed
        now = time.time() if now is None else now
        w = self.weights
        prio = np.array([
            w.gate * traces[s].gate_score + w.recency * 2.0 ** (-(now - at) / w.half_life_s) + w.fresh / (1 + n)
            + w.recalled * math.log1p(traces[s].recall_count) for s, n, at in rows])
        X = np.stack([feats[s] for s, _, _ in rows]).astype(np.float32)
        X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        picked: list[int] = []
        overlaps: list[float] = []
        if order == "shuffled":
            idx = list(range(len(rows)))
            random.Random(seed).shuffle(idx)
            picked = idx[:size]
            for j, i in enumerate(picked):
                overlaps.append(float(np.max(X[picked[:j]] @ X[i])) if j else 0.0)
        else:
            best_overlap = np.zeros(len(rows), dtype=np.float32)
            available = np.ones(len(rows), dtype=bool)
            for _ in range(min(size, len(rows))):
                gain = np.where(available, prio - w.diversity * best_overlap, -np.inf)
                i = int(np.argmax(gain))
                picked.append(i)
                overlaps.append(float(best_overlap[i]))
                available[i] = False
                best_overlap = np.maximum(best_overlap, X @ X[i])
        items = [ReplayItem(trace=traces[rows[i][0]], seq=rows[i][0], priority=float(prio[i]),
                            overlap=overlaps[j], replay_count=rows[i][1]) for j, i in enumerate(picked)]
        batch = ReplayBatch(namespace=namespace, items=items, order=order)
        self.memory.telemetry.observe_replay(batch.mean_overlap, len(items))
        return batch

    def mark_replayed(self, batch: ReplayBatch) -> None:
        """Count one replay for every trace of ``batch`` (persisted)."""
        self.memory.store.mark_replayed([i.seq for i in batch.items])

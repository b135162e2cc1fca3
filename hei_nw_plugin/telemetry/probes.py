"""Retrieval probes: registered cue → expected-trace pairs, evaluated now and then as P@k and hit@k.

A probe is a question whose right answer is known (a trace id the caller wrote).
:meth:`ProbeSet.evaluate` recalls each probe's cue at the largest k asked for and
scores the ranking: P@k = |top-k ∩ expected| / k (the usual precision, so with one
expected trace P@5 is at most 0.2) and hit@k = share of probes whose expected
traces all appear in the top k. A probe whose expected traces have all been
deleted, expired or evicted is dropped, not counted as a miss. Probes live in
process memory; they are monitoring, not data.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RecallFn = Callable[[Any, int, str], list[str]]
"""(cue, k, namespace) -> ranked trace ids."""
ExistsFn = Callable[[str, str], bool]
"""(namespace, trace id) -> whether the trace is still stored."""


@dataclass(frozen=True)
class Probe:
    id: int
    namespace: str
    cue: Any  # str, Cue or mapping: whatever recall() takes
    expected: frozenset[str]


@dataclass
class ProbeReport:
    """One evaluation: P@k and hit@k per k over ``evaluated`` probes; ``dropped`` lost every expected trace."""

    evaluated: int
    dropped: int
    precision_at_k: dict[int, float] = field(default_factory=dict)
    hit_at_k: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    misses: list[int] = field(default_factory=list)  # probe ids missing at the largest k


class ProbeSet:
    """Thread-safe set of probes."""

    def __init__(self) -> None:
        self._probes: dict[int, Probe] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.last_evaluated: float | None = None

    def __len__(self) -> int:
        return len(self._probes)

    def add(self, cue: Any, expected: str | Sequence[str], *, namespace: str) -> int:
        """Register a probe; returns its id. ``expected`` is one trace id or several."""
        ids = frozenset([expected] if isinstance(expected, str) else expected)
        if not ids:
            raise ValueError("a probe needs at least one expected trace id")
        with self._lock:
            pid = next(self._ids)
            self._probes[pid] = Probe(pid, namespace, cue, ids)
        return pid

    def remove(self, probe_id: int) -> None:
        with self._lock:
            self._probes.pop(probe_id, None)

    def evaluate(self, recall: RecallFn, exists: ExistsFn, ks: Sequence[int]) -> ProbeReport:
        """Recall every probe once at max(ks) and score it; drops probes whose traces are all gone."""
        t0 = time.perf_counter()
        with self._lock:
            probes = list(self._probes.values())
        kmax = max(ks)
        prec = {k: 0.0 for k in ks}
        hits = {k: 0 for k in ks}
        evaluated, dropped, misses = 0, 0, []
        for p in probes:
            live = frozenset(t for t in p.expected if exists(p.namespace, t))
            if not live:
                self.remove(p.id)
                dropped += 1
                continue
            ranked = recall(p.cue, kmax, p.namespace)
            evaluated += 1
            for k in ks:
                top = set(ranked[:k])
                prec[k] += len(top & live) / k
                hits[k] += int(live <= top)
            if not live <= set(ranked[:kmax]):
                misses.append(p.id)
        self.last_evaluated = time.time()
        return ProbeReport(
            evaluated=evaluated, dropped=dropped,
            precision_at_k={k: prec[k] / evaluated for k in ks} if evaluated else {},
            hit_at_k={k: hits[k] / evaluated for k in ks} if evaluated else {},
            seconds=time.perf_counter() - t0, misses=misses)

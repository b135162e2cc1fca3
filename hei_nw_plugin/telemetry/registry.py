"""A small in-process metrics registry that renders the Prometheus text exposition format (0.0.4).

The engine may not depend on ``prometheus_client`` (it is part of the ``server``
extra), so counters, gauges and histograms live here, thread-safe behind one
lock, and :meth:`MetricsRegistry.render` writes the format by hand: ``# HELP`` and
``# TYPE`` lines, escaped label values, cumulative ``_bucket{le=...}`` series with
``+Inf``, ``_sum`` and ``_count``. Metric names follow Prometheus conventions:
seconds for time, ``_total`` for counters.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

_Labels = tuple[str, ...]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _num(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class _Metric(ABC):
    kind = "untyped"

    def __init__(self, lock: threading.Lock, name: str, help_text: str, labels: Sequence[str]) -> None:
        self._lock = lock
        self.name = name
        self.help = help_text
        self.labels: _Labels = tuple(labels)

    def _key(self, labels: dict[str, str]) -> _Labels:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labels)

    def _fmt(self, key: _Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
        pairs = list(zip(self.labels, key, strict=True)) + list(extra)
        if not pairs:
            return ""
        return "{" + ",".join(f'{n}="{_escape_label(v)}"' for n, v in pairs) + "}"

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    @abstractmethod
    def lines(self) -> list[str]:
        """Exposition lines of this metric (Prometheus text format)."""

    @abstractmethod
    def snapshot(self) -> Any:
        """The current value(s), JSON-able."""


class Counter(_Metric):
    """A monotonically increasing count."""

    kind = "counter"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._values: dict[_Labels, float] = {}

    def inc(self, by: float = 1.0, **labels: str) -> None:
        if by < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + by

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def items(self) -> list[tuple[_Labels, float]]:
        """(label values, value) of every series."""
        with self._lock:
            return sorted(self._values.items())

    def lines(self) -> list[str]:
        return [f"{self.name}{self._fmt(k)} {_num(v)}" for k, v in sorted(self._values.items())]

    def snapshot(self) -> dict[str, float]:
        return {",".join(k) or "": v for k, v in sorted(self._values.items())}


class Gauge(Counter):
    """A value that goes up and down (set, not accumulated)."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, by: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + by


class Histogram(_Metric):
    """Counts of observations in cumulative ``le`` buckets, plus their sum and count."""

    kind = "histogram"

    def __init__(self, lock: threading.Lock, name: str, help_text: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        super().__init__(lock, name, help_text, labels)
        if "le" in labels:
            raise ValueError("'le' is reserved for histogram buckets")
        bs = sorted(float(b) for b in buckets)
        if not bs or bs[-1] != math.inf:
            bs.append(math.inf)
        self.buckets = tuple(bs)
        self._counts: dict[_Labels, list[int]] = {}
        self._sums: dict[_Labels, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for i, b in enumerate(self.buckets):
                if value <= b:
                    counts[i] += 1
                    break
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        with self._lock:
            return sum(self._counts.get(self._key(labels), []))

    def lines(self) -> list[str]:
        out: list[str] = []
        for key in sorted(self._counts):
            acc = 0
            for b, c in zip(self.buckets, self._counts[key], strict=True):
                acc += c
                out.append(f"{self.name}_bucket{self._fmt(key, (('le', _num(b)),))} {acc}")
            out.append(f"{self.name}_sum{self._fmt(key)} {_num(self._sums[key])}")
            out.append(f"{self.name}_count{self._fmt(key)} {acc}")
        return out

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {",".join(k) or "": {"count": float(sum(c)), "sum": self._sums[k]} for k, c in sorted(self._counts.items())}


class MetricsRegistry:
    """Named metrics of one process; ``render()`` gives the Prometheus text format."""

    def __init__(self, prefix: str = "hei_nw") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> Any:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(self._lock, f"{self.prefix}_{name}", help_text, labels))  # type: ignore[no-any-return]

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(self._lock, f"{self.prefix}_{name}", help_text, labels))  # type: ignore[no-any-return]

    def histogram(self, name: str, help_text: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> Histogram:
        return self._add(Histogram(self._lock, f"{self.prefix}_{name}", help_text, labels, buckets))  # type: ignore[no-any-return]

    def render(self) -> str:
        """Every metric with at least one sample, in the text exposition format (ends with a newline)."""
        out: list[str] = []
        with self._lock:
            for m in self._metrics.values():
                body = m.lines()
                if body:
                    out += m.header() + body
        return "\n".join(out) + "\n" if out else ""

    def snapshot(self) -> dict[str, Any]:
        """Current values as plain JSON-able dicts, keyed by metric name (label values joined by ',')."""
        with self._lock:
            return {name: m.snapshot() for name, m in self._metrics.items()}

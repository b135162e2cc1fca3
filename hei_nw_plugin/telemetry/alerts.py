"""Clutter alarm: writes per 1k observed tokens over a sliding token window, with hysteresis.

The window is measured in tokens, not seconds, so the rate means the same at any
traffic level and a test can drive it deterministically. The alarm fires once when
the windowed rate rises above ``bound`` (only once the window is full, so the
first few events cannot trip it) and stays firing, silently, until the rate falls
below ``clear_ratio · bound``. A rate that hovers around the bound therefore gives
one alert per spike, not one per event.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class AlarmTransition:
    """What one observation changed: ``fired`` or ``cleared``, at which windowed rate (writes per 1k tokens)."""

    change: str
    rate_per_1k: float


class ClutterAlarm:
    """Windowed writes-per-1k-tokens rate of one group of namespaces, and its alert state."""

    def __init__(self, *, window_tokens: int, bound_per_1k: float, clear_ratio: float) -> None:
        if window_tokens < 1 or bound_per_1k <= 0 or not 0 < clear_ratio < 1:
            raise ValueError("window_tokens >= 1, bound_per_1k > 0 and 0 < clear_ratio < 1 are required")
        self.window_tokens = window_tokens
        self.bound = bound_per_1k
        self.clear_below = clear_ratio * bound_per_1k
        self._events: deque[tuple[int, int]] = deque()  # (tokens, accepted 0/1)
        self._tokens = 0
        self._writes = 0
        self.firing = False
        self.fired = 0

    @property
    def full(self) -> bool:
        """The window holds at least ``window_tokens`` tokens."""
        return self._tokens >= self.window_tokens

    @property
    def rate_per_1k(self) -> float:
        """Accepted writes per 1k tokens over the window (0.0 before any token)."""
        return 1000.0 * self._writes / self._tokens if self._tokens else 0.0

    def observe(self, tokens: int, accepted: bool) -> AlarmTransition | None:
        """Add one gate decision; returns the transition it caused, if any."""
        t = max(0, int(tokens))
        self._events.append((t, int(accepted)))
        self._tokens += t
        self._writes += int(accepted)
        # Drop the oldest events while the window stays full without them.
        while self._events and self._tokens - self._events[0][0] >= self.window_tokens:
            old_t, old_w = self._events.popleft()
            self._tokens -= old_t
            self._writes -= old_w
        while len(self._events) > 4 * self.window_tokens:  # zero-token events: keep the deque bounded anyway
            old_t, old_w = self._events.popleft()
            self._tokens -= old_t
            self._writes -= old_w
        if not self.full:
            return None
        rate = self.rate_per_1k
        if not self.firing and rate > self.bound:
            self.firing = True
            self.fired += 1
            return AlarmTransition("fired", rate)
        if self.firing and rate < self.clear_below:
            self.firing = False
            return AlarmTransition("cleared", rate)
        return None

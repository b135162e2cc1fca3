"""Modern Hopfield completion over the ANN candidates (Ramsauer et al., 2020).

The candidates' keys are the stored patterns X (one column each). Starting from
the cue key ξ, each step sets ξ ← X·softmax(β·Xᵀξ); a partial cue is pulled
toward the stored pattern it overlaps most. Candidates are then re-ranked by a
mix of their similarity to the cue and to the completed pattern.

The module has no learned state: β and the step count are fixed at
construction and read-only, and :meth:`complete` never writes to its inputs,
so recall cannot change memory (only consolidation changes weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Completion:
    """Result of completing one cue against its candidates."""

    pattern: np.ndarray  # completed ξ, unit length, shape (D,)
    order: np.ndarray  # candidate positions, best first
    scores: np.ndarray  # final score per candidate (same order as the input)
    weights: np.ndarray  # softmax attention of the last step per candidate


class HopfieldCompleter:
    """Read-only completion with inverse temperature ``beta`` and ``steps`` updates."""

    __slots__ = ("_beta", "_mix", "_steps")

    def __init__(self, *, beta: float, steps: int, mix: float = 0.5) -> None:
        self._beta = float(beta)
        self._steps = int(steps)
        self._mix = float(mix)

    @property
    def beta(self) -> float:
        return self._beta

    @property
    def steps(self) -> int:
        return self._steps

    def complete(self, cue: np.ndarray, patterns: np.ndarray) -> Completion:
        """Complete ``cue`` (D,) against ``patterns`` (n, D); neither array is modified."""
        n = patterns.shape[0]
        if n == 0:
            empty = np.zeros(0, dtype=np.float32)
            return Completion(cue.copy(), np.zeros(0, dtype=np.int64), empty, empty)
        X = patterns.astype(np.float32, copy=False)
        cue_sim = X @ cue
        xi = cue.astype(np.float32, copy=True)
        weights = _softmax(self._beta * cue_sim)
        for _ in range(self._steps):
            weights = _softmax(self._beta * (X @ xi))
            xi = weights @ X
            norm = float(np.linalg.norm(xi))
            if norm > 0:
                xi /= norm
        completed_sim = X @ xi
        scores = (1.0 - self._mix) * cue_sim + self._mix * completed_sim if self._steps else cue_sim
        order = np.argsort(-scores, kind="stable")
        return Completion(xi, order, scores.astype(np.float32), weights.astype(np.float32))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max()
    e = np.exp(z)
    return e / e.sum()

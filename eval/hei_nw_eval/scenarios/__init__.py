"""Seeded generators for the five evaluation scenarios.

=====  ==============  ===============================================================
 id     name            what it tests
=====  ==============  ===============================================================
 A      Slot-Stories    partial-cue recall of who / what / where / when, hard negatives
 B      Hot-Patch       a fact overridden later; the newest statement must win
 C      Pref/Config     a preference stated once, asked many episodes later
 D      Stress          near-collisions in one store of 1k / 10k / 100k stories
 E      Long-Context    questions answerable from a long chat transcript
=====  ==============  ===============================================================

``generate("A", n=500, seed=0, condition="full_cue")`` returns a
:class:`~hei_nw_eval.items.Split`. Generation is pure Python and
deterministic: item ``i`` depends only on (scenario, condition, seed, i).
The vocabulary lives in :mod:`hei_nw_eval.scenarios.vocab`; training data must
not share it (see :func:`eval_vocabulary`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hei_nw_eval.items import Episode, Item, OneShotExample, Question, SourceRef, Split
from hei_nw_eval.scenarios import hot_patch, long_context, pref_config, slot_stories, stress
from hei_nw_eval.scenarios.vocab import eval_vocabulary

_MODULES = {"A": slot_stories, "B": hot_patch, "C": pref_config, "D": stress, "E": long_context}
SCENARIOS: dict[str, str] = {
    "A": "Slot-Stories",
    "B": "Hot-Patch",
    "C": "Pref/Config",
    "D": "Stress",
    "E": "Long-Context",
}


def conditions(scenario: str) -> list[str]:
    """The condition names of ``scenario``, default first."""
    return list(_module(scenario).CONDITIONS)


def generate(scenario: str, n: int, *, seed: int = 0, condition: str | None = None, **options: Any) -> Split:
    """``n`` items of ``scenario`` under ``condition`` (default: the scenario's first).

    ``options`` go to the scenario's generator (``lags=`` for A, B and C).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    module = _module(scenario)
    fn: Callable[..., Split] = module.generate
    return fn(n, seed=seed, condition=condition or conditions(scenario)[0], **options)


def save_split(split: Split, path: str | Path) -> Path:
    """Write a split as JSON (one document; shared stores make JSONL awkward)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(split.model_dump_json(), encoding="utf-8")
    return out


def load_split(path: str | Path) -> Split:
    """Read a split written by :func:`save_split`."""
    return Split.model_validate_json(Path(path).read_text(encoding="utf-8"))


def _module(scenario: str) -> Any:
    try:
        return _MODULES[scenario.upper()]
    except KeyError:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {sorted(_MODULES)}") from None


__all__ = [
    "SCENARIOS",
    "Episode",
    "Item",
    "OneShotExample",
    "Question",
    "SourceRef",
    "Split",
    "conditions",
    "eval_vocabulary",
    "generate",
    "load_split",
    "save_split",
]

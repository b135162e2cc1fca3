"""Seeding, timestamps and stream assembly shared by the scenario generators.

Every item draws from its own ``random.Random`` seeded by a hash of (scenario,
condition, split seed, item index). Item ``i`` is therefore the same whatever
``n`` is asked for, so a CI split is a prefix of the full one and golden tests
stay valid when someone generates more items.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hei_nw_eval.items import Episode, EpisodeRole, SourceRef
from hei_nw_eval.scenarios.filler import filler_line

BASE_TIME = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
"""Streams start on or after this instant; item ``i`` starts ``i`` days later."""


def item_rng(scenario: str, condition: str, seed: int, index: int) -> random.Random:
    """The item's private random generator (stable across Python versions and runs)."""
    digest = hashlib.sha256(f"{scenario}|{condition}|{seed}|{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass
class Draft:
    """An episode before it has an id, a position and a timestamp."""

    text: str
    role: EpisodeRole
    slots: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    speaker: str | None = None

    @property
    def should_remember(self) -> bool:
        return self.role != "filler"


def filler_draft(rng: random.Random, speaker: str | None = None) -> Draft:
    """One chit-chat episode, prefixed with ``speaker:`` in dialogue scenarios."""
    text = filler_line(rng)
    return Draft(text=f"{speaker}: {text}" if speaker else text, role="filler", speaker=speaker)


def scatter(rng: random.Random, drafts: list[Draft], n_slots: int, speakers: tuple[str, ...] = ()) -> list[Draft]:
    """``n_slots`` episodes: ``drafts`` at random positions (order kept), filler elsewhere.

    Raises ValueError when the drafts do not fit, so a generator bug cannot
    silently drop a hard negative.
    """
    if len(drafts) > n_slots:
        raise ValueError(f"{len(drafts)} episodes do not fit into {n_slots} positions")
    positions = sorted(rng.sample(range(n_slots), len(drafts)))
    out: list[Draft] = []
    it = iter(drafts)
    chosen = set(positions)
    for pos in range(n_slots):
        if pos in chosen:
            out.append(next(it))
        else:
            out.append(filler_draft(rng, rng.choice(speakers) if speakers else None))
    return out


def finalize(
    rng: random.Random, item_id: str, index: int, drafts: list[Draft], *, max_gap_min: int = 30
) -> list[Episode]:
    """Give drafts ids (``<item>-e<turn>``), source pointers and increasing UTC timestamps."""
    t = BASE_TIME + timedelta(days=index, minutes=rng.randint(0, 600))
    episodes = []
    for turn, d in enumerate(drafts):
        t += timedelta(minutes=rng.randint(1, max_gap_min), seconds=rng.randint(0, 59))
        episodes.append(
            Episode(
                id=f"{item_id}-e{turn:04d}",
                text=d.text,
                slots=dict(d.slots),
                timestamp=t,
                should_remember=d.should_remember,
                role=d.role,
                key=d.key,
                source=SourceRef(conversation_id=item_id, turn=turn, speaker=d.speaker),
            )
        )
    return episodes


def pick_lag(lags: tuple[int, ...], index: int) -> int:
    """Lags cycle with the item index so every lag bin gets the same number of items."""
    if not lags or min(lags) < 0:
        raise ValueError("lags must be a non-empty tuple of non-negative integers")
    return lags[index % len(lags)]

"""Scenario D, Stress: near-collisions in one store of 1k to 100k stories.

The store is built from clusters: a random story plus two to five variants that
each change one of its five slots, so every story has near-twins that share
four of five slots. Questions ask one slot of a stored story and name the other
four; a story is only chosen as a target when no other story matches its cue.
The confusers of a question are the stored stories that match all but one of
its cue slots. Interference curves compare precision across store sizes.

The store is the split's ``shared_episodes``: written once, in order, into the
namespace every question of the split recalls from; items carry no episodes of
their own, and an item's time lag is the number of stories stored after its
target.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta
from itertools import combinations

from hei_nw_eval.items import Episode, Item, OneShotExample, Question, SourceRef, Split
from hei_nw_eval.scenarios.common import BASE_TIME, item_rng
from hei_nw_eval.scenarios.story import ASKABLE, SLOTS, other_value, question_text, random_story, story_text

CONDITIONS: dict[str, int] = {"1k": 1_000, "10k": 10_000, "100k": 100_000}
"""Condition name -> number of stories in the store."""
ONE_SHOT = OneShotExample(
    context="Zebulon flew the tartan kite at the salt marsh on Friday dawn.",
    question="Who flew the tartan kite at the salt marsh on Friday dawn?",
    answer="Zebulon",
)

Story = tuple[str, ...]  # values in SLOTS order


def build_store(size: int, seed: int) -> list[dict[str, str]]:
    """``size`` distinct stories in clusters of near-twins (deterministic in ``seed``)."""
    rng = random.Random(f"D-store|{size}|{seed}")
    seen: set[Story] = set()
    out: list[dict[str, str]] = []
    while len(out) < size:
        base = random_story(rng)
        cluster = [base]
        for _ in range(rng.randint(2, 5)):
            variant = dict(base)
            slot = rng.choice(SLOTS)
            variant[slot] = other_value(rng, slot, base[slot])
            cluster.append(variant)
        for story in cluster:
            key = tuple(story[s] for s in SLOTS)
            if key not in seen and len(out) < size:
                seen.add(key)
                out.append(story)
    return out


def generate(n: int, *, seed: int = 0, condition: str = "1k") -> Split:
    """A store of ``CONDITIONS[condition]`` stories and ``n`` questions about it."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown scenario D condition {condition!r}; choose from {sorted(CONDITIONS)}")
    size = CONDITIONS[condition]
    if n > size:
        raise ValueError(f"cannot ask {n} distinct questions about a store of {size} stories")
    stories = build_store(size, seed)
    split_id = f"D-{condition}-{seed}"
    rng = random.Random(f"D-text|{size}|{seed}")
    episodes = [
        Episode(
            id=f"{split_id}-s{pos:06d}",
            text=story_text(story, rng),
            slots=story,
            timestamp=BASE_TIME + timedelta(minutes=pos),
            should_remember=True,
            role="context",
            source=SourceRef(conversation_id=split_id, turn=pos),
        )
        for pos, story in enumerate(stories)
    ]
    # Cue projections (every slot but the asked one) and their one-slot relaxations.
    full: dict[tuple[str, Story], int] = defaultdict(int)
    relaxed: dict[tuple[tuple[str, ...], Story], list[int]] = defaultdict(list)
    for pos, story in enumerate(stories):
        for asked in ASKABLE:
            projection = tuple(s for s in SLOTS if s != asked)
            full[(asked, tuple(story[s] for s in projection))] += 1
        for subset in combinations(SLOTS, 3):
            relaxed[(subset, tuple(story[s] for s in subset))].append(pos)

    items: list[Item] = []
    used: set[int] = set()
    index = 0
    attempts = 0
    while len(items) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError("could not find enough uniquely answerable targets in the store")
        pick = item_rng("D", condition, seed, attempts)
        pos = pick.randrange(size)
        asked = pick.choice(ASKABLE)
        story = stories[pos]
        cue_names = tuple(s for s in SLOTS if s != asked)
        if pos in used or full[(asked, tuple(story[s] for s in cue_names))] != 1:
            continue
        used.add(pos)
        confusers: set[int] = set()
        for dropped in cue_names:
            three = tuple(s for s in cue_names if s != dropped)
            confusers.update(relaxed[(three, tuple(story[s] for s in three))])
        confusers.discard(pos)
        cue = {s: story[s] for s in cue_names}
        item_id = f"{split_id}-{index:05d}"
        items.append(
            Item(
                id=item_id,
                scenario="D",
                condition=condition,
                seed=seed,
                episodes=[],
                question=Question(
                    id=f"{item_id}-q",
                    cue=question_text(cue, asked),
                    cue_slots=cue,
                    answer=story[asked],
                    answer_slot=asked,
                    evidence=[episodes[pos].id],
                    confusers=[episodes[c].id for c in sorted(confusers)],
                ),
                time_lag=size - 1 - pos,
                one_shot=ONE_SHOT,
            )
        )
        index += 1
    return Split(scenario="D", condition=condition, seed=seed, items=items, shared_episodes=episodes)

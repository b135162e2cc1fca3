"""Scenario E, Long-Context: questions answerable from a long chat transcript.

Two friends chat over several sessions. A handful of their turns tell a story
(who did what, where, when; one is the target, one or two are its hard
negatives, the rest are unrelated); every other turn is chit-chat. Every turn
is an episode with a speaker, so the same item serves the long-context
baseline (the whole :meth:`~hei_nw_eval.items.Item.transcript` in
the prompt), RAG over chunks of it, and HEI-NW writing turn by turn.
Conditions set the transcript length in turns; ``turns_1600`` is longer than
small models' windows on purpose, so truncation shows up in the comparison.
"""

from __future__ import annotations

import random

from hei_nw_eval.items import EpisodeRole, Item, OneShotExample, Question, Split
from hei_nw_eval.scenarios.common import Draft, filler_draft, finalize, item_rng
from hei_nw_eval.scenarios.story import (
    ASKABLE,
    choose_cue,
    hard_negative,
    matches,
    question_text,
    random_story,
    story_text,
)
from hei_nw_eval.scenarios.vocab import PEOPLE

CONDITIONS: dict[str, int] = {"turns_100": 100, "turns_400": 400, "turns_1600": 1600}
"""Condition name -> number of turns in the transcript."""
_LEADS = ("Oh, guess what: ", "Did I tell you? ", "Funny thing, ", "So apparently ", "Random news: ", "")
ONE_SHOT = OneShotExample(
    context="Ana: Morning!\nBo: Did I tell you? Zebulon flew the tartan kite at the salt marsh on Friday dawn.\n"
    "Ana: Haha, classic.",
    question="What did Zebulon fly at the salt marsh?",
    answer="tartan kite",
)


def generate(n: int, *, seed: int = 0, condition: str = "turns_100") -> Split:
    """``n`` transcripts of ``CONDITIONS[condition]`` turns, one question each."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown scenario E condition {condition!r}; choose from {sorted(CONDITIONS)}")
    return Split(
        scenario="E",
        condition=condition,
        seed=seed,
        items=[_item(i, seed, condition) for i in range(n)],
    )


def _spoken(rng: random.Random, speaker: str, sentence: str) -> str:
    lead = rng.choice(_LEADS)
    if lead and not lead.rstrip().endswith("?") and sentence.startswith(("On ", "At ")):
        sentence = sentence[0].lower() + sentence[1:]
    return f"{speaker}: {lead}{sentence}"


def _item(index: int, seed: int, condition: str) -> Item:
    rng = item_rng("E", condition, seed, index)
    item_id = f"E-{condition}-{seed}-{index:05d}"
    turns = CONDITIONS[condition]
    speakers = tuple(rng.sample(PEOPLE, 2))

    target = random_story(rng)
    asked = rng.choice(ASKABLE)
    cue = choose_cue(rng, target, asked, rng.randint(0, 1))
    stories: list[tuple[dict[str, str], EpisodeRole]] = [(target, "fact")]
    n_negatives = rng.randint(1, 2)
    while len(stories) < 1 + n_negatives:
        neg = hard_negative(rng, target, asked, list(cue))
        if not matches(neg, cue) and all(neg != s for s, _ in stories):
            stories.append((neg, "hard_negative"))
    for _ in range(max(2, turns // 40)):
        story = random_story(rng)
        if not matches(story, cue) and story != target:
            stories.append((story, "context"))

    positions = sorted(rng.sample(range(turns), len(stories)))
    order = list(range(len(stories)))
    rng.shuffle(order)
    by_position = {pos: stories[k] for pos, k in zip(positions, order, strict=True)}
    drafts: list[Draft] = []
    target_turn = -1
    for turn in range(turns):
        speaker = speakers[turn % 2]
        if turn in by_position:
            story, role = by_position[turn]
            drafts.append(Draft(_spoken(rng, speaker, story_text(story, rng)), role, story, speaker=speaker))
            if role == "fact":
                target_turn = turn
        else:
            drafts.append(filler_draft(rng, speaker))

    episodes = finalize(rng, item_id, index, drafts, max_gap_min=5)
    question = Question(
        id=f"{item_id}-q",
        cue=question_text(cue, asked),
        cue_slots=cue,
        answer=target[asked],
        answer_slot=asked,
        evidence=[episodes[target_turn].id],
        confusers=[e.id for e in episodes if e.role == "hard_negative"],
    )
    return Item(
        id=item_id,
        scenario="E",
        condition=condition,
        seed=seed,
        episodes=episodes,
        question=question,
        time_lag=turns - 1 - target_turn,
        one_shot=ONE_SHOT,
    )

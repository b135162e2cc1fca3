"""Scenario A, Slot-Stories: partial-cue recall of who / what / where / when.

Each item is a stream holding one target story, two to four hard negatives
(stories that share three of its five slots and match most of the cue), a few
unrelated stories and chit-chat filler. The question names the action and the
other slots (``full_cue``) or all but one of them (``partial_cue``) and asks for
the remaining slot. The stream is built so that only the target matches every
slot the cue names, so the answer is unique.

Time lag is controlled: ``lags`` cycle with the item index and set how many
episodes follow the target before the question.
"""

from __future__ import annotations

from hei_nw_eval.items import Item, OneShotExample, Question, Split
from hei_nw_eval.scenarios.common import Draft, finalize, item_rng, pick_lag, scatter
from hei_nw_eval.scenarios.story import (
    ASKABLE,
    choose_cue,
    hard_negative,
    matches,
    question_text,
    random_story,
    story_text,
)

CONDITIONS: dict[str, int] = {"full_cue": 0, "partial_cue": 1}
"""Condition name -> how many of the non-asked slots the cue leaves out."""
DEFAULT_LAGS: tuple[int, ...] = (0, 2, 8, 32, 128)
ONE_SHOT = OneShotExample(
    context="On Friday dawn, Zebulon flew the tartan kite at the salt marsh.",
    question="Where did Zebulon fly the tartan kite?",
    answer="salt marsh",
)


def generate(
    n: int, *, seed: int = 0, condition: str = "full_cue", lags: tuple[int, ...] = DEFAULT_LAGS
) -> Split:
    """``n`` Slot-Stories items under ``condition`` (see :data:`CONDITIONS`)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown scenario A condition {condition!r}; choose from {sorted(CONDITIONS)}")
    return Split(
        scenario="A",
        condition=condition,
        seed=seed,
        items=[_item(i, seed, condition, pick_lag(lags, i)) for i in range(n)],
    )


def _item(index: int, seed: int, condition: str, lag: int) -> Item:
    rng = item_rng("A", condition, seed, index)
    item_id = f"A-{condition}-{seed}-{index:05d}"
    target = random_story(rng)
    asked = rng.choice(ASKABLE)
    cue = choose_cue(rng, target, asked, CONDITIONS[condition])
    named = list(cue)  # slots a negative may change, the action included

    n_negatives, n_context = rng.randint(2, 4), rng.randint(2, 6)
    negatives: list[dict[str, str]] = []
    while len(negatives) < n_negatives:
        neg = hard_negative(rng, target, asked, named)
        if not matches(neg, cue) and neg not in negatives:
            negatives.append(neg)
    context: list[dict[str, str]] = []
    while len(context) < n_context:
        story = random_story(rng)
        if not matches(story, cue) and story != target:
            context.append(story)

    others = [Draft(story_text(s, rng), "hard_negative", s) for s in negatives]
    others += [Draft(story_text(s, rng), "context", s) for s in context]
    rng.shuffle(others)
    n_before = rng.randint(n_negatives, n_negatives + 4)
    # Hard negatives must all fit; unrelated stories fill what room is left.
    room = n_before + lag
    kept = [d for d in others if d.role == "hard_negative"]
    kept += [d for d in others if d.role == "context"][: max(0, room - len(kept))]
    kept.sort(key=others.index)
    stream = scatter(rng, kept, room)
    stream.insert(n_before, Draft(story_text(target, rng), "fact", target))

    episodes = finalize(rng, item_id, index, stream)
    evidence = episodes[n_before]
    question = Question(
        id=f"{item_id}-q",
        cue=question_text(cue, asked),
        cue_slots=cue,
        answer=target[asked],
        answer_slot=asked,
        evidence=[evidence.id],
        confusers=[e.id for e in episodes if e.role == "hard_negative"],
    )
    return Item(
        id=item_id,
        scenario="A",
        condition=condition,
        seed=seed,
        episodes=episodes,
        question=question,
        time_lag=len(episodes) - 1 - n_before,
        one_shot=ONE_SHOT,
    )

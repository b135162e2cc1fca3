"""Scenario B, Hot-Patch: a fact is later overridden and the newest must win.

Each item states a fact about a colleague (office, team, locker, phone
extension, parking bay or manager), then overrides it once
(``single_update``) or two to three times (``multi_update``), with other
colleagues' facts and chit-chat in between. The question asks for the current
value; the evidence is the last update and the superseded statements are the
confusers. Every statement of the chain carries the same caller key
``<who>/<attribute>`` so a run can also test key-based replacement.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hei_nw_eval.items import Item, OneShotExample, Question, Split
from hei_nw_eval.scenarios.common import Draft, finalize, item_rng, pick_lag, scatter
from hei_nw_eval.scenarios.vocab import CITIES, EXTENSIONS, LOCKERS, PARKING_BAYS, PEOPLE, TEAMS


@dataclass(frozen=True)
class _Attribute:
    values: tuple[str, ...]
    first: tuple[str, ...]
    update: tuple[str, ...]
    question: str


_ATTRIBUTES: dict[str, _Attribute] = {
    "office": _Attribute(
        CITIES,
        ("{who} works from the {value} office.", "{who} is based in our {value} office."),
        ("Update: {who} has moved to the {value} office.", "Heads up, {who} now works out of {value}.",
         "Correction: {who} is in the {value} office these days."),
        "Which office does {who} work from now?",
    ),
    "team": _Attribute(
        TEAMS,
        ("{who} is on the {value} team.", "{who} joined the {value} team."),
        ("{who} switched to the {value} team.", "Update: {who} is now on {value}.",
         "FYI {who} moved over to the {value} team."),
        "Which team is {who} on now?",
    ),
    "locker": _Attribute(
        LOCKERS,
        ("{who}'s locker is number {value}.", "{who} has locker {value}."),
        ("{who} was reassigned locker {value}.", "Update: {who}'s locker is now {value}.",
         "{who} swapped lockers, it's {value} now."),
        "What is {who}'s locker number now?",
    ),
    "extension": _Attribute(
        EXTENSIONS,
        ("{who}'s phone extension is {value}.", "You can reach {who} on extension {value}."),
        ("New extension for {who}: {value}.", "Update: {who}'s extension changed to {value}.",
         "{who} can now be reached on {value}."),
        "What is {who}'s current phone extension?",
    ),
    "parking": _Attribute(
        PARKING_BAYS,
        ("{who} parks in bay {value}.", "{who}'s parking bay is {value}."),
        ("{who}'s parking bay changed to {value}.", "Update: {who} now parks in {value}.",
         "Facilities moved {who} to bay {value}."),
        "Which parking bay does {who} use now?",
    ),
    "manager": _Attribute(
        PEOPLE,
        ("{who} reports to {value}.", "{who}'s manager is {value}."),
        ("{who} now reports to {value} after the reorg.", "Update: {who}'s manager is {value} now.",
         "{who} moved under {value}."),
        "Who does {who} report to now?",
    ),
}
CONDITIONS: dict[str, tuple[int, int]] = {"single_update": (1, 1), "multi_update": (2, 3)}
"""Condition name -> (min, max) number of overrides after the first statement."""
DEFAULT_LAGS: tuple[int, ...] = (0, 2, 8, 32, 128)
ONE_SHOT = OneShotExample(
    context="Zebulon works from the Oslo office.\nZebulon is on the Kestrel team.\n"
    "Update: Zebulon has moved to the Nuuk office.",
    question="Which office does Zebulon work from now?",
    answer="Nuuk",
)


def generate(
    n: int, *, seed: int = 0, condition: str = "single_update", lags: tuple[int, ...] = DEFAULT_LAGS
) -> Split:
    """``n`` Hot-Patch items under ``condition`` (see :data:`CONDITIONS`)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown scenario B condition {condition!r}; choose from {sorted(CONDITIONS)}")
    return Split(
        scenario="B",
        condition=condition,
        seed=seed,
        items=[_item(i, seed, condition, pick_lag(lags, i)) for i in range(n)],
    )


def _statement(rng: random.Random, who: str, attribute: str, value: str, templates: tuple[str, ...]) -> Draft:
    slots = {"who": who, "attribute": attribute, "value": value}
    return Draft(rng.choice(templates).format(who=who, value=value), "context", slots, key=f"{who}/{attribute}")


def _item(index: int, seed: int, condition: str, lag: int) -> Item:
    rng = item_rng("B", condition, seed, index)
    item_id = f"B-{condition}-{seed}-{index:05d}"
    who = rng.choice(PEOPLE)
    attribute = rng.choice(sorted(_ATTRIBUTES))
    spec = _ATTRIBUTES[attribute]
    lo, hi = CONDITIONS[condition]
    pool = [v for v in spec.values if v != who]
    chain = rng.sample(pool, 1 + rng.randint(lo, hi))

    # Other colleagues with the same attribute, and the subject's other attributes.
    context: list[Draft] = []
    for other in rng.sample([p for p in PEOPLE if p != who], rng.randint(1, 3)):
        value = rng.choice([v for v in spec.values if v != other])
        context.append(_statement(rng, other, attribute, value, spec.first))
    for other_attr in rng.sample([a for a in _ATTRIBUTES if a != attribute], rng.randint(1, 2)):
        other_spec = _ATTRIBUTES[other_attr]
        value = rng.choice([v for v in other_spec.values if v != who])
        context.append(_statement(rng, who, other_attr, value, other_spec.first))

    chain_drafts = [_statement(rng, who, attribute, chain[0], spec.first)]
    chain_drafts += [_statement(rng, who, attribute, v, spec.update) for v in chain[1:]]
    for d in chain_drafts[:-1]:
        d.role = "superseded"
    chain_drafts[-1].role = "update"

    # Chain statements keep their order, with 1-6 other episodes between them.
    stream = scatter(rng, context[:1], rng.randint(1, 4))
    for i, d in enumerate(chain_drafts):
        stream.append(d)
        if i < len(chain_drafts) - 1:
            stream += scatter(rng, context[1 + i : 2 + i], rng.randint(1, 6))
    n_before = len(stream) - 1
    rest = context[len(chain_drafts) :]
    stream += scatter(rng, rest[:lag], lag)

    episodes = finalize(rng, item_id, index, stream)
    question = Question(
        id=f"{item_id}-q",
        cue=spec.question.format(who=who),
        cue_slots={"who": who, "attribute": attribute},
        answer=chain[-1],
        answer_slot="value",
        evidence=[episodes[n_before].id],
        confusers=[e.id for e in episodes if e.role == "superseded"],
    )
    return Item(
        id=item_id,
        scenario="B",
        condition=condition,
        seed=seed,
        episodes=episodes,
        question=question,
        time_lag=len(episodes) - 1 - n_before,
        one_shot=ONE_SHOT,
    )

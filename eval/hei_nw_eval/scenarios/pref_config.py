"""Scenario C, Pref/Config: a preference or setting stated once, asked much later.

The user states one preference of the asked category (milk in coffee, editor
theme, reply language, …) once. Hard negatives are other people's preferences
in the same category ("my sister takes soy milk"), context is the user's
preferences in other categories, and the rest is chit-chat. ``lag_short`` asks
after 4-32 further episodes, ``lag_long`` after 64-256.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hei_nw_eval.items import EpisodeRole, Item, OneShotExample, Question, Split
from hei_nw_eval.scenarios.common import Draft, finalize, item_rng, pick_lag, scatter
from hei_nw_eval.scenarios.vocab import HOLDERS, PREFERENCE_VALUES


@dataclass(frozen=True)
class _Category:
    user: tuple[str, ...]
    other: tuple[str, ...]
    question: str


_CATEGORIES: dict[str, _Category] = {
    "coffee_milk": _Category(
        ("I take my coffee with {value}, by the way.", "For future reference: {value} in my coffee, always."),
        ("My {holder} takes {value} in coffee.", "Funny, my {holder} only drinks coffee with {value}."),
        "What milk do I take in my coffee?",
    ),
    "editor_theme": _Category(
        ("Please set my editor theme to {value}.", "Switch my editor to the {value} theme and keep it there."),
        ("My {holder} uses the {value} theme, weirdly.", "My {holder} swears by {value} for their editor."),
        "Which editor theme did I choose?",
    ),
    "reply_language": _Category(
        ("From now on, reply to me in {value}.", "Please answer me in {value} going forward."),
        ("My {holder} only writes in {value}.", "My {holder} is learning {value} at the moment."),
        "Which language should replies to me be in?",
    ),
    "alert_channel": _Category(
        ("Send my alerts by {value}, please.", "I want my alerts to come through {value}."),
        ("My {holder} gets alerts by {value}.", "My {holder} set their alerts to {value}."),
        "How should my alerts be sent?",
    ),
    "diet": _Category(
        ("Just so you know, I'm {value}.", "Keep in mind I eat {value} when you suggest recipes."),
        ("My {holder} is {value}.", "My {holder} went {value} last year."),
        "What diet do I follow?",
    ),
    "nickname": _Category(
        ("Call me {value} from now on.", "You can just call me {value}."),
        ("Everyone calls my {holder} {value}.", "We call my {holder} {value}, long story."),
        "What should you call me?",
    ),
    "focus_music": _Category(
        ("I focus best with {value} playing.", "Put on {value} when I'm working, it helps me focus."),
        ("My {holder} loves {value}.", "My {holder} plays {value} all day."),
        "What music helps me focus?",
    ),
    "standup_time": _Category(
        ("Remind me about standup at {value} each day.", "Set my daily standup reminder for {value}."),
        ("My {holder}'s standup is at {value}.", "My {holder} has a call at {value} every day."),
        "What time should my standup reminder go off?",
    ),
    "seat": _Category(
        ("For flights, I want the {value} every time.", "When you book my flights, get me the {value}."),
        ("My {holder} always takes the {value}.", "My {holder} insists on the {value} when flying."),
        "Which seat do I want on flights?",
    ),
    "calendar_zone": _Category(
        ("Please keep my calendar on {value} time.", "Set my calendar's time zone to {value}."),
        ("My {holder}'s calendar runs on {value} time.", "My {holder} lives on {value} time."),
        "Which time zone is my calendar on?",
    ),
}
CONDITIONS: dict[str, tuple[int, ...]] = {"lag_short": (4, 8, 16, 32), "lag_long": (64, 128, 256)}
"""Condition name -> the lags (episodes after the statement) its items cycle through."""
ONE_SHOT = OneShotExample(
    context="I'd like mint tea in the afternoons, please.\nMy Kestrel mug is the big one.",
    question="What do I like to drink in the afternoons?",
    answer="mint tea",
)


def generate(n: int, *, seed: int = 0, condition: str = "lag_short", lags: tuple[int, ...] | None = None) -> Split:
    """``n`` Pref/Config items under ``condition``; ``lags`` overrides the condition's lags."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown scenario C condition {condition!r}; choose from {sorted(CONDITIONS)}")
    schedule = lags if lags is not None else CONDITIONS[condition]
    return Split(
        scenario="C",
        condition=condition,
        seed=seed,
        items=[_item(i, seed, condition, pick_lag(schedule, i)) for i in range(n)],
    )


def _draft(rng: random.Random, holder: str, category: str, value: str) -> Draft:
    spec = _CATEGORIES[category]
    templates = spec.user if holder == "user" else spec.other
    role: EpisodeRole = "fact" if holder == "user" else "hard_negative"
    text = rng.choice(templates).format(value=value, holder=holder)
    return Draft(text, role, {"holder": holder, "category": category, "value": value})


def _item(index: int, seed: int, condition: str, lag: int) -> Item:
    rng = item_rng("C", condition, seed, index)
    item_id = f"C-{condition}-{seed}-{index:05d}"
    category = rng.choice(sorted(_CATEGORIES))
    values = PREFERENCE_VALUES[category]
    answer = rng.choice(values)
    target = _draft(rng, "user", category, answer)

    holders = rng.sample(HOLDERS, rng.randint(1, 2))
    others = [_draft(rng, h, category, rng.choice([v for v in values if v != answer])) for h in holders]
    for other_cat in rng.sample([c for c in _CATEGORIES if c != category], rng.randint(2, 4)):
        d = _draft(rng, "user", other_cat, rng.choice(PREFERENCE_VALUES[other_cat]))
        d.role = "context"
        others.append(d)
    rng.shuffle(others)

    n_before = rng.randint(len(holders), len(holders) + 6)
    room = n_before + lag
    kept = [d for d in others if d.role == "hard_negative"]
    kept += [d for d in others if d.role == "context"][: max(0, room - len(kept))]
    kept.sort(key=others.index)
    stream = scatter(rng, kept, room)
    stream.insert(n_before, target)

    episodes = finalize(rng, item_id, index, stream)
    question = Question(
        id=f"{item_id}-q",
        cue=_CATEGORIES[category].question,
        cue_slots={"holder": "user", "category": category},
        answer=answer,
        answer_slot="value",
        evidence=[episodes[n_before].id],
        confusers=[e.id for e in episodes if e.role == "hard_negative"],
    )
    return Item(
        id=item_id,
        scenario="C",
        condition=condition,
        seed=seed,
        episodes=episodes,
        question=question,
        time_lag=len(episodes) - 1 - n_before,
        one_shot=ONE_SHOT,
    )

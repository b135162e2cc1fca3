"""Who-did-what-where-when stories: the episodes of scenarios A, D and E.

A story has five slots: ``who``, ``action`` (the verb, always part of a cue,
never asked), ``what``, ``where`` and ``when``. A question asks one of who /
what / where / when and names the action plus some of the other slots. A hard
negative copies the story, then changes one slot the cue names and the asked
slot, so it shares three of five slots, matches most of the cue and answers
differently.
"""

from __future__ import annotations

import random

from hei_nw_eval.scenarios.vocab import ACTIONS, OBJECTS, PEOPLE, PLACES, TIMES

ASKABLE: tuple[str, ...] = ("who", "what", "where", "when")
SLOTS: tuple[str, ...] = ("who", "action", "what", "where", "when")
_BASE_FORM = dict(ACTIONS)
_VALUES: dict[str, tuple[str, ...]] = {
    "who": PEOPLE,
    "action": tuple(past for past, _ in ACTIONS),
    "what": OBJECTS,
    "where": PLACES,
    "when": TIMES,
}
_TEMPLATES = (
    "{who} {action} the {what} at the {where} on {when}.",
    "On {when}, {who} {action} the {what} at the {where}.",
    "At the {where} on {when}, {who} {action} the {what}.",
    "{who} {action} the {what} on {when}, at the {where}.",
)


def random_story(rng: random.Random) -> dict[str, str]:
    """A story with every slot drawn uniformly from its vocabulary."""
    return {slot: rng.choice(_VALUES[slot]) for slot in SLOTS}


def story_text(slots: dict[str, str], rng: random.Random) -> str:
    """The story as one sentence, in one of four word orders."""
    return rng.choice(_TEMPLATES).format(**slots)


def other_value(rng: random.Random, slot: str, *exclude: str) -> str:
    """A value for ``slot`` different from every value in ``exclude``."""
    choices = [v for v in _VALUES[slot] if v not in exclude]
    return rng.choice(choices)


def hard_negative(rng: random.Random, story: dict[str, str], asked: str, cue_slots: list[str]) -> dict[str, str]:
    """A story sharing three of five slots: one named cue slot and the answer differ."""
    changed = rng.choice(cue_slots)
    neg = dict(story)
    neg[changed] = other_value(rng, changed, story[changed])
    neg[asked] = other_value(rng, asked, story[asked])
    return neg


def matches(story: dict[str, str], cue: dict[str, str]) -> bool:
    """True when the story has every slot value the cue names."""
    return all(story.get(k) == v for k, v in cue.items())


def question_text(cue: dict[str, str], asked: str) -> str:
    """The cue as a question; omitted slots become 'someone' / 'something'."""
    base = _BASE_FORM[cue["action"]]
    who = cue.get("who", "someone")
    what = f"the {cue['what']}" if "what" in cue else "something"
    at = f" at the {cue['where']}" if "where" in cue else ""
    on = f" on {cue['when']}" if "when" in cue else ""
    if asked == "who":
        return f"Who {cue['action']} {what}{at}{on}?"
    if asked == "what":
        return f"What did {who} {base}{at}{on}?"
    if asked == "where":
        return f"Where did {who} {base} {what}{on}?"
    if asked == "when":
        return f"When did {who} {base} {what}{at}?"
    raise ValueError(f"cannot ask for slot {asked!r}")


def choose_cue(rng: random.Random, story: dict[str, str], asked: str, omit: int) -> dict[str, str]:
    """The cue slots: the action plus the other askable slots, minus ``omit`` of them."""
    others = [s for s in ASKABLE if s != asked]
    kept = sorted(rng.sample(others, len(others) - omit), key=SLOTS.index)
    cue = {"action": story["action"]}
    cue.update({s: story[s] for s in kept})
    return {s: cue[s] for s in SLOTS if s in cue}

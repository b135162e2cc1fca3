"""Chit-chat the write gate should learn to reject.

Filler is what a real conversation is mostly made of: greetings, small talk,
acknowledgements, reactions and turn-taking. It is labelled
``should_remember=False``. Some lines mention the scenarios' places or objects
in passing ("have you ever been to the clock tower?") so that rejecting filler
cannot be done by spotting vocabulary alone; none of them states a fact that
answers a question.
"""

from __future__ import annotations

import random

from hei_nw_eval.scenarios.vocab import OBJECTS, PEOPLE, PLACES

_GREETINGS = (
    "Hey {name}! How's it going?", "Morning {name}, hope you slept well.", "Hi all, happy {day}!",
    "Good afternoon, everyone.", "Hey, long time no see!", "Hiya {name} :)", "Evening! Still around?",
    "Hello hello. What did I miss?", "Oh hi {name}, didn't see you there.", "Yo, how was your weekend?",
)
_SMALL_TALK = (
    "It's so {weather} out today.", "Can't believe it's already {day} again.",
    "Did anyone catch the match last night?", "I really need another coffee.",
    "The {food} at lunch was actually decent today.", "Traffic was a nightmare this morning.",
    "Anyone watching that new detective show?", "My cat knocked over a plant again, classic.",
    "I think it might rain later, bring a jacket.", "Weekend plans? I'm just going to sleep.",
    "That meeting could have been an email, honestly.", "Is it just me or is the wifi slow today?",
    "I tried a new {food} recipe, it was fine I guess.", "Have you ever been to the {place}? Looks nice in photos.",
    "Somebody left a {object} in the kitchen, no idea whose.", "Random thought: {object}s are underrated.",
    "I keep meaning to visit the {place} sometime.", "Ugh, {day}s are always so long.",
)
_ACKS = (
    "ok", "Okay, thanks!", "Got it.", "Sounds good.", "Sure thing.", "Thanks {name}!", "Cool cool.",
    "Makes sense.", "Perfect, thank you.", "Noted, cheers.", "Haha fair enough.", "lol yes", "Right, right.",
    "👍", "Sure, no worries.", "Yep.", "Great, appreciate it.", "Ha, true.", "Oh nice!", "Same here.",
)
_TURN_TAKING = (
    "Let me think about that for a second.", "One sec, someone's at the door.", "brb",
    "Sorry, what was that?", "Wait, say that again?", "Hmm, not sure.", "Let me check and get back to you.",
    "Anyway, where were we?", "Good question, no idea.", "I'll have to look it up.", "Hold on, my laptop froze.",
    "Can we pick this up later?", "Talk soon!", "Bye for now.", "Have a good one, {name}.", "See you tomorrow!",
)
_REACTIONS = (
    "Wow, really?", "No way!", "That's hilarious.", "Oh no, that sucks.", "Nice one!", "Oh wow, congrats!",
    "Haha, classic {name}.", "That's wild.", "Aw, that's sweet.", "Yikes.", "Oof, sorry to hear that.",
)
_POOLS = (_GREETINGS, _SMALL_TALK, _ACKS, _TURN_TAKING, _REACTIONS)
_POOL_WEIGHTS = (2, 4, 4, 3, 2)
_WEATHER = ("sunny", "windy", "grey", "cold", "humid", "muggy", "bright", "foggy")
_FOOD = ("soup", "curry", "lasagne", "salad", "noodle", "pie", "risotto", "taco")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_FIELDS: dict[str, tuple[str, ...]] = {
    "name": PEOPLE, "day": _DAYS, "weather": _WEATHER, "food": _FOOD, "place": PLACES, "object": OBJECTS,
}


def filler_line(rng: random.Random) -> str:
    """One line of chit-chat, drawn with ``rng`` (deterministic for a seeded rng)."""
    pool = rng.choices(_POOLS, weights=_POOL_WEIGHTS, k=1)[0]
    template = rng.choice(pool)
    if "{" not in template:
        return template
    # Draw only the fields the template uses (in a fixed order, so output stays seeded).
    values = {field: rng.choice(choices) for field, choices in _FIELDS.items() if f"{{{field}}}" in template}
    return template.format(**values)


def filler_templates() -> tuple[str, ...]:
    """All filler templates (unformatted), for inspection and tests."""
    return tuple(t for pool in _POOLS for t in pool)

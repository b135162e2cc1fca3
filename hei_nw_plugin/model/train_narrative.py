"""Generated stories of people moving about and carrying things, for the memory reader.

bAbI-shaped, but every name, room, object and verb is our own: disjoint from bAbI
tasks 1-20, the scenarios and LoCoMo's speakers (a unit test asserts it). A story is a
stream of events; a question asks where a person is now (one fact), where an object is
(two facts: who last handled it, and where that person was then), or about someone
the memory never mentions (the answer is :data:`~hei_nw_plugin.model.prompting.ABSTAIN`).

The memory is laid out the way HEI-NW's recall lays it out, because that is what the
reader will see: the newest version of a person's whereabouts first (text versions),
and for an object its line followed by its holder's location lines (chained recall).
Now and then another person's line comes first, so the reader has to find the line
about the one asked for rather than copy line 1. bAbI stories carry no dates, so half
the stories show one day on every line and the rest one day per event.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hei_nw_plugin.config import PackSettings
from hei_nw_plugin.model.prompting import ABSTAIN, DEFAULT_ONE_SHOT, NARRATIVE_ONE_SHOT, OneShot
from hei_nw_plugin.pack import Packer, TokenCounter
from hei_nw_plugin.types import SourcePointer, Trace

NAMES: tuple[str, ...] = (
    "Petra", "Anton", "Selma", "Hector", "Lina", "Bram", "Tilda", "Oswin", "Maren", "Ruben",
    "Edda", "Falk", "Irma", "Jarek", "Kaja", "Lukas", "Nora", "Pavel", "Runa", "Sven",
    "Thea", "Ugo", "Vera", "Wim", "Zora", "Arvid", "Britt", "Cato", "Dora", "Egon",
)
ROOMS: tuple[str, ...] = (
    "pantry", "porch", "study", "loft", "veranda", "nursery", "workshop", "balcony", "lobby",
    "corridor", "sunroom", "den", "terrace", "courtyard", "stairwell", "scullery",
)
THINGS: tuple[str, ...] = (
    "trowel", "ladle", "whisk", "stapler", "frisbee", "backpack", "thermos", "pillow", "candle",
    "banjo", "kite", "wallet", "puzzle", "mug", "torch", "saucepan",
)
MOVES: tuple[str, ...] = (
    "walked to", "ran to", "headed to", "hurried to", "strolled into", "wandered into", "rushed to",
    "stepped into", "dashed to", "crept into",
)
PICKS: tuple[str, ...] = ("collected", "lifted", "snatched", "fetched", "grasped")
DROPS: tuple[str, ...] = ("set down", "abandoned", "laid down", "put away", "let go of")


def narrative_vocabulary() -> frozenset[str]:
    """Every name, room, object and verb phrase the stories use, lower-cased."""
    return frozenset(s.lower() for s in (*NAMES, *ROOMS, *THINGS, *MOVES, *PICKS, *DROPS))


@dataclass(frozen=True)
class Event:
    """One story line: ``who`` moved to ``room``, or picked up / dropped ``thing``."""

    step: int
    who: str
    kind: str  # "move" | "pick" | "drop"
    text: str
    room: str | None = None
    thing: str | None = None


@dataclass
class World:
    """Where everyone and everything is, and which line put them there."""

    at: dict[str, Event] = field(default_factory=dict)  # person -> last move
    moves: dict[str, list[Event]] = field(default_factory=dict)  # person -> every move, oldest first
    held: dict[str, str] = field(default_factory=dict)  # thing -> holder
    thing_line: dict[str, Event] = field(default_factory=dict)  # thing -> its last pick/drop
    thing_room: dict[str, Event] = field(default_factory=dict)  # thing -> the holder's move behind its place


def _story(rng: random.Random, n_events: int) -> tuple[list[Event], World]:
    people = rng.sample(NAMES, rng.randint(2, 4))
    rooms = rng.sample(ROOMS, rng.randint(4, 6))
    things = rng.sample(THINGS, rng.randint(1, 3))
    world, events = World(), []
    for step in range(n_events):
        who = rng.choice(people)
        mine = [t for t, h in world.held.items() if h == who]
        free = [t for t in things if t not in world.held]
        if who in world.at and (mine or free) and rng.random() < 0.4:
            if mine and (not free or rng.random() < 0.5):
                thing = rng.choice(mine)
                there = " there" if rng.random() < 0.5 else ""
                ev = Event(step, who, "drop", f"{who} {rng.choice(DROPS)} the {thing}{there}.", thing=thing)
                del world.held[thing]
            else:
                thing = rng.choice(free)
                there = " there" if rng.random() < 0.5 else ""
                ev = Event(step, who, "pick", f"{who} {rng.choice(PICKS)} the {thing}{there}.", thing=thing)
                world.held[thing] = who
            world.thing_line[thing] = ev
            world.thing_room[thing] = world.at[who]
        else:
            here = world.at[who].room if who in world.at else None
            room = rng.choice([r for r in rooms if r != here])
            ev = Event(step, who, "move", f"{who} {rng.choice(MOVES)} the {room}.", room=room)
            world.at[who] = ev
            world.moves.setdefault(who, []).append(ev)
            for thing, holder in world.held.items():
                if holder == who:
                    world.thing_room[thing] = ev
        events.append(ev)
    return events, world


@dataclass(frozen=True)
class NarrativeRow:
    """A question over a story's recalled lines (``lines`` best first), its answer and one-shot."""

    lines: tuple[Event, ...]
    question: str
    answer: str
    target_rank: int
    one_shot: OneShot


def _with_stray(rng: random.Random, lines: list[Event], events: list[Event], about: set[str],
                thing: str | None = None) -> list[Event]:
    """Sometimes put a line about someone (and something) else first: recall is not perfect."""
    others = [e for e in events if e.who not in about and e not in lines and (thing is None or e.thing != thing)]
    if others and rng.random() < 0.2:
        return [rng.choice(others), *lines]
    return lines


def _fill(rng: random.Random, lines: list[Event], events: list[Event], k: int) -> list[Event]:
    rest = [e for e in events if e not in lines]
    rng.shuffle(rest)
    return (lines + rest)[: max(k, 1)]


def narrative_row(rng: random.Random) -> NarrativeRow:
    """One question over one story: a person's place, an object's place, or nobody the memory knows."""
    shot = NARRATIVE_ONE_SHOT if rng.random() < 0.8 else DEFAULT_ONE_SHOT
    k = rng.choice((2, 3, 3, 3, 4))
    while True:
        events, world = _story(rng, rng.randint(4, 20))
        kind = rng.choices(("person", "thing", "nobody"), weights=(0.45, 0.45, 0.1))[0]
        if kind == "person" and world.at:
            who = rng.choice(sorted(world.at))
            mine = list(reversed(world.moves[who]))[:k]  # newest version first
            lines = _fill(rng, _with_stray(rng, mine, events, {who}), events, k)
            rank = lines.index(world.at[who]) + 1
            return NarrativeRow(tuple(lines[:k]), f"Where is {who}?", str(world.at[who].room), rank, shot)
        if kind == "thing" and world.thing_line:
            thing = rng.choice(sorted(world.thing_line))
            line, move = world.thing_line[thing], world.thing_room[thing]
            later = [e for e in reversed(world.moves[line.who]) if e is not move][:1]
            lines = _fill(rng, _with_stray(rng, [line, move, *later], events, {line.who}, thing), events, k)
            if move not in lines[:k]:
                continue
            return NarrativeRow(tuple(lines[:k]), f"Where is the {thing}?", str(move.room), lines.index(move) + 1, shot)
        if kind == "nobody":
            absent = rng.choice([n for n in NAMES if n not in {e.who for e in events}])
            lines = _fill(rng, [], events, k)
            return NarrativeRow(tuple(lines), f"Where is {absent}?", ABSTAIN, 0, shot)


def pack_story(row: NarrativeRow, rng: random.Random, *, count: TokenCounter | None = None,
               max_mem_tokens: int = 128) -> str:
    """The row's lines as packed memory text: undated stories show one day on every line."""
    packer = Packer(PackSettings(max_mem_tokens=max_mem_tokens, include_slots=False, redact_pii=False),
                    token_counter=count)
    day = datetime(2022, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(900))
    dated = rng.random() < 0.5
    traces = [
        Trace(id=f"n{e.step}", namespace="train", text=e.text, slots={}, source=SourcePointer(),
              created_at=day + timedelta(days=e.step if dated else 0), pinned=False, gate_score=1.0)
        for e in row.lines
    ]
    return packer.pack(traces).text

"""Generated episodic QA for training the Episodic Adapter and the memory reader.

Three families of rows: slot facts (this module, the adapter's only data), stories
of people moving things about (:mod:`~hei_nw_plugin.model.train_narrative`) and
dated two-person conversations (:mod:`~hei_nw_plugin.model.train_dialogue`);
:func:`generate_mixed` draws the reader's rows from all three. The slot facts:

Every surface string here (people, verbs, objects, places, times, cities, pets)
is disjoint from the evaluation vocabulary in ``eval/hei_nw_eval/scenarios/vocab.py``
(a unit test asserts it), so a trained reader cannot score by having memorised
eval entities. The sentence templates are our own and deliberately varied: an
event story (who did what where when), a keeping place, a meeting, a hand-over,
and a personal attribute, each asked about one of its slots.

A row is one question over a packed memory of 1–6 facts, packed with the engine's
own :class:`~hei_nw_plugin.pack.Packer` so lines look exactly like recall output.
Distractors share slots with the target (same person, same object, same place)
because those near-duplicates are what breaks a small model's reading.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hei_nw_plugin.config import PackSettings
from hei_nw_plugin.model.prompting import ABSTAIN, DEFAULT_ONE_SHOT, OneShot
from hei_nw_plugin.model.train_dialogue import dialogue_row, dialogue_vocabulary, pack_turns
from hei_nw_plugin.model.train_narrative import narrative_row, narrative_vocabulary, pack_story
from hei_nw_plugin.pack import Packer, TokenCounter
from hei_nw_plugin.types import SourcePointer, Trace

PEOPLE: tuple[str, ...] = (
    "Nadia", "Viktor", "Aurelio", "Priya", "Jonas", "Kenji", "Fatima", "Olek", "Mireille", "Tobias",
    "Ines", "Dario", "Svetlana", "Kwame", "Lotte", "Rasmus", "Anouk", "Mateo", "Yusuf", "Greta",
    "Bruno", "Chiara", "Emeka", "Hanne", "Ilya", "Junia", "Karim", "Leila", "Milo", "Noor",
    "Oskar", "Paloma", "Quentin", "Rhea", "Soren", "Talia", "Ulrich", "Vesna", "Wanda", "Xavi",
    "Yara", "Zoltan", "Amara", "Bodhi", "Cyril", "Dagny", "Elio", "Freya", "Gustav", "Hugo",
    "Isla", "Joaquin", "Kira", "Lars", "Mina", "Nils", "Otto", "Pia", "Rafael", "Sana",
)

# (past tense, base form)
VERBS: tuple[tuple[str, str], ...] = (
    ("cleaned", "clean"), ("carried", "carry"), ("stored", "store"), ("locked", "lock"),
    ("sketched", "sketch"), ("fixed", "fix"), ("tested", "test"), ("packed", "pack"),
    ("lent", "lend"), ("lost", "lose"), ("tuned", "tune"), ("folded", "fold"),
    ("labelled", "label"), ("washed", "wash"), ("counted", "count"), ("opened", "open"),
)

OBJECTS: tuple[str, ...] = (
    "red bicycle", "blue notebook", "wooden spoon", "green kayak", "silk tie", "brass trumpet",
    "garden hose", "yellow raincoat", "laptop charger", "fishing rod", "violin case", "camping stove",
    "road atlas", "chess clock", "sewing kit", "wool mittens", "toy train", "photo album",
    "tennis racket", "spare tyre", "desk lamp", "coffee grinder", "snow shovel", "bird feeder",
    "drum kit", "paint roller", "hiking boots", "water filter", "microscope", "hammock",
    "sleeping bag", "cookbook", "typewriter", "flower pot", "harmonica", "skateboard",
)

PLACES: tuple[str, ...] = (
    "train station", "garden shed", "back porch", "city library", "school gym", "boat house",
    "farm shop", "attic", "basement", "car park", "post office", "town square", "village hall",
    "dentist office", "bike shop", "laundry room", "science lab", "flower market", "bus stop",
    "guest room", "tool shed", "art museum", "corner cafe", "swimming pool", "wine cellar",
    "greenhouse", "pantry", "garage", "rooftop terrace", "stable", "tennis court", "sports hall",
)

TIMES: tuple[str, ...] = tuple(
    f"{when} {month}"
    for month in ("January", "February", "March", "April", "May", "June", "July", "August",
                  "September", "October", "November", "December")
    for when in ("early", "mid", "late")
)

CITIES: tuple[str, ...] = (
    "Seville", "Krakow", "Osaka", "Accra", "Bilbao", "Gdansk", "Nantes", "Perth", "Leeds",
    "Turin", "Utrecht", "Bergamo", "Lyon", "Cordoba", "Riga", "Adelaide", "Kyoto", "Malmo",
)
PETS: tuple[str, ...] = ("parrot", "hamster", "tortoise", "beagle", "goldfish", "ferret", "poodle", "iguana")
COLOURS: tuple[str, ...] = ("teal", "maroon", "lilac", "ochre", "navy", "coral", "olive", "mustard")


def training_vocabulary() -> frozenset[str]:
    """Every entity string any family can emit, lower-cased (for the disjointness checks)."""
    strings = set(PEOPLE) | set(OBJECTS) | set(PLACES) | set(TIMES) | set(CITIES) | set(PETS) | set(COLOURS)
    strings |= {past for past, _ in VERBS} | {base for _, base in VERBS}
    return frozenset(s.lower() for s in strings) | narrative_vocabulary() | dialogue_vocabulary()


@dataclass(frozen=True)
class Question:
    """A question, its answer, and the slots it names (a fact matching all of them answers it)."""

    text: str
    answer: str
    cue: dict[str, str]


@dataclass(frozen=True)
class Fact:
    """One generated episode of some ``kind`` and the questions it can answer."""

    kind: str
    text: str
    slots: dict[str, str]
    questions: tuple[Question, ...]

    def answers(self, q: Question, kind: str) -> bool:
        """True when this fact also matches every slot ``q`` names (it would make the gold ambiguous)."""
        return self.kind == kind and all(self.slots.get(k) == v for k, v in q.cue.items())


@dataclass(frozen=True)
class QARow:
    """One training row: packed memory (target fact among distractors), question, answer.

    ``target_rank`` is the memory line that holds the answer (0: none does, and the
    answer is :data:`~hei_nw_plugin.model.prompting.ABSTAIN`, or several do).
    """

    memory: str
    question: str
    answer: str
    n_facts: int
    target_rank: int
    family: str = "slots"
    one_shot: OneShot = DEFAULT_ONE_SHOT


_EVENT_ORDERS = (
    "{who} {action} the {what} at the {where} in {when}.",
    "In {when}, {who} {action} the {what} at the {where}.",
    "At the {where}, {who} {action} the {what} in {when}.",
    "{who} {action} the {what} in {when}, at the {where}.",
)
_ASKABLE = ("who", "what", "where", "when")
_POOLS: dict[str, tuple[str, ...]] = {"who": PEOPLE, "what": OBJECTS, "where": PLACES, "when": TIMES}


def _event_question(slots: dict[str, str], asked: str, named: tuple[str, ...]) -> Question:
    """Ask ``asked`` naming the verb and the ``named`` slots; others become someone / something."""
    base = dict(VERBS)[slots["action"]]
    who = slots["who"] if "who" in named else "someone"
    what = f"the {slots['what']}" if "what" in named else "something"
    at = f" at the {slots['where']}" if "where" in named else ""
    when = f" in {slots['when']}" if "when" in named else ""
    text = {
        "who": f"Who {slots['action']} {what}{at}{when}?",
        "what": f"What did {who} {base}{at}{when}?",
        "where": f"Where did {who} {base} {what}{when}?",
        "when": f"When did {who} {base} {what}{at}?",
    }[asked]
    cue = {"action": slots["action"], **{k: slots[k] for k in named}}
    return Question(text, slots[asked], cue)


def _event_fact(rng: random.Random, slots: dict[str, str]) -> Fact:
    questions = []
    for asked in _ASKABLE:
        others = [s for s in _ASKABLE if s != asked]
        picked = set(rng.sample(others, rng.randint(1, len(others))))
        named = tuple(s for s in others if s in picked)
        questions.append(_event_question(slots, asked, named))
    text = rng.choice(_EVENT_ORDERS).format(**slots)
    return Fact("event", text, dict(slots), tuple(questions))


def _event(rng: random.Random, who: str, what: str, where: str) -> Fact:
    slots = {"who": who, "action": rng.choice(VERBS)[0], "what": what, "where": where, "when": rng.choice(TIMES)}
    return _event_fact(rng, slots)


def _event_hard_negative(rng: random.Random, target: Fact, q: Question) -> Fact:
    """The same story with the answer and one named slot changed: it matches most of the cue."""
    slots = dict(target.slots)
    asked = next(k for k in _ASKABLE if k not in q.cue and slots[k] == q.answer)
    changed = rng.choice([k for k in q.cue if k != "action"])
    for slot in (asked, changed):
        slots[slot] = rng.choice([v for v in _POOLS[slot] if v != slots[slot]])
    return _event_fact(rng, slots)


def _keeps(rng: random.Random, who: str, what: str, where: str) -> Fact:
    s = {"who": who, "what": what, "where": where}
    return Fact("keeps", f"{who} keeps the {what} in the {where}.", s, (
        Question(f"Where does {who} keep the {what}?", where, {"who": who, "what": what}),
        Question(f"What does {who} keep in the {where}?", what, {"who": who, "where": where}),
        Question(f"Who keeps the {what} in the {where}?", who, {"what": what, "where": where}),
    ))


def _meeting(rng: random.Random, who: str, what: str, where: str) -> Fact:
    other = rng.choice([p for p in PEOPLE if p != who])
    when = rng.choice(TIMES)
    s = {"who": who, "with": other, "where": where, "when": when}
    return Fact("meeting", f"{who} met {other} at the {where} in {when}.", s, (
        Question(f"Who did {who} meet at the {where}?", other, {"who": who, "where": where}),
        Question(f"Where did {who} meet {other}?", where, {"who": who, "with": other}),
        Question(f"When did {who} meet {other}?", when, {"who": who, "with": other}),
    ))


def _handover(rng: random.Random, who: str, what: str, where: str) -> Fact:
    other = rng.choice([p for p in PEOPLE if p != who])
    s = {"who": who, "what": what, "to": other}
    return Fact("handover", f"{who} gave the {what} to {other}.", s, (
        Question(f"Who did {who} give the {what} to?", other, {"who": who, "what": what}),
        Question(f"What did {who} give to {other}?", what, {"who": who, "to": other}),
        Question(f"Who gave the {what} to {other}?", who, {"what": what, "to": other}),
    ))


def _attribute(rng: random.Random, who: str, what: str, where: str) -> Fact:
    kind = rng.randrange(3)
    if kind == 0:
        city = rng.choice(CITIES)
        return Fact("city", f"{who} moved to {city}.", {"who": who, "city": city}, (
            Question(f"Which city did {who} move to?", city, {"who": who}),
            Question(f"Where does {who} live now?", city, {"who": who}),
        ))
    if kind == 1:
        pet = rng.choice(PETS)
        return Fact("pet", f"{who} has a pet {pet}.", {"who": who, "pet": pet},
                    (Question(f"What pet does {who} have?", pet, {"who": who}),))
    colour = rng.choice(COLOURS)
    return Fact("colour", f"{who}'s favourite colour is {colour}.", {"who": who, "colour": colour},
                (Question(f"What is {who}'s favourite colour?", colour, {"who": who}),))


_TEMPLATES: tuple[Callable[[random.Random, str, str, str], Fact], ...] = (
    _event, _event, _event, _keeps, _meeting, _handover, _attribute,
)


def _distractor(rng: random.Random, target: Fact, q: Question, template: Callable[..., Fact]) -> Fact:
    """A hard negative for events half the time, else a fact sharing one slot with the target."""
    if target.kind == "event" and rng.random() < 0.5:
        return _event_hard_negative(rng, target, q)
    keep = rng.choice(("who", "what", "where"))
    picks = {k: target.slots.get(k, rng.choice(_POOLS[k])) if k == keep else rng.choice(_POOLS[k])
             for k in ("who", "what", "where")}
    make = template if rng.random() < 0.6 else rng.choice(_TEMPLATES)
    return make(rng, picks["who"], picks["what"], picks["where"])


def _trace(i: int, fact: Fact, when: datetime) -> Trace:
    return Trace(
        id=f"t{i}", namespace="train", text=fact.text, slots=dict(fact.slots), source=SourcePointer(),
        created_at=when, pinned=False, gate_score=1.0,
    )


def generate_rows(n: int, *, seed: int, max_facts: int = 6, abstain: float = 0.0) -> list[QARow]:
    """``n`` slot-fact rows, reproducible from ``seed``.

    Half the rows have the target fact ranked first (recall usually gets it
    right), the rest put it anywhere; 1–``max_facts`` facts per memory, packed
    with and without slots. No distractor matches the question's cue. With
    probability ``abstain`` the target is left out (its near-duplicates stay) and
    the answer is :data:`~hei_nw_plugin.model.prompting.ABSTAIN`; ``abstain=0``
    draws exactly the rows it always did.
    """
    rng = random.Random(seed)
    packers = {
        flag: Packer(PackSettings(max_mem_tokens=8192, include_slots=flag, redact_pii=False))
        for flag in (True, False)
    }
    start = datetime(2023, 1, 1, tzinfo=UTC)
    rows: list[QARow] = []
    while len(rows) < n:
        template = rng.choice(_TEMPLATES)
        target = template(rng, rng.choice(PEOPLE), rng.choice(OBJECTS), rng.choice(PLACES))
        q = rng.choice(target.questions)
        n_facts = rng.randint(1, max_facts)
        facts = [target]
        while len(facts) < n_facts:
            other = _distractor(rng, target, q, template)
            if other.text not in {f.text for f in facts} and not other.answers(q, target.kind):
                facts.append(other)
        rank = 0 if rng.random() < 0.5 else rng.randrange(n_facts)
        facts[0], facts[rank] = facts[rank], facts[0]
        answer = q.answer
        if abstain and n_facts > 1 and rng.random() < abstain:
            facts.pop(rank)
            answer, rank = ABSTAIN, -1
        days = sorted(rng.sample(range(400), len(facts)))
        traces = [_trace(i, f, start + timedelta(days=d)) for i, (f, d) in enumerate(zip(facts, days))]
        memory = packers[rng.random() < 0.5].pack(traces).text
        rows.append(QARow(memory=memory, question=q.text, answer=answer, n_facts=len(facts), target_rank=rank + 1))
    return rows


FAMILIES: tuple[str, ...] = ("slots", "narrative", "dialogue")


def generate_mixed(
    n: int, *, seed: int, shares: tuple[float, float, float] = (0.3, 0.3, 0.4), max_facts: int = 6,
    abstain: float = 0.08, count: TokenCounter | None = None, max_mem_tokens: int = 128,
) -> list[QARow]:
    """``n`` rows drawn from the three families by ``shares`` (slots, narrative, dialogue), reproducible.

    ``count`` is the model's token counter, so memories are cut to ``max_mem_tokens``
    as recall cuts them (default: the packer's word counter). Dialogue rows whose
    evidence the budget cut off are drawn again.
    """
    rng = random.Random(seed)
    slot_rows = iter(generate_rows(n, seed=seed + 1, max_facts=max_facts, abstain=abstain))
    rows: list[QARow] = []
    while len(rows) < n:
        family = rng.choices(FAMILIES, weights=shares)[0]
        if family == "slots":
            rows.append(next(slot_rows))
        elif family == "narrative":
            story = narrative_row(rng)
            memory = pack_story(story, rng, count=count, max_mem_tokens=max_mem_tokens)
            rows.append(QARow(memory, story.question, story.answer, len(story.lines), story.target_rank,
                              "narrative", story.one_shot))
        else:
            talk = dialogue_row(rng)
            memory, kept = pack_turns(talk, rng, count=count, max_mem_tokens=max_mem_tokens)
            if kept:
                rows.append(QARow(memory, talk.question, talk.answer, memory.count("\n") + 1, talk.target_rank,
                                  "dialogue", talk.one_shot))
    return rows

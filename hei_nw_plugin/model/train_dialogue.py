"""Generated two-person conversations over dated sessions, for the memory reader.

Each turn is one speaker's message (``Name: text``), and a fact turn says something
about the speaker in the first person: a hobby, an outing with a relative time ("last
week"), a purchase, a plan, a pet. Questions ask for a short span of one turn, for the
date a "when" question resolves to from the session date ("last week" said on 9 June
2023 is "the week before 9 June 2023"), or for a list gathered from several turns of one
speaker (two facts or three). Two kinds of question have no answer in memory and are
answered :data:`~hei_nw_plugin.model.prompting.ABSTAIN`: one that names the other
speaker as the one who did it (the turn is there, but someone else said it), and one
about something the memory does not hold at all.

Memory rows mimic recall over turns: the evidence turn among other turns of the same
conversation, anywhere in the top k, packed by the engine's own packer with the
speaker and session as slots (half the time) or bare. Every name and content string
is our own (disjoint from the scenarios, bAbI and LoCoMo's speakers; a test asserts it).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from hei_nw_plugin.config import PackSettings
from hei_nw_plugin.model.prompting import ABSTAIN, DEFAULT_ONE_SHOT, DIALOGUE_ONE_SHOT, MONTHS, OneShot, spoken_date
from hei_nw_plugin.pack import Packer, TokenCounter
from hei_nw_plugin.types import SourcePointer, Trace

SPEAKERS: tuple[str, ...] = (
    "Aleksi", "Bettina", "Corwin", "Dalia", "Eamon", "Fenna", "Gavril", "Helka", "Isko", "Jovana",
    "Kasimir", "Liesel", "Mauro", "Nerys", "Orrin", "Prisca", "Quillan", "Ronja", "Stellan", "Tuva",
    "Ulla", "Valko", "Wren", "Ximena", "Yorick", "Zelda", "Amadou", "Birte", "Cian", "Dunja",
)
HOBBIES: tuple[str, ...] = (
    "birdwatching", "rock climbing", "beekeeping", "knitting", "playing the cello", "salsa dancing",
    "woodcarving", "calligraphy", "kayaking", "baking sourdough", "stargazing", "archery", "origami",
    "photography", "juggling", "learning Japanese", "restoring old radios", "trail cycling",
)
OUTINGS: tuple[str, ...] = (
    "a jazz concert", "a book fair", "a food festival", "a charity bake sale", "a science fair",
    "a film screening", "a poetry slam", "a robotics workshop", "a comedy show", "a wine tasting",
    "a kite festival", "a career fair", "a drumming circle", "a cheese market",
)
TRIPS: tuple[str, ...] = (
    "the coast", "a mountain cabin", "the botanical garden", "an island resort", "my cousin's farm",
    "a lakeside campsite", "the national archive", "a volcano park", "a lavender field", "the old fortress",
)
ITEMS: tuple[str, ...] = (
    "a vintage camera", "a standing desk", "hiking poles", "an espresso machine", "a telescope",
    "a sewing machine", "a record player", "a bread maker", "a drone", "a rowing machine", "a tandem bike",
)
PURPOSES: tuple[str, ...] = (
    "my new flat", "the road trip", "my sister's wedding", "my evening classes", "the holidays",
    "my home studio", "the community club",
)
INSIGHTS: tuple[str, ...] = (
    "patience pays off", "rest matters more than speed", "friends matter most", "small steps add up",
    "it is fine to ask for help", "being outdoors is calming", "teaching others is rewarding", "slowing down helps",
)
PET_KINDS: tuple[str, ...] = ("cockatoo", "rabbit", "guinea pig", "husky", "tabby cat", "gecko", "corgi", "canary")
PET_NAMES: tuple[str, ...] = ("Biscuit", "Pepper", "Noodle", "Mochi", "Ziggy", "Waffles", "Pickles", "Clover", "Maple", "Sprout")
JOBS: tuple[str, ...] = (
    "nurse", "bus driver", "graphic designer", "park ranger", "sound engineer", "baker", "librarian",
    "physiotherapist", "carpenter", "tour guide",
)
PLANS: tuple[str, ...] = (
    "learn to sail", "run a half marathon", "open a small bakery", "visit my grandparents",
    "take a cooking class", "build a treehouse", "adopt a puppy", "hike the northern trail",
)
RELATIVES: tuple[str, ...] = ("cousin", "aunt", "uncle", "grandma", "grandpa", "godmother", "stepdad", "best friend")
GIFTS: tuple[str, ...] = ("a handmade quilt", "a silver bracelet", "a signed novel", "a bonsai tree", "a leather journal", "a music box")
WEEKDAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

OPENERS: tuple[str, ...] = ("Hey {o}! ", "Hi {o}! ", "Thanks, {o}! ", "Oh wow, {o}, ", "", "", "", "Guess what? ")
BEFORE: tuple[str, ...] = (
    "Long time no talk!", "Things have been pretty hectic around here.", "Hope your week is going well.",
    "So much has happened since we last chatted.", "I have some news.", "Sorry for the late reply.",
    "It's been a wild couple of weeks.", "I was just thinking about you.",
)
AFTER: tuple[str, ...] = (
    "It was so much fun.", "How about you?", "I can't wait to tell you more.", "What have you been up to?",
    "It really made my week.", "Honestly, it was tough at first but totally worth it.",
    "I'm excited to see where it goes!", "It reminded me how much I enjoy trying new things.",
    "My family thinks I'm a bit crazy, haha.", "Do you have any plans for the weekend?",
    "I'll send you some pictures later.", "It felt like a fresh start.",
)
CAPTIONS: tuple[str, ...] = (
    "a photo of a crowded street at night", "a photo of a smiling group of friends", "a photo of a cup of tea",
    "a photo of a sunset over some hills", "a photo of a messy desk", "a photo of a small dog on a sofa",
)
FILLERS: tuple[str, ...] = (
    "That sounds amazing, {o}! I'm so happy for you.", "Wow, good for you! Keep it up.",
    "Haha, that's great. Tell me more next time!", "I totally get that. Take care, {o}!",
    "Thanks for sharing, {o}. It means a lot.", "That's so cool! I'd love to hear how it goes.",
    "Congrats, {o}! You deserve it. How are you feeling about it?", "Oh no, that sounds stressful. Hang in there!",
)


def dialogue_vocabulary() -> frozenset[str]:
    """Every name and content string the conversations use, lower-cased."""
    pools = (SPEAKERS, HOBBIES, OUTINGS, TRIPS, ITEMS, PURPOSES, INSIGHTS, PET_KINDS, PET_NAMES, JOBS, PLANS,
             RELATIVES, GIFTS)
    return frozenset(s.lower() for pool in pools for s in pool)


def _bare(phrase: str) -> str:
    """A span without its leading article (the answer a person would give)."""
    for article in ("a ", "an ", "the "):
        if phrase.startswith(article):
            return phrase[len(article):]
    return phrase


def _month(d: date, shift: int) -> str:
    index = d.year * 12 + d.month - 1 + shift
    return f"{MONTHS[index % 12]} {index // 12}"


def _said(d: date) -> str:
    return spoken_date(d.year, d.month, d.day)


# (what the speaker says, the answer given the session date)
RELATIVE_PAST: tuple[tuple[str, Callable[[date], str]], ...] = (
    ("yesterday", lambda d: _said(d - timedelta(days=1))),
    ("two days ago", lambda d: _said(d - timedelta(days=2))),
    ("today", _said),
    ("last week", lambda d: f"the week before {_said(d)}"),
    ("last weekend", lambda d: f"the weekend before {_said(d)}"),
    *((f"last {day}", lambda d, day=day: f"the {day} before {_said(d)}") for day in WEEKDAYS),
    ("last month", lambda d: _month(d, -1)),
    ("last year", lambda d: str(d.year - 1)),
)
RELATIVE_FUTURE: tuple[tuple[str, Callable[[date], str]], ...] = (
    ("next month", lambda d: _month(d, 1)),
    ("next week", lambda d: f"the week after {_said(d)}"),
    ("next year", lambda d: str(d.year + 1)),
)


@dataclass(frozen=True)
class Fact:
    """A question one turn answers, its answer, and the list it belongs to (``topic``) if any."""

    question: str
    answer: str
    topic: str | None = None
    value: str = ""
    frame: int = -1


@dataclass
class Turn:
    id: str
    speaker: str
    text: str
    when: datetime
    session: int
    facts: list[Fact] = field(default_factory=list)


FRAMES = 9
"""Kinds of fact turn: hobby, outing, trip, purchase, realisation, pet, job, plan, present."""


def _fact_turn(rng: random.Random, s: str, d: date, used: set[str], frame: int | None = None) -> tuple[str, list[Fact]]:
    """A first-person sentence by ``s`` and the questions it answers (values not in ``used``)."""
    def pick(pool: tuple[str, ...]) -> str:
        free = [v for v in pool if v not in used] or list(pool)
        value = rng.choice(free)
        used.add(value)
        return value

    frame = rng.randrange(FRAMES) if frame is None else frame
    text, facts = _frame(rng, frame, s, d, pick)
    return text, [replace(f, frame=frame) for f in facts]


def _frame(rng: random.Random, frame: int, s: str, d: date, pick: Callable[[tuple[str, ...]], str]) -> tuple[str, list[Fact]]:
    if frame == 0:
        hobby = pick(HOBBIES)
        text = rng.choice((f"I've started {hobby} lately and I love it.", f"Lately I've been really into {hobby}.",
                           f"I took up {hobby} a few weeks ago, it's so relaxing."))
        return text, [Fact(rng.choice((f"What has {s} been into lately?", f"What hobby did {s} take up?")), hobby,
                           "hobby", hobby)]
    if frame in (1, 2):
        said, answer = rng.choice(RELATIVE_PAST)
        if frame == 1:
            place = pick(OUTINGS)
            text = rng.choice((f"I went to {place} {said}!", f"{said[0].upper()}{said[1:]} I went to {place} with some friends."))
            what = Fact(f"What did {s} go to {said}?" if rng.random() < 0.5 else f"What event did {s} attend?",
                        _bare(place), "outing", _bare(place))
            return text, [what, Fact(f"When did {s} go to {place}?", answer(d))]
        place = pick(TRIPS)
        text = rng.choice((f"We took a trip to {place} {said}.", f"{said[0].upper()}{said[1:]} we drove out to {place}."))
        return text, [Fact(f"Where did {s} travel?", _bare(place), "trip", _bare(place)),
                      Fact(f"When did {s} visit {place}?", answer(d))]
    if frame == 3:
        item, purpose = pick(ITEMS), rng.choice(PURPOSES)
        text = f"I just bought {item} for {purpose}."
        theirs = purpose.replace("my ", f"{s}'s ", 1)
        return text, [Fact(f"What did {s} buy for {theirs}?", _bare(item)),
                      Fact(f"Why did {s} buy {item}?", f"for {purpose}")]
    if frame == 4:
        place, insight = rng.choice(OUTINGS), pick(INSIGHTS)
        text = f"After {place}, I realized {insight}."
        return text, [Fact(f"What did {s} realize after {place}?", insight)]
    if frame == 5:
        kind, name = rng.choice(PET_KINDS), pick(PET_NAMES)
        text = rng.choice((f"My {kind} {name} has been so playful this week.", f"We adopted a {kind} and named it {name}!"))
        return text, [Fact(f"What is the name of {s}'s {kind}?", name), Fact(f"What pet does {s} have?", kind, "pet", kind)]
    if frame == 6:
        job = pick(JOBS)
        text = rng.choice((f"I got a new job as a {job}!", f"Work as a {job} keeps me busy these days."))
        return text, [Fact(rng.choice((f"What does {s} do for work?", f"What is {s}'s job?")), job)]
    if frame == 7:
        plan = pick(PLANS)
        said, answer = rng.choice(RELATIVE_FUTURE)
        text = f"I'm planning to {plan} {said}."
        theirs = plan.replace("my ", f"{s}'s ")
        return text, [Fact(f"What is {s} planning to do {said}?", plan),
                      Fact(f"When is {s} planning to {theirs}?", answer(d))]
    rel, gift = rng.choice(RELATIVES), pick(GIFTS)
    text = f"My {rel} gave me {gift} for my birthday."
    return text, [Fact(f"What did {s} get from {s}'s {rel}?", _bare(gift), "gift", _bare(gift)),
                  Fact(f"Who gave {s} {gift}?", rel)]


def _wrap(rng: random.Random, body: str, other: str) -> str:
    """A fact sentence inside a chatty turn: greeting, small talk before and after, sometimes a shared photo."""
    opener = rng.choice(OPENERS).format(o=other)
    before = " ".join(rng.sample(BEFORE, rng.choice((0, 0, 1, 2))))
    if before:
        opener = (opener.rstrip(", ") + "! " if opener.endswith(", ") else opener) + before + " "
    elif opener.endswith(", ") and not body.startswith("I"):
        body = body[0].lower() + body[1:]
    after = " ".join(rng.sample(AFTER, rng.choice((0, 1, 1, 2, 3))))
    text = f"{opener}{body} {after}".strip()
    if rng.random() < 0.2:
        text += f" [shares {rng.choice(CAPTIONS)}]"
    return text


def conversation(rng: random.Random) -> tuple[tuple[str, str], list[Turn]]:
    """Two speakers over 2-4 dated sessions of 3-7 turns; about half the turns state a fact."""
    a, b = rng.sample(SPEAKERS, 2)
    when = datetime(2021, 1, 1, 10, tzinfo=UTC) + timedelta(days=rng.randrange(1300), minutes=rng.randrange(600))
    turns: list[Turn] = []
    used: set[str] = set()
    for session in range(1, rng.randint(2, 4) + 1):
        speaker = rng.choice((a, b))
        for i in range(rng.randint(3, 7)):
            other = b if speaker == a else a
            if rng.random() < 0.55:
                body, facts = _fact_turn(rng, speaker, when.date(), used)
                text = _wrap(rng, body, other)
            else:
                text, facts = rng.choice(FILLERS).format(o=other), []
                if rng.random() < 0.3:
                    text += " " + rng.choice(AFTER)
            turns.append(Turn(f"D{session}:{i + 1}", speaker, f"{speaker}: {text}", when + timedelta(seconds=i),
                              session, facts))
            speaker = other
        when += timedelta(days=rng.randint(3, 40))
    return (a, b), turns


@dataclass(frozen=True)
class DialogueRow:
    """A question over recalled turns (best first), its answer, and where the evidence sits (0: none)."""

    turns: tuple[Turn, ...]
    question: str
    answer: str
    target_rank: int
    one_shot: OneShot


def _lines(rng: random.Random, evidence: list[Turn], turns: list[Turn], k: int) -> list[Turn]:
    rest = [t for t in turns if t not in evidence]
    rng.shuffle(rest)
    lines = evidence + rest[: max(0, k - len(evidence))]
    if rng.random() < 0.5:
        rng.shuffle(lines)
    return lines


def dialogue_row(rng: random.Random) -> DialogueRow:
    """One question: a span, a date, a list, or an abstention (someone else said it / not there)."""
    shot = DIALOGUE_ONE_SHOT if rng.random() < 0.8 else DEFAULT_ONE_SHOT
    k = rng.choice((2, 3, 3, 3, 4))
    while True:
        (a, b), turns = conversation(rng)
        facts = [(t, f) for t in turns for f in t.facts]
        if not facts:
            continue
        kind = rng.choices(("span", "list", "other", "absent"), weights=(0.66, 0.1, 0.16, 0.08))[0]
        if kind == "span":
            asked = [f.question for _, f in facts]
            unique = [(t, f) for t, f in facts if asked.count(f.question) == 1]
            if not unique:
                continue
            turn, fact = rng.choice(unique)
            lines = _lines(rng, [turn], turns, k)
            return DialogueRow(tuple(lines), fact.question, fact.answer, lines.index(turn) + 1, shot)
        if kind == "list":
            who = rng.choice((a, b))
            topics: dict[str, list[tuple[Turn, Fact]]] = {}
            for t, f in facts:
                if f.topic and t.speaker == who:
                    topics.setdefault(f.topic, []).append((t, f))
            many = {tp: v for tp, v in topics.items() if len(v) >= 2}
            if not many:
                continue
            topic = rng.choice(sorted(many))
            items = many[topic][:3]
            lines = _lines(rng, [t for t, _ in items], turns, max(k, len(items)))
            question = {"hobby": f"What hobbies has {who} taken up?", "outing": f"What events has {who} been to?",
                        "trip": f"Where has {who} travelled?", "pet": f"What pets does {who} have?",
                        "gift": f"What presents did {who} get?"}[topic]
            return DialogueRow(tuple(lines), question, ", ".join(f.value for _, f in items),
                               min(lines.index(t) for t, _ in items) + 1, shot)
        if kind == "other":
            turn, fact = rng.choice(facts)
            other = b if turn.speaker == a else a
            question = fact.question.replace(turn.speaker, other)
            answered = {f.question for t, f in facts}
            if question in answered:
                continue
            return DialogueRow(tuple(_lines(rng, [turn], turns, k)), question, ABSTAIN, 0, shot)
        # something nobody in the conversation talked about (no turn of that kind at all)
        unused = sorted(set(range(FRAMES)) - {f.frame for _, f in facts})
        if not unused:
            continue
        stranger = rng.choice([n for n in SPEAKERS if n not in (a, b)])
        _, missing = _fact_turn(rng, rng.choice((a, b, a, b, stranger)), turns[-1].when.date(), set(), rng.choice(unused))
        return DialogueRow(tuple(_lines(rng, [], turns, k)), rng.choice(missing).question, ABSTAIN, 0, shot)


def pack_turns(row: DialogueRow, rng: random.Random, *, count: TokenCounter | None = None,
               max_mem_tokens: int = 128) -> tuple[str, bool]:
    """The row's turns as packed memory text, and whether every evidence turn survived the token budget."""
    packer = Packer(PackSettings(max_mem_tokens=max_mem_tokens, include_slots=rng.random() < 0.5, redact_pii=False),
                    token_counter=count)
    traces = [
        Trace(id=t.id, namespace="train", text=t.text, slots={"speaker": t.speaker, "session": str(t.session)},
              source=SourcePointer(), created_at=t.when, pinned=False, gate_score=1.0)
        for t in row.turns
    ]
    packed = packer.pack(traces)
    kept = row.answer == ABSTAIN or (len(packed.trace_ids) >= row.target_rank and not (
        packed.truncated and len(packed.trace_ids) == 1 and row.target_rank == 1))
    if row.answer != ABSTAIN and "," in row.answer:
        kept = kept and all(v in packed.text for v in row.answer.split(", "))
    return packed.text, kept

"""The soak's traffic and its ground truth.

:class:`Workload` makes events for a namespace: facts from four domains (desks,
orders, meetings and keyed preferences that later versions replace), each with
slots, a cue and the should-remember ``label``; chit-chat the gate should drop;
and clutter (build-log lines full of fresh numbers) that the gate lets through,
for spikes. Normal events carry 40-220 observed context tokens (the conversation
around them); clutter carries 5, which is what makes it a clutter spike.

:class:`Ledger` is the soak's record of every acknowledged write that should
still be stored: a hash of the text and slots as the store keeps them (PII
redacted), pin state, expiry and caller key. Entries leave it only when the
signed provenance log says why (see ``soak.__init__``).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from hei_nw_plugin.pack import redact

_SYL = ("ka", "lo", "mi", "ren", "dor", "va", "sel", "tho", "bri", "an", "quen", "fa", "lu", "mar", "ost", "pe", "zi", "gul")
_CITIES = ("Lisbon", "Oslo", "Tallinn", "Porto", "Ghent", "Turku", "Bergen", "Graz", "Leuven", "Aarhus", "Split", "Cork")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_TOPICS = ("budget", "design", "security", "hiring", "roadmap", "pricing", "launch", "audit", "vendor", "backlog")
_DRINKS = ("green tea", "espresso", "oat latte", "rooibos", "sparkling water", "black coffee", "chai", "matcha")
_CHAT = (
    "ok thanks, sounds good", "haha yes totally", "sure, see you later", "hello there, how are you doing today",
    "yeah I think so too", "cool, that works for me", "great, thanks a lot", "no worries at all",
    "hmm let me think about it", "good morning everyone", "oh nice, glad to hear that", "alright, talk soon",
    "right, makes sense", "I guess we will see", "that is pretty funny actually", "okay, I will keep that in mind maybe",
)
DOMAINS = ("desk", "order", "meeting", "pref")
_CLUTTER = (
    "Build {a} failed on runner {b} with exit code 0x{h}", "Job {h} retried {a} times on node {n}-{b}",
    "Cache key {h} evicted by worker {n} at offset {a}", "Sync {a}: {n} pushed commit {h} to branch {m}",
    "Ticket {a} reassigned from {n} to {m} (ref {h})", "Sensor {n}{b} reported {a} at checksum {h}",
)


def fingerprint(text: str, slots: dict[str, Any]) -> str:
    """sha256 of the text and slots exactly as the store keeps them (PII redacted)."""
    red = {k: redact(v) if isinstance(v, str) else v for k, v in slots.items()}
    return hashlib.sha256(json.dumps([redact(text), red], sort_keys=True).encode()).hexdigest()


@dataclass
class Fact:
    """A generated event with what the soak needs to check it later."""

    event: dict[str, Any]
    cue: str | None
    domain: str


class Workload:
    """Seeded event generator (one per soak)."""

    def __init__(self, seed: int, *, ttl_share: float, ttl_s: tuple[float, float], pin_share: float) -> None:
        self.rng = np.random.default_rng(seed)
        self.ttl_share = ttl_share
        self.ttl_s = ttl_s
        self.pin_share = pin_share
        self._n = 0
        self._people: dict[str, list[str]] = {}

    def _name(self) -> str:
        r = self.rng
        return "".join(_SYL[int(i)] for i in r.integers(0, len(_SYL), size=int(r.integers(2, 4)))).capitalize()

    def _person(self, ns: str) -> str:
        people = self._people.setdefault(ns, [])
        if len(people) < 40 or self.rng.random() < 0.1:
            people.append(self._name())
            return people[-1]
        return people[int(self.rng.integers(0, len(people)))]

    def _context(self) -> int:
        return int(self.rng.integers(40, 221))

    def fact(self, ns: str) -> Fact:
        r = self.rng
        self._n += 1
        n = self._n
        domain = DOMAINS[int(r.integers(0, len(DOMAINS)))]
        who = self._person(ns)
        key = None
        if domain == "desk":
            room, floor = int(r.integers(100, 999)), int(r.integers(1, 30))
            text, cue = f"Remember: {who}'s desk is in room {room} on floor {floor}.", f"Where is {who}'s desk?"
            slots: dict[str, Any] = {"who": who, "room": str(room), "floor": str(floor)}
        elif domain == "order":
            oid, city, day = f"{n:05d}{int(r.integers(10, 99))}", _CITIES[int(r.integers(0, len(_CITIES)))], _DAYS[int(r.integers(0, 6))]
            text, cue = f"Order {oid} for {who} ships from {city} on {day}.", f"When does order {oid} ship?"
            slots = {"order": oid, "city": city, "day": day}
        elif domain == "meeting":
            topic, day, hour = _TOPICS[int(r.integers(0, len(_TOPICS)))], _DAYS[int(r.integers(0, 6))], int(r.integers(8, 18))
            text, cue = (f"The {topic} review with {who} is on {day} at {hour}:00 in room {n % 97 + 1}.",
                         f"When is the {topic} review with {who}?")
            slots = {"topic": topic, "who": who, "day": day, "hour": str(hour)}
        else:  # a keyed preference: a later one for the same person replaces it (newest wins)
            drink = _DRINKS[int(r.integers(0, len(_DRINKS)))]
            text, cue = f"From now on {who} prefers {drink} in the morning.", f"What does {who} drink in the morning?"
            slots = {"who": who, "attribute": "morning drink", "value": drink}
            key = f"pref:{who}"
        ev: dict[str, Any] = {"text": text, "slots": slots, "label": True, "context_tokens": self._context(),
                              "metadata": {"soak": n, "domain": domain}}
        if key is not None:
            ev["key"] = key
        if r.random() < self.pin_share:
            ev["pin"] = True
        elif r.random() < self.ttl_share:
            ev["ttl_s"] = float(r.uniform(*self.ttl_s))
        return Fact(ev, cue, domain)

    def chat(self) -> Fact:
        text = _CHAT[int(self.rng.integers(0, len(_CHAT)))]
        return Fact({"text": text, "label": False, "context_tokens": self._context()}, None, "chat")

    def clutter(self) -> Fact:
        """A tool-output line full of fresh ids and names: the gate finds it surprising and novel, so it gets written."""
        r = self.rng
        a, b = (int(x) for x in r.integers(10_000, 99_999, size=2))
        h = "".join("0123456789abcdef"[int(i)] for i in r.integers(0, 16, size=8))
        text = _CLUTTER[int(r.integers(0, len(_CLUTTER)))].format(a=a, b=b, h=h, n=self._name(), m=self._name())
        return Fact({"text": text, "label": False, "context_tokens": 5}, None, "clutter")

    def burst(self, ns: str, size: int, fact_share: float) -> list[Fact]:
        return [self.fact(ns) if self.rng.random() < fact_share else self.chat() for _ in range(size)]


@dataclass(slots=True)
class Entry:
    """One acknowledged write the store must still hold (until the provenance log says why not)."""

    ns: str
    fp: str
    pinned: bool
    expires_at: float | None  # lower bound: write call start + TTL (the engine's clock reads later)
    expires_by: float | None  # upper bound: write call end + TTL
    key: str | None
    cue: str | None
    soak_id: int


class Ledger:
    """Live acknowledged writes by trace id, keyed writes by (namespace, key), recent removals."""

    def __init__(self) -> None:
        self.live: dict[str, Entry] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.requested_deletes: set[str] = set()
        self.superseded: set[str] = set()  # ids a later keyed write replaced
        self.removed: deque[tuple[str, str]] = deque(maxlen=5000)  # (ns, id): must stay absent

    def add(self, tid: str, entry: Entry) -> None:
        if entry.key is not None:
            old = self.by_key.get((entry.ns, entry.key))
            if old is not None and old != tid:
                self.superseded.add(old)
            self.by_key[(entry.ns, entry.key)] = tid
        self.live[tid] = entry

    def drop(self, tid: str) -> Entry | None:
        e = self.live.pop(tid, None)
        if e is not None:
            if e.key is not None and self.by_key.get((e.ns, e.key)) == tid:
                del self.by_key[(e.ns, e.key)]
            self.removed.append((e.ns, tid))
        self.requested_deletes.discard(tid)
        self.superseded.discard(tid)
        return e

"""The requests of the tenant-isolation fuzz (:mod:`.tenants`): one tenant's key, the other tenant's data.

Every case is sent with one tenant's API key (the attacker) and aims at the other (the
victim): the victim's trace ids in paths and MCP arguments (as they are, re-cased, padded,
with path tricks), its user names and namespace-looking strings in ``X-HEI-User``,
``?user=`` and body ``user`` fields (``victim/alice``, ``../victim/alice``, ``%2F``, a
fullwidth solidus, ...), its caller keys and slot values in writes and ``where`` filters, its
secret words in cues and prompts, its consolidation job ids, its adapter's model name.
Nothing the attacker stores (events, chat turns) contains a victim secret, so a secret in an
answer can only have come from the victim's memory.

The oracle of one answer (:func:`leaks`): it holds no secret of the victim (the random
canary word of each victim trace, its trace ids) that the request did not itself contain (an
error message may echo the id that was asked for). Whole-store oracles
(the victim's rows unchanged, no namespace outside the two tenants, consolidation jobs
scoped to their tenant, the generation backend never sent a victim secret) are in
:mod:`.tenants`.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

USERS = ("alice", "bob", "default")
KNOWN_ROUTES = frozenset({
    "POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models", "POST /v1/memory/write", "POST /v1/memory/recall",
    "GET /v1/memory/traces", "GET /v1/memory/traces/{trace_id}", "DELETE /v1/memory/traces/{trace_id}",
    "POST /v1/memory/traces/{trace_id}/pin", "DELETE /v1/memory/traces/{trace_id}/pin", "GET /v1/memory/users",
    "POST /v1/memory/verify", "GET /v1/memory/stats", "POST /v1/memory/consolidate", "GET /v1/memory/consolidate/{job_id}",
    "GET /healthz", "GET /readyz", "GET /metrics",
})
"""Routes :func:`build_case` knows how to aim at a victim; the fuzz fails on a route of the app outside this set."""
SAFE_WORDS = ("amber", "lantern", "harbour", "violin", "pepper", "quartz", "meadow", "cobalt", "falcon", "ginger", "hollow",
              "ivory", "kettle", "lilac", "marble", "nectar", "orchid", "pebble", "raven", "saffron", "timber", "willow")


@dataclass
class TenantData:
    """What one tenant stored through the API, and the secrets an answer to the other tenant must never hold."""

    tenant: str
    key: str
    trace_ids: list[str] = field(default_factory=list)
    ext_keys: list[str] = field(default_factory=list)
    canaries: list[str] = field(default_factory=list)  # one random word per trace, in its text and a slot
    slot_values: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)

    @property
    def secrets(self) -> list[str]:
        # Caller keys are names, not data: the attacker writes its own traces under the victim's key names.
        return self.canaries + self.trace_ids


def canary() -> str:
    return "cnry" + secrets.token_hex(8)


def seed_events(tenant: str, user: str, n: int, rng: random.Random) -> tuple[list[dict[str, Any]], list[str]]:
    """``n`` events of ``tenant``'s ``user``, each with its own canary word in text, slot and caller key."""
    events, words = [], []
    for i in range(n):
        word = canary()
        words.append(word)
        events.append({"text": f"{tenant} {user} note {i}: the {rng.choice(SAFE_WORDS)} code is {word}",
                       "slots": {"who": f"{user}-{word[:8]}", "code": word, "place": rng.choice(SAFE_WORDS)},
                       "key": f"key-{secrets.token_hex(6)}" if i % 2 == 0 else None, "pin": i % 3 == 0, "force": True})
    return events, words


def user_variants(victim: str, rng: random.Random) -> str | None:
    """A user field that tries to name the victim's namespace."""
    u = rng.choice(USERS)
    return rng.choice([
        None, u, f"{victim}/{u}", f"../{victim}/{u}", f"{victim}%2F{u}", f"/{victim}/{u}", f"{victim}", f"{victim}/",
        f"{victim}\u2215{u}", f"{victim}\uff0f{u}", f"{victim}/{u}/..", f"./../../{victim}/{u}", f" {victim}/{u}",
        f"{victim.upper()}/{u}", "", "*", "%", f"{u}\u200b", "a" * 129,
    ])


def header_sendable(value: str) -> bool:
    """Whether HTTP/1.1 can carry ``value`` as a header value as it is (h11 refuses leading or trailing
    whitespace, control characters and non-ASCII); a variant that cannot goes in the query or body instead."""
    return value.isascii() and value == value.strip() and all(" " <= c < "\x7f" for c in value)


def id_variants(tid: str, rng: random.Random) -> str:
    """A path segment that tries to name the victim's trace."""
    return rng.choice([tid, tid, tid, tid.upper(), f" {tid}", f"{tid}%20", f"{tid}%2F..", f"..%2F{tid}",
                       f"{tid}?user=x", f"{tid}%3Fuser%3Dx", tid[:-1], tid + "0"])


def _safe_text(rng: random.Random) -> str:
    return "attacker note: the " + " ".join(rng.sample(SAFE_WORDS, 4))


@dataclass
class Case:
    """One HTTP request: what it aims at and how it is sent."""

    route: str  # "METHOD /path/{template}"
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    victim_id: str | None = None  # the victim trace the path names (its answer must not be 2xx)

    @property
    def sent(self) -> str:
        """Everything the request carries, for telling an echo from a leak."""
        return " ".join([self.path, json.dumps(self.headers), json.dumps(self.params), json.dumps(self.body, default=str)])


def _with_user(case: Case, victim: str, rng: random.Random, *, body_user: bool) -> Case:
    for where in ("header", "query", "body"):
        if rng.random() < 0.5:
            u = user_variants(victim, rng)
            if u is None:
                continue
            if where == "header" and header_sendable(u):
                case.headers["X-HEI-User"] = u
            elif where == "query":
                case.params["user"] = u
            elif where == "body" and body_user and isinstance(case.body, dict):
                case.body["user"] = u
    return case


def build_case(route: str, attacker: TenantData, victim: TenantData, rng: random.Random, *, model: str,
               victim_adapter: str) -> Case:
    """One request for ``route`` with ``attacker``'s key aimed at ``victim``'s data."""
    method, template = route.split(" ", 1)
    vid = rng.choice(victim.trace_ids) if victim.trace_ids and rng.random() < 0.85 else \
        rng.choice(attacker.trace_ids or ["0" * 28])
    path = template.replace("{trace_id}", id_variants(vid, rng)).replace(
        "{job_id}", rng.choice(victim.job_ids + attacker.job_ids or ["cons_0"]))
    case = Case(route=route, method=method, path=path, headers={"Authorization": f"Bearer {attacker.key}"},
                victim_id=vid if "{trace_id}" in template and vid in victim.trace_ids else None)
    cue_word = rng.choice(victim.canaries) if victim.canaries else "nothing"
    if template == "/v1/memory/write":
        ev = {"text": _safe_text(rng), "force": True, "key": rng.choice(victim.ext_keys + [None]) if victim.ext_keys else None,
              "slots": {"who": rng.choice(victim.slot_values or ["x"]), "place": rng.choice(SAFE_WORDS)}}
        case.body = {"events": [ev, dict(ev, text=_safe_text(rng), key=None)]} if rng.random() < 0.3 else {"event": ev}
    elif template == "/v1/memory/recall":
        case.body = {"cue": rng.choice([f"what is the code {cue_word}", {"text": "code", "slots": {"code": cue_word}},
                                        f"{victim.tenant} alice note"]),
                     "k": rng.choice([5, 256]), "where": rng.choice([None, {"code": cue_word}, {"who": rng.choice(
                         victim.slot_values or ["x"])}])}
    elif template == "/v1/memory/traces" and method == "GET":
        case.params = {"limit": "1000", "offset": "0"}
    elif template == "/v1/memory/consolidate":
        case.body = {"users": [rng.choice(USERS), f"../{victim.tenant}/alice", f"{victim.tenant}/alice"],
                     "steps": 1, "replay_size": 1}
    elif template in ("/v1/chat/completions", "/v1/completions"):
        mode = rng.choice(["B0", "B1", "B1", "B2", "B3"])
        chosen = rng.choice([model, model, victim_adapter, None])
        body: dict[str, Any] = {"model": chosen, "hei_mode": mode, "max_tokens": 4, "stream": rng.random() < 0.3}
        # No canary here: B1 writes the user's turn into the attacker's own memory, where later answers would show it.
        question = f"What is the {victim.tenant} alice note code? Tell me about {victim.tenant}."
        if template == "/v1/chat/completions":
            body["messages"] = [{"role": "user", "content": question}]
            body["hei_remember"] = False
        else:
            body["prompt"] = question
        case.body = {k: v for k, v in body.items() if v is not None}
    return _with_user(case, victim.tenant, rng, body_user=template not in ("/v1/memory/consolidate",))


def leaks(answer: str, victim: TenantData, sent: str) -> list[str]:
    """The victim's secrets in ``answer`` that the request (``sent``) did not carry itself."""
    return [s for s in victim.secrets if s in answer and s not in sent]


def mcp_calls(attacker: TenantData, victim: TenantData, rng: random.Random, n: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` MCP tool calls (or trace resource reads, tool name 'resource') aimed at ``victim``."""
    out: list[tuple[str, dict[str, Any]]] = []
    for _ in range(n):
        vid = rng.choice(victim.trace_ids)
        word = rng.choice(victim.canaries)
        tool = rng.choice(["remember", "recall", "recall", "forget", "pin", "stats", "verify", "resource", "resource"])
        if tool == "remember":
            args: dict[str, Any] = {"text": _safe_text(rng), "force": True, "key": rng.choice(victim.ext_keys),
                                    "slots": {"who": rng.choice(victim.slot_values)}}
        elif tool == "recall":
            args = {"cue": rng.choice([f"what is the code {word}", {"text": "code", "slots": {"code": word}}]),
                    "k": 256, "where": rng.choice([None, {"code": word}])}
            args = {k: v for k, v in args.items() if v is not None}
        elif tool in ("forget", "pin", "resource"):
            args = {"trace_id": id_variants(vid, rng) if tool == "resource" else rng.choice([vid, vid.upper(), f" {vid}"])}
            if tool == "pin":
                args["pinned"] = rng.random() < 0.5
        else:
            args = {}
        out.append((tool, args))
    return out

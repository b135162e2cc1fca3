"""Tenant isolation under attack: the HTTP API and the MCP endpoint, two tenants' keys, 0 reads, writes or deletes across.

``hei-nw reliability tenants --cases 3000 --mcp-calls 400 --out reports/reliability/tenants.json``

The real server (:func:`server.app.create_app`, the MCP endpoint mounted in it) runs under
uvicorn on 127.0.0.1 over a SQLite store, with a recording OpenAI-compatible stand-in for
vLLM. Two tenants store traces through the API, in three users each, every trace holding a
random canary word. Then each tenant in turn attacks the other (:mod:`.tenant_attack`):
every route of the published app, and every MCP tool and the trace resource, is called
with the attacker's key and the victim's trace ids, user names, namespace-looking strings,
caller keys, canary words and job ids. The victim makes no call during its turn. Required:

* no answer holds a victim secret the request did not carry, and no request naming a victim
  trace gets a 2xx answer (MCP: no successful forget, pin or trace read of a victim trace);
* the victim's rows (ciphertext, key, pin, expiry, recall counts) and its provenance records
  are byte-identical after the attacker's turn; every namespace belongs to one of the two tenants;
* every consolidation job covers only its own tenant's namespaces, and the generation backend
  never received a victim secret or the victim's adapter name from an attacker's request;
* every route of the app is covered (a route added later fails the check until it is);
* rate limits hold: a key over its burst gets 429 with Retry-After (HTTP and MCP share its
  bucket) while the other tenant's key still gets 200, and failed authentications from one
  address turn into 429 without locking out a valid key;
* payload limits hold: a body over the limit (declared or streamed), a text over the limit,
  too many events or slots are refused with 413/422 and store nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import random
import socket
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from hei_nw_eval.reliability.faults import EmbedderName, load_embedder, write_json
from hei_nw_eval.reliability.tenant_attack import (
    KNOWN_ROUTES,
    USERS,
    Case,
    TenantData,
    build_case,
    header_sendable,
    leaks,
    mcp_calls,
    seed_events,
    user_variants,
)
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import Embedder
from hei_nw_plugin.memory import HEIMemory

MODEL = "tenant-fuzz-model"
TENANTS = ("acme", "globex")
NOT_FUZZED = {"GET /openapi.json", "GET /docs", "GET /docs/oauth2-redirect", "GET /redoc"}
"""Routes without memory behind them (the schema and its viewers)."""
PER_USER = 4


# ------------------------------------------------------------------------------------------ servers
class _Backend:
    """A stand-in for vLLM that answers every generation and records what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[int, str]] = []  # (case number, request body)
        self.case = -1

    def app(self) -> Any:
        from fastapi import FastAPI, Request
        from fastapi.responses import StreamingResponse

        app = FastAPI()

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {}

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "fuzz"}]}

        @app.post("/v1/load_lora_adapter")
        @app.post("/v1/unload_lora_adapter")
        async def lora() -> dict[str, str]:
            return {}

        @app.post("/v1/{kind}")
        async def generate(kind: str, request: Request) -> Any:
            raw = (await request.body()).decode("utf-8", "replace")
            self.received.append((self.case, raw))
            chunk = {"id": "x", "object": f"{kind}.chunk", "created": 0, "model": MODEL,
                     "choices": [{"index": 0, "delta": {"content": "ok"}, "text": "ok", "finish_reason": "stop"}]}
            if '"stream": true' in raw or '"stream":true' in raw:
                async def events() -> Any:
                    yield f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
                return StreamingResponse(events(), media_type="text/event-stream")
            return {"id": "x", "object": kind, "created": 0, "model": MODEL,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "text": "ok",
                                 "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

        return app


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on a free port of 127.0.0.1 (lifespan included); yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class _Empty:
    """What a consolidation that replays nothing returns (the fuzz asks which namespaces a job covers, not for training)."""

    status, folder, version = "empty", None, None

    def to_dict(self) -> dict[str, Any]:
        return {"status": "empty"}


@contextlib.contextmanager
def _server(data: Path, emb: Embedder, limits: dict[str, Any]) -> Iterator[tuple[str, Any, HEIMemory, _Backend, dict[str, str]]]:
    """The real app (MCP mounted) on a SQLite store in ``data``; yields (URL, app, memory, backend, tenant -> key)."""
    import httpx

    from server.app import create_app
    from server.auth import hash_key, new_api_key
    from server.settings import ServerSettings

    keys = {t: new_api_key() for t in TENANTS}
    backend = _Backend()
    with _serve(backend.app()) as backend_url:
        settings = ServerSettings.model_validate({
            "api_keys": [{"tenant": t, "hash": hash_key(k)} for t, k in keys.items()],
            "vllm": {"url": backend_url, "served_model_name": MODEL}, "limits": limits})
        mem = HEIMemory(HeiNwSettings.build(store={"data_dir": data}), embedder=emb)
        app = create_app(settings, memory_obj=mem)
        try:
            with _serve(app) as url:
                deadline = time.monotonic() + 60
                while httpx.get(f"{url}/readyz").status_code != 200:
                    if time.monotonic() > deadline:
                        raise RuntimeError("server not ready")
                    time.sleep(0.1)
                st = app.state.hei
                st.consolidation._train = lambda job, config, fresh: _Empty()
                for t in TENANTS:  # as if each tenant had a consolidated adapter: B2/B3 answer with it
                    st.adapters._by_tenant[t] = st.adapters.name_for(t)
                yield url, app, mem, backend, keys
        finally:
            mem.close()


# ------------------------------------------------------------------------------------------ records
@dataclass
class Turn:
    """One tenant attacking the other."""

    attacker: str
    victim: str
    http_cases: int = 0
    mcp_calls: int = 0
    mcp_sessions: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    mcp_outcomes: dict[str, int] = field(default_factory=dict)
    mcp_error_examples: dict[str, str] = field(default_factory=dict)  # the first error text of each tool
    leaks: int = 0  # answers holding a victim secret the request did not carry
    cross_tenant_success: int = 0  # 2xx on a victim trace (HTTP), or a victim trace forgotten, pinned or read (MCP)
    server_errors: int = 0  # 5xx answers
    victim_rows_changed: int = 0
    victim_records_changed: int = 0
    foreign_namespaces: list[str] = field(default_factory=list)
    backend_leaks: int = 0
    backend_victim_adapter: int = 0
    consolidation_foreign_namespaces: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.leaks or self.cross_tenant_success or self.server_errors or self.victim_rows_changed
                    or self.victim_records_changed or self.foreign_namespaces or self.backend_leaks
                    or self.backend_victim_adapter or self.consolidation_foreign_namespaces)


@dataclass
class TenantsReport:
    """``hei-nw reliability tenants`` output."""

    embedder: str
    seed: int
    mcp: str  # 'fuzzed over streamable HTTP', or why not
    routes_covered: list[str]
    routes_uncovered: list[str]
    seeded_traces: dict[str, int]
    turns: list[Turn]
    rate_limits: dict[str, Any]
    payload_limits: dict[str, Any]
    failures: list[str]
    ok: bool


# ------------------------------------------------------------------------------------------ helpers
def _routes(app: Any) -> tuple[list[str], bool]:
    """'METHOD /path' of every route the app publishes in its schema or serves outside its routers, and
    whether the MCP endpoint is among them."""
    out = {f"{m.upper()} {path}" for path, ops in app.openapi()["paths"].items() for m in ops}
    mcp = False
    for r in app.router.routes:
        path = getattr(r, "path", None)
        if path == "/mcp":
            mcp = True
        elif path:
            out |= {f"{m} {path}" for m in (getattr(r, "methods", None) or ["GET"]) if m != "HEAD"}
    return sorted(out - NOT_FUZZED), mcp


def _snapshot(db: Path, tenant: str) -> tuple[dict[str, str], dict[str, int]]:
    """Digest of every row of ``tenant`` (row, data key, replay entry) and its provenance records per namespace."""
    rows: dict[str, str] = {}
    with sqlite3.connect(db) as c:
        for r in c.execute("SELECT t.*, k.kek_id, k.wrapped_dek, q.priority, q.replay_count FROM hei_traces t "
                           "LEFT JOIN hei_trace_keys k ON k.trace_seq = t.seq LEFT JOIN hei_replay_queue q ON q.trace_seq = "
                           "t.seq WHERE t.namespace LIKE ?", (f"{tenant}/%",)):
            rows[str(r[1])] = hashlib.sha256(repr(r).encode()).hexdigest()
        records = dict(c.execute("SELECT namespace, count(*) FROM hei_provenance WHERE namespace LIKE ? GROUP BY namespace",
                                 (f"{tenant}/%",)).fetchall())
    return rows, records


def _seed(client: Any, keys: dict[str, str], rng: random.Random) -> dict[str, TenantData]:
    data = {t: TenantData(tenant=t, key=keys[t]) for t in TENANTS}
    for t, d in data.items():
        auth = {"Authorization": f"Bearer {d.key}"}
        for user in USERS:
            events, words = seed_events(t, user, PER_USER, rng)
            r = client.post("/v1/memory/write", json={"events": events}, headers=auth | {"X-HEI-User": user})
            r.raise_for_status()
            d.trace_ids += [x["trace_id"] for x in r.json()["decisions"]]
            d.canaries += words
            d.ext_keys += [e["key"] for e in events if e["key"]]
            d.slot_values += [e["slots"]["who"] for e in events]
        job = client.post("/v1/memory/consolidate", json={"steps": 1}, headers=auth)
        if job.status_code == 202:  # (a server that lost the tenant's users refuses it: the fuzz then shows why)
            d.job_ids.append(job.json()["id"])
    return data


def _answer_text(r: Any) -> str:
    return r.text + " " + json.dumps(dict(r.headers))


def _http_turn(turn: Turn, client: Any, routes: list[str], attacker: TenantData, victim: TenantData, backend: _Backend,
               cases: int, rng: random.Random, adapter: str) -> dict[int, Case]:
    sent: dict[int, Case] = {}
    statuses: Counter[str] = Counter()
    for i in range(cases):
        route = routes[i % len(routes)] if i < len(routes) else rng.choice(routes)
        case = build_case(route, attacker, victim, rng, model=MODEL, victim_adapter=adapter)
        backend.case = i
        sent[i] = case
        try:
            r = client.request(case.method, case.path, headers=case.headers, params=case.params,
                               json=case.body if case.body is not None else None)
        except Exception as err:  # noqa: BLE001 - a request the client cannot even send (odd bytes in a path)
            statuses[f"client error {type(err).__name__}"] += 1
            continue
        statuses[str(r.status_code)] += 1
        found = leaks(_answer_text(r), victim, case.sent)
        if found:
            turn.leaks += 1
            turn.examples.append(f"{route} {case.path} -> {r.status_code} holds {found[:2]}")
        if case.victim_id is not None and 200 <= r.status_code < 300:
            turn.cross_tenant_success += 1
            turn.examples.append(f"{route} {case.path} -> {r.status_code} on a victim trace")
        if r.status_code >= 500:
            turn.server_errors += 1
            turn.examples.append(f"{route} {case.path} -> {r.status_code}: {r.text[:200]}")
    turn.http_cases = cases
    turn.statuses = dict(sorted(statuses.items()))
    return sent


async def _mcp_turn_async(turn: Turn, url: str, attacker: TenantData, victim: TenantData, rng: random.Random,
                          calls: int) -> None:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client
    from mcp.shared.exceptions import McpError
    from pydantic import AnyUrl

    outcomes: Counter[str] = Counter()
    per_session = 10
    for start in range(0, calls, per_session):
        user = user_variants(victim.tenant, rng)
        headers = {"Authorization": f"Bearer {attacker.key}"}
        if user and header_sendable(user):
            headers["X-HEI-User"] = user
        # Encoded as the HTTP turn's params are: the server reads the variant itself (' globex/alice' was sent raw
        # in a header, which the client refuses to send, and ended the run).
        query = "?" + urlencode({"user": user}) if user and (rng.random() < 0.3 or "X-HEI-User" not in headers) else ""
        async with streamablehttp_client(f"{url}/mcp{query}", headers=headers, timeout=30) as (read, write, _), \
                ClientSession(read, write) as session:
            await session.initialize()
            turn.mcp_sessions += 1
            for tool, args in mcp_calls(attacker, victim, rng, min(per_session, calls - start)):
                sent = json.dumps(args) + json.dumps(headers) + query
                victim_target = args.get("trace_id", "").strip().lower() in {t.lower() for t in victim.trace_ids}
                try:
                    if tool == "resource":
                        res: Any = await session.read_resource(AnyUrl(f"hei-nw://traces/{args['trace_id']}"))
                        ok = True
                    else:
                        res = await session.call_tool(tool, args)
                        ok = not res.isError
                    text = json.dumps(res.model_dump(mode="json"))
                except McpError as err:
                    ok, text = False, str(err)
                outcomes[f"{tool} {'ok' if ok else 'error'}"] += 1
                if not ok:
                    turn.mcp_error_examples.setdefault(tool, f"{json.dumps(args)[:120]} (user {user!r}): {text[:300]}")
                turn.mcp_calls += 1
                if found := leaks(text, victim, sent):
                    turn.leaks += 1
                    turn.examples.append(f"MCP {tool} {args} holds {found[:2]}")
                if ok and victim_target and tool in ("forget", "pin", "resource"):
                    turn.cross_tenant_success += 1
                    turn.examples.append(f"MCP {tool} succeeded on victim trace {args['trace_id']}")
                if not ok and ("internal error" in text or "Traceback" in text):
                    turn.server_errors += 1
                    turn.examples.append(f"MCP {tool} {args}: {text[:200]}")
    turn.mcp_outcomes = dict(sorted(outcomes.items()))


def _after_turn(turn: Turn, mem: HEIMemory, db: Path, before: tuple[dict[str, str], dict[str, int]], app: Any,
                backend: _Backend, sent: dict[int, Case], victim: TenantData, adapter: str, first_backend: int) -> None:
    mem.flush()  # pending recall counts reach the rows before they are compared
    rows, records = _snapshot(db, victim.tenant)
    turn.victim_rows_changed = sum(1 for k in set(before[0]) | set(rows) if before[0].get(k) != rows.get(k))
    turn.victim_records_changed = sum(1 for k in set(before[1]) | set(records) if before[1].get(k) != records.get(k))
    turn.foreign_namespaces = [ns for ns in mem.namespaces(include_empty=True) if ns.split("/", 1)[0] not in TENANTS]
    for case_no, body in backend.received[first_backend:]:
        case = sent.get(case_no)
        carried = case.sent if case is not None else ""
        if leaks(body, victim, carried):
            turn.backend_leaks += 1
            turn.examples.append(f"backend got a victim secret for case {case_no}")
        if f'"{adapter}"' in body:
            turn.backend_victim_adapter += 1
    jobs = app.state.hei.consolidation.jobs.values()
    turn.consolidation_foreign_namespaces = sum(1 for j in jobs for ns in j.namespaces if not ns.startswith(f"{j.tenant}/"))


# ------------------------------------------------------------------------------------------ limits
def _rate_limits(root: Path, emb: Embedder) -> dict[str, Any]:
    import httpx

    limits = {"requests_per_s": 2.0, "burst": 5, "auth_failures_per_s": 1.0, "auth_failure_burst": 5}
    with _server(root / "rate", emb, limits) as (url, _app, _mem, _b, keys), httpx.Client(base_url=url, timeout=30) as c:
        a, b = ({"Authorization": f"Bearer {keys[t]}"} for t in TENANTS)
        t0 = time.monotonic()
        statuses = [c.get("/v1/memory/users", headers=a).status_code for _ in range(20)]
        elapsed = time.monotonic() - t0
        allowed = statuses.count(200)
        bound = limits["burst"] + int(limits["requests_per_s"] * elapsed) + 1
        mcp = c.post("/mcp", headers=a | {"Accept": "application/json, text/event-stream"},
                     json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
        other = [c.get("/v1/memory/users", headers=b).status_code for _ in range(3)]
        over = c.get("/v1/memory/users", headers=a)
        bad = [c.get("/v1/memory/users", headers={"Authorization": f"Bearer hei_wrong{i}"}).status_code for i in range(12)]
        valid_after = c.get("/v1/memory/users", headers=b).status_code
    out = {"limits": limits, "burst_requests": len(statuses), "allowed": allowed, "allowed_bound": bound,
           "refused_429": statuses.count(429), "retry_after_on_429": over.status_code == 429 and "retry-after" in over.headers,
           "mcp_status_after_burst": mcp.status_code, "other_tenant_statuses": other,
           "wrong_key_statuses": dict(Counter(map(str, bad))), "valid_key_after_wrong_keys": valid_after}
    out["ok"] = (allowed <= bound and statuses.count(429) > 0 and out["retry_after_on_429"] and mcp.status_code == 429
                 and other == [200] * 3 and bad.count(429) > 0 and bad[0] == 401 and valid_after == 200)
    return out


def _payload_limits(root: Path, emb: Embedder) -> dict[str, Any]:
    import httpx

    max_body = 65536
    limits = {"requests_per_s": 1e6, "burst": 10**6, "max_body_bytes": max_body}
    with _server(root / "payload", emb, limits) as (url, _app, mem, _b, keys), httpx.Client(base_url=url, timeout=30) as c:
        auth = {"Authorization": f"Bearer {keys['acme']}", "Content-Type": "application/json"}
        before = mem.store.verify(deep=False)[0]
        big = json.dumps({"event": {"text": "x" * (max_body + 10), "force": True}}).encode()

        def streamed() -> Iterator[bytes]:
            for i in range(0, len(big), 4096):
                yield big[i:i + 4096]

        lim = mem.settings.limits
        checks = {
            "declared body over the limit": c.post("/v1/memory/write", content=big, headers=auth).status_code,
            "streamed body over the limit": c.post("/v1/memory/write", content=streamed(), headers=auth).status_code,
            "MCP body over the limit": c.post("/mcp", content=big, headers=auth).status_code,
            "text over max_text_chars": c.post("/v1/memory/write", headers=auth, json={"event": {
                "text": "y" * (lim.max_text_chars + 1), "force": True}}).status_code,
            "257 events in one batch": c.post("/v1/memory/write", headers=auth, json={"events": [
                {"text": f"event {i}", "force": True} for i in range(257)]}).status_code,
            "slots over max_slots": c.post("/v1/memory/write", headers=auth, json={"event": {
                "text": "many slots", "force": True, "slots": {f"s{i}": i for i in range(lim.max_slots + 1)}}}).status_code,
            "cue over max_text_chars": c.post("/v1/memory/recall", headers=auth, json={
                "cue": "z" * (lim.max_text_chars + 1)}).status_code,
        }
        after = mem.store.verify(deep=False)[0]
    expected = {"declared body over the limit": 413, "streamed body over the limit": 413, "MCP body over the limit": 413,
                "text over max_text_chars": 413, "257 events in one batch": 422, "slots over max_slots": 413,
                "cue over max_text_chars": 413}
    return {"max_body_bytes": max_body, "statuses": checks, "expected": expected,
            "provenance_records_before_after": [before, after],
            "ok": checks == expected and before == after}


# ------------------------------------------------------------------------------------------ run
def run(*, cases: int = 3000, mcp_calls_n: int = 400, embedder: EmbedderName = "minilm", seed: int = 0,
        out: Path | None = None, work_dir: Path | None = None, log: Callable[[str], None] = lambda _m: None) -> TenantsReport:
    """Both tenants attack each other, then the rate and payload limits are pushed; see the module docstring.

    ``cases`` and ``mcp_calls_n`` are per attacking tenant.
    """
    rng = random.Random(seed)
    emb = load_embedder(embedder)
    sdk_log = logging.getLogger("mcp")
    sdk_level = sdk_log.level
    sdk_log.setLevel(logging.CRITICAL)  # the SDK logs every session the client closes as an error
    try:
        return _run(cases, mcp_calls_n, emb, embedder, seed, rng, out, work_dir, log)
    finally:
        sdk_log.setLevel(sdk_level)


def _run(cases: int, mcp_calls_n: int, emb: Embedder, embedder: str, seed: int, rng: random.Random, out: Path | None,
         work_dir: Path | None, log: Callable[[str], None]) -> TenantsReport:
    import httpx

    turns: list[Turn] = []
    with tempfile.TemporaryDirectory(prefix="hei-tenants-", dir=work_dir) as tmp:
        root = Path(tmp)
        high = {"requests_per_s": 1e6, "burst": 10**6, "auth_failures_per_s": 1e6, "auth_failure_burst": 10**6}
        with _server(root / "fuzz", emb, high) as (url, app, mem, backend, keys), \
                httpx.Client(base_url=url, timeout=60) as client:
            everything, has_mcp = _routes(app)
            routes = [r for r in everything if r in KNOWN_ROUTES]
            try:
                import mcp  # noqa: F401
                mcp_state = "fuzzed over streamable HTTP (server.mcp, mounted at /mcp)" if has_mcp else \
                    "not run: the app serves no /mcp route"
            except ImportError:
                mcp_state, has_mcp = "not run: the mcp extra is not installed", False
            data = _seed(client, keys, rng)
            db = mem.settings.store.data_dir / "traces.db"
            for attacker_name, victim_name in (TENANTS, TENANTS[::-1]):
                attacker, victim = data[attacker_name], data[victim_name]
                turn = Turn(attacker=attacker_name, victim=victim_name)
                adapter = app.state.hei.adapters.name_for(victim_name)
                mem.flush()
                before = _snapshot(db, victim_name)
                first_backend = len(backend.received)
                sent = _http_turn(turn, client, routes, attacker, victim, backend, cases, rng, adapter)
                if has_mcp and mcp_calls_n > 0:
                    asyncio.run(_mcp_turn_async(turn, url, attacker, victim, rng, mcp_calls_n))
                _after_turn(turn, mem, db, before, app, backend, sent, victim, adapter, first_backend)
                log(f"  {attacker_name} -> {victim_name}: {turn.http_cases} HTTP cases {turn.statuses}, {turn.mcp_calls} "
                    f"MCP calls; leaks {turn.leaks}, cross-tenant successes {turn.cross_tenant_success}")
                turns.append(turn)
        seeded = {t: len(d.trace_ids) for t, d in data.items()}
        rate = _rate_limits(root, emb)
        payload = _payload_limits(root, emb)
    report = TenantsReport(embedder=embedder, seed=seed, mcp=mcp_state, routes_covered=routes,
                           routes_uncovered=[r for r in everything if r not in KNOWN_ROUTES], seeded_traces=seeded, turns=turns, rate_limits=rate,
                           payload_limits=payload, failures=[], ok=False)
    checks = {f"{t.attacker} reached {t.victim}'s memory": t.failed for t in turns}
    checks |= {"rate limits did not hold": not rate["ok"], "payload limits did not hold": not payload["ok"],
               "the MCP endpoint was not fuzzed": not has_mcp,
               "a route of the app is not fuzzed": bool(report.routes_uncovered)}
    report.failures = [what for what, bad in checks.items() if bad]
    report.ok = not report.failures
    if out is not None:
        write_json(report, out)
    return report


def summary(r: TenantsReport) -> str:
    out = [f"tenants: {'ok' if r.ok else 'FAILED: ' + '; '.join(r.failures)}",
           f"  {len(r.routes_covered)} routes, MCP {r.mcp}; seeded {r.seeded_traces}"]
    for t in r.turns:
        out += [(f"  {t.attacker} -> {t.victim}: {t.http_cases} HTTP cases {t.statuses}; {t.mcp_calls} MCP calls in "
                 f"{t.mcp_sessions} sessions {t.mcp_outcomes}"),
                (f"    leaks {t.leaks}, cross-tenant successes {t.cross_tenant_success}, 5xx {t.server_errors}, victim rows "
                 f"changed {t.victim_rows_changed}, victim records changed {t.victim_records_changed}, foreign namespaces "
                 f"{len(t.foreign_namespaces)}, backend leaks {t.backend_leaks}, victim adapter used "
                 f"{t.backend_victim_adapter}, consolidation outside tenant {t.consolidation_foreign_namespaces}")]
        out += [f"    e.g. {e}" for e in t.examples[:5]]
    rl, pl = r.rate_limits, r.payload_limits
    out.append(f"  rate limits {'ok' if rl['ok'] else 'FAILED'}: {rl['allowed']} of {rl['burst_requests']} allowed (bound "
               f"{rl['allowed_bound']}), MCP after the burst {rl['mcp_status_after_burst']}, other tenant "
               f"{rl['other_tenant_statuses']}, wrong keys {rl['wrong_key_statuses']}, valid key after them "
               f"{rl['valid_key_after_wrong_keys']}")
    out.append(f"  payload limits {'ok' if pl['ok'] else 'FAILED'}: {pl['statuses']}")
    return "\n".join(out)


def register(subparsers: Any) -> None:
    """Add ``tenants`` under ``hei-nw reliability``."""
    p = subparsers.add_parser("tenants", help="two tenants' keys attack each other's memory over HTTP and MCP")
    p.add_argument("--cases", type=int, default=3000, help="HTTP requests per attacking tenant")
    p.add_argument("--mcp-calls", type=int, default=400, help="MCP tool calls and trace reads per attacking tenant")
    p.add_argument("--embedder", choices=["minilm", "hashing"], default="minilm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("reports/reliability/tenants.json"))
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> None:
    r = run(cases=args.cases, mcp_calls_n=args.mcp_calls, embedder=args.embedder, seed=args.seed, out=args.out,
            log=lambda m: print(m, flush=True))
    print(summary(r))
    print(f"written to {args.out}")
    if not r.ok:
        raise SystemExit(1)

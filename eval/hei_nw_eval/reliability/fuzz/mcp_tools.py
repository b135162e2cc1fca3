"""Suite (d): the MCP tools and the trace resource, called through the SDK's own ClientSession.

The server is the real one (:func:`server.mcp.tools.build_server`) over a MemoryGateway on a SQLite store
in a temporary folder with the hashing embedder; the client is ``mcp``'s ClientSession on the SDK's
in-process transport, driven from hypothesis through an anyio blocking portal. That transport hands
messages over as Python objects, so each case's arguments go through a JSON round trip first (what any
client sends) and each answer must serialise to strict JSON in UTF-8 (what a stdio or HTTP server writes).

Each case calls one of the six tools (or an unknown name) with near-valid arguments (well-formed
events, trace ids of the store, including those of another user and another tenant) mixed with
anything hypothesis can build, or reads a trace resource. The session speaks for ``fuzz/default``; the
store also holds traces of ``fuzz/other`` and ``rival/default``. The properties: every call answers
(a result, or for resources an MCP error), never a protocol error, a hang or a traceback; a tool error
names what is wrong, never an internal error; a tool error changes no stored byte; an answer that
passes is valid against the tool's output schema (the client checks) and never shows another
namespace's trace; the store verifies and the other namespaces' traces are intact at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from hei_nw_eval.reliability.fuzz import common
from hei_nw_eval.reliability.fuzz.common import Tally, anything, known, texts
from hei_nw_eval.reliability.fuzz.engine_api import events
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.errors import require_extra
from hei_nw_plugin.memory import HEIMemory

SESSION = ("fuzz", "default")
FOREIGN = [({"text": "Lorcan's manager is Casimir", "slots": {"who": "Lorcan"}, "pin": True}, "fuzz/other"),
           ({"text": "The rival vault code is hidden under the blue mat", "pin": True}, "rival/default")]
OWN = [{"text": "The spare key hangs behind the kitchen door", "key": "spare-key", "pin": True},
       {"text": "Ada keeps the brass lantern in the blue shed", "slots": {"who": "Ada", "what": "lantern"}, "force": True}]
TOOLS = ["remember", "recall", "forget", "pin", "stats", "verify"]
# A message with one of these is an unexpected exception or a fault, not a caller error (no faults are injected).
NOT_CALLER_ERRORS = ("internal error", "server configuration error", "unavailable", "Traceback")


class _Store:
    """A store, the MCP server over it and a connected ClientSession, with the ids the fuzz knows."""

    def __init__(self, root: Path, n: int, portal: Any) -> None:
        from mcp.shared.memory import create_connected_server_and_client_session

        from server.gateway import MemoryGateway
        from server.mcp.tools import SessionIdentity, build_server
        from server.settings import ServerSettings

        self.dir = root / f"store{n}"
        self.mem = HEIMemory(HeiNwSettings.build(store={"data_dir": self.dir}), embedder=HashingEmbedder(dim=64),
                             persist_index=False)
        self.foreign = {self.mem.write(ev, namespace=ns).trace_id: ns for ev, ns in FOREIGN}
        self.ids = [d.trace_id for d in (self.mem.write(ev, namespace="/".join(SESSION)) for ev in OWN) if d.trace_id]
        self.ids += list(self.foreign)
        settings = ServerSettings()
        gateway = MemoryGateway(self.mem, settings.memory)
        server = build_server(lambda: gateway, SessionIdentity(*SESSION), settings.mcp)
        self._session_cm = portal.wrap_async_context_manager(
            create_connected_server_and_client_session(server, read_timeout_seconds=timedelta(seconds=60)))
        self.session = self._session_cm.__enter__()

    def snap(self) -> dict[str, Any]:
        return common.snapshot(self.dir / "traces.db", self.dir / "keys.json")

    def close(self) -> None:
        self._session_cm.__exit__(None, None, None)
        self.mem.close()


SENTENCES = ["The red kite nests above the mill", "Meeting moved to Friday", "Where is the spare key?", "Who manages Lorcan?"]
EXTRA_KEYS = ["bogus", "user", "namespace", "tenant", "trace"]  # none is an argument of any tool: each must be refused


def _arguments(data: st.DataObject, tool: str, s: _Store) -> Any:
    """Arguments for ``tool``: mostly near-valid, some with a key no tool takes, some arbitrary objects."""
    text = st.one_of(st.sampled_from(SENTENCES), texts)
    slots = st.dictionaries(texts, st.one_of(texts, st.integers(), st.booleans()), max_size=3)
    trace_id = st.one_of(known(s.ids), known(s.ids), texts, anything)
    valid_event = st.fixed_dictionaries({"text": text}, optional={"pin": st.booleans(), "force": st.booleans(), "slots": slots,
                                                                   "key": texts, "reward": st.floats(0, 1)})
    shapes: dict[str, st.SearchStrategy[Any]] = {
        "remember": st.one_of(valid_event, events.map(lambda e: e if isinstance(e, dict) else {"text": e})),
        "recall": st.fixed_dictionaries(
            {"cue": st.one_of(text, st.fixed_dictionaries({}, optional={"text": text, "slots": slots, "bogus": anything}), anything)},
            optional={"k": st.one_of(st.integers(1, 10), st.integers(-3, 300), anything),
                      "where": st.one_of(slots, anything), "max_tokens": st.one_of(st.integers(-5, 5000), anything),
                      "min_similarity": st.one_of(st.floats(-1, 1), st.floats(allow_nan=True, allow_infinity=True), anything)}),
        "forget": st.fixed_dictionaries({"trace_id": trace_id}),
        "pin": st.fixed_dictionaries({"trace_id": trace_id}, optional={"pinned": st.one_of(st.booleans(), anything)}),
        "stats": st.just({}),
        "verify": st.just({}),
    }
    near = shapes.get(tool, st.dictionaries(texts, anything, max_size=3))
    extra = st.tuples(near, st.dictionaries(st.sampled_from(EXTRA_KEYS), anything, min_size=1, max_size=2)).map(
        lambda t: {**t[0], **t[1]} if isinstance(t[0], dict) else t[0])
    # Weights by a drawn index: hypothesis's one_of treats repeated branches as one.
    shape = data.draw(st.sampled_from(["near"] * 6 + ["extra", "arbitrary"]), label="shape")
    return data.draw({"near": near, "extra": extra, "arbitrary": st.dictionaries(texts, anything, max_size=4)}[shape],
                     label="arguments")


def _as_sent(value: Any) -> Any:
    """``value`` as a JSON client would send it (tuples become lists, bytes their repr, NaN stays NaN).

    UnicodeEncodeError for text with lone surrogates: the SDK's client cannot encode those as UTF-8.
    """
    sent = json.dumps(value, default=repr, ensure_ascii=False)
    sent.encode("utf-8")
    return json.loads(sent)


def _serialisable(result: Any) -> str | None:
    """Why ``result`` could not be written as strict UTF-8 JSON, or None."""
    try:
        json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True), allow_nan=False).encode("utf-8")
    except (ValueError, TypeError, UnicodeError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def _names_the_fault(tool: str, message: str) -> bool:
    """A tool error reads 'Error executing tool <tool>: <what is wrong>'; an unknown name 'Unknown tool: <name>'."""
    if tool not in TOOLS:
        return message == f"Unknown tool: {tool}"
    prefix = f"Error executing tool {tool}: "
    return message.startswith(prefix) and bool(message[len(prefix):].strip())


@contextlib.contextmanager
def _quiet_sdk() -> Iterator[None]:
    """The SDK logs a warning per call of an unlisted tool; the fuzz makes thousands on purpose."""
    loggers = [logging.getLogger(name) for name in ("mcp", "client")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _foreign_traces(tool: str, out: dict[str, Any], ns: str) -> list[str]:
    """Namespaces other than the session's that a successful answer shows."""
    if tool == "recall":
        seen = [out.get("namespace")] + [t.get("trace", {}).get("namespace") for t in out.get("traces", [])]
    elif tool in ("remember", "stats"):
        seen = [out.get("namespace")]
    else:
        return []
    return [str(x) for x in seen if x != ns]


def run_mcp(examples: int, *, seed: int = 0, per_store: int = 400) -> common.SuiteResult:
    """Fuzz the MCP tools with about ``examples`` generated calls."""
    try:
        import anyio.from_thread
        from mcp.shared.exceptions import McpError
        from pydantic import AnyUrl, ValidationError
    except ImportError as err:
        raise require_extra(err.name or "mcp", "mcp") from err

    tally = Tally("mcp")
    t0 = time.perf_counter()
    ns = "/".join(SESSION)
    unsendable: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="hei-fuzz-mcp-") as tmp, anyio.from_thread.start_blocking_portal() as portal, \
            _quiet_sdk():
        state: dict[str, Any] = {"store": _Store(Path(tmp), 0, portal), "n": 0}

        def call_tool(s: _Store, tool: str, arguments: Any) -> None:
            before = s.snap()
            try:
                result = portal.call(s.session.call_tool, tool, arguments)
            except McpError as err:
                tally.case(f"protocol error: {tool if tool in TOOLS else 'unknown tool'}", rejected=False)
                tally.fail("protocol_error", tool, str(err.error.message), arguments)
                return
            except RuntimeError as err:  # the client found the structured answer invalid against the output schema
                tally.case(f"crash: {tool}", rejected=False)
                tally.fail("schema", tool, str(err), arguments)
                return
            label = tool if tool in TOOLS else "unknown tool"
            why = _serialisable(result)
            if why is not None:
                tally.fail("unserialisable", label, why, arguments)
            if result.isError:
                tally.case(f"{label}: tool error", rejected=True)
                message = " ".join(getattr(c, "text", "") for c in result.content)
                if any(marker in message for marker in NOT_CALLER_ERRORS) or not _names_the_fault(tool, message):
                    tally.fail("unclear_error", label, message, arguments)
                after = s.snap()
                if after != before:
                    tally.fail("changed_on_reject", label, f"tool error but {common.changed_tables(before, after)} changed", arguments)
                return
            tally.case(f"{label}: ok", rejected=False)
            out = result.structuredContent or {}
            if foreign := _foreign_traces(tool, out, ns):
                tally.fail("foreign_namespace", label, f"answer shows {foreign}", arguments)
            if tool == "remember" and out.get("trace_id"):
                s.ids.append(out["trace_id"])
            if tool == "recall" and isinstance(arguments.get("k"), int) and len(out.get("traces", [])) > arguments["k"]:
                tally.fail("contract", label, f"recall returned {len(out['traces'])} traces for k={arguments['k']}", arguments)

        def read_resource(s: _Store, trace_id: str) -> None:
            try:
                uri = AnyUrl(f"hei-nw://traces/{trace_id}")
                str(uri).encode("utf-8")
            except (ValidationError, UnicodeEncodeError):
                unsendable["resource uri"] = unsendable.get("resource uri", 0) + 1
                return
            before = s.snap()
            try:
                result = portal.call(s.session.read_resource, uri)
            except McpError as err:
                tally.case("resource: error", rejected=True)
                if any(marker in err.error.message for marker in NOT_CALLER_ERRORS):
                    tally.fail("unclear_error", "resource", err.error.message, str(uri))
                if s.snap() != before:
                    tally.fail("changed_on_reject", "resource", "resource error but the store changed", str(uri))
                return
            tally.case("resource: ok", rejected=False)
            shown = json.loads(getattr(result.contents[0], "text", "{}")).get("namespace")
            if shown != ns:
                tally.fail("foreign_namespace", "resource", f"resource shows a trace of {shown!r}", str(uri))

        def body(data: st.DataObject) -> None:
            s: _Store = state["store"]
            kind = data.draw(st.integers(0, 9), label="kind")
            try:
                if kind == 0:
                    read_resource(s, data.draw(st.one_of(known(s.ids), known(s.ids), texts), label="trace id"))
                else:
                    tool = data.draw(st.sampled_from([*TOOLS, *TOOLS, *TOOLS, "?"]), label="tool")
                    if tool == "?":
                        tool = data.draw(texts, label="unknown tool name")
                    try:
                        arguments = _as_sent(_arguments(data, tool, s))
                        tool.encode("utf-8")
                    except UnicodeEncodeError:
                        unsendable["lone surrogates"] = unsendable.get("lone surrogates", 0) + 1
                        return
                    call_tool(s, tool, arguments)
            except Exception as err:  # noqa: BLE001 - anything escaping the client or the portal is a crash
                tally.case(f"crash: {type(err).__name__}", rejected=False)
                tally.fail("crash", "session", f"{type(err).__name__}: {err}", "")
            state["n"] += 1
            if state["n"] % per_store == 0:
                _check_store(s, tally, "end of store")
                s.close()
                state["store"] = _Store(Path(tmp), state["n"], portal)

        common.drive(body, st.data(), examples, seed)
        _check_store(state["store"], tally, "end of run")
        state["store"].close()
    if unsendable:
        tally.result.notes.append(f"generated calls a JSON client could not send (not counted): {unsendable}")
    tally.result.notes.append(f"session namespace {ns}; other namespaces in the store: {sorted(ns for _, ns in FOREIGN)}")
    return tally.finish(time.perf_counter() - t0)


def _check_store(s: _Store, tally: Tally, where: str) -> None:
    """The store verifies, and the other namespaces' traces are still there, unchanged."""
    common.check_integrity(s.mem, tally, where)
    for (event, ns), trace_id in zip(FOREIGN, s.foreign, strict=True):
        try:
            kept = s.mem.get(trace_id, namespace=ns).text == event["text"]
        except Exception:  # noqa: BLE001 - gone or unreadable: either way the session reached it
            kept = False
        if not kept:
            tally.fail("foreign_namespace", where, f"the trace of {ns} was changed or deleted through the session", trace_id)

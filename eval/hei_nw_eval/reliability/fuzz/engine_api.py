"""Suite (a): the public Python API of :class:`~hei_nw_plugin.memory.HEIMemory` with arbitrary arguments.

Each case draws one method and its arguments, mixing near-valid values (known namespaces, trace ids
and keys of the store, well-formed events) with anything hypothesis can build. The property: the call
returns, or raises the library's :class:`~hei_nw_plugin.errors.InputError`; a rejected call leaves
every stored row and the key file byte-identical; the store verifies. Stores are SQLite in a temporary
folder with the hashing embedder, replaced every ``per_store`` cases so snapshots stay small.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from hei_nw_eval.reliability.fuzz.common import (
    SuiteResult,
    Tally,
    anything,
    changed_tables,
    check_integrity,
    drive,
    known,
    snapshot,
    texts,
)
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.errors import InputError
from hei_nw_plugin.memory import HEIMemory

EVENT_FIELDS = ["text", "slots", "key", "metadata", "source", "reward", "pin", "force", "timestamp", "ttl_s",
                "context_tokens", "label", "bogus"]
SEED_EVENTS = [
    ({"text": "Ada keeps the brass lantern in the blue shed", "slots": {"who": "Ada", "what": "lantern"}, "force": True}, "fz"),
    ({"text": "The spare key hangs behind the kitchen door", "key": "spare-key", "pin": True}, "fz"),
    ({"text": "Lorcan's manager is Casimir", "slots": {"who": "Lorcan", "attribute": "manager", "value": "Casimir"},
      "force": True, "ttl_s": 3600.0}, "fz/other"),
]
# Whatever a method is called with, these are the outcomes a caller may see.
OPS = ["write", "write", "write_many", "recall", "recall", "get", "get_by_key", "list_traces", "delete", "delete_by_key",
       "pin", "unpin", "set_expiry", "verify", "stats", "evict", "refresh", "namespaces", "warm_features"]


def _field_value(name: str) -> st.SearchStrategy[Any]:
    good: dict[str, st.SearchStrategy[Any]] = {
        "text": st.one_of(texts, st.sampled_from(["The red kite nests above the mill", "Meeting moved to Friday"])),
        "slots": st.dictionaries(texts, st.one_of(texts, st.integers(), st.floats(allow_nan=True), st.booleans(), st.none()),
                                 max_size=4),
        "key": st.one_of(texts, st.sampled_from(["spare-key", "k1"])),
        "metadata": st.dictionaries(texts, anything, max_size=3),
        "source": st.one_of(st.fixed_dictionaries({}, optional={"conversation_id": texts, "turn": st.integers(-2, 5),
                                                                "start": st.integers(-2, 9), "bogus": st.none()})),
        "reward": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 2)),
        "pin": st.booleans(), "force": st.booleans(), "label": st.booleans(),
        "timestamp": st.one_of(st.datetimes(), texts, st.integers()),
        "ttl_s": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**12)),
        "context_tokens": st.integers(-5, 10**6),
    }
    return st.one_of(good[name], anything) if name in good else anything


events = st.one_of(
    st.fixed_dictionaries({"text": _field_value("text")}, optional={f: _field_value(f) for f in EVENT_FIELDS if f != "text"}),
    st.fixed_dictionaries({}, optional={f: _field_value(f) for f in EVENT_FIELDS}),
    texts,
    anything,
)


class _Store:
    """One HEIMemory under a temporary folder, with what the fuzz knows is in it."""

    def __init__(self, root: Path, n: int) -> None:
        self.dir = root / f"store{n}"
        self.mem = HEIMemory(HeiNwSettings.build(store={"data_dir": self.dir}), embedder=HashingEmbedder(dim=64),
                             persist_index=False)
        self.namespaces = ["fz", "fz/other", "never-written"]
        self.ids: list[str] = []
        for ev, ns in SEED_EVENTS:
            d = self.mem.write(ev, namespace=ns)
            if d.trace_id:
                self.ids.append(d.trace_id)

    def snap(self) -> dict[str, Any]:
        return snapshot(self.dir / "traces.db", self.dir / "keys.json")

    def close(self) -> None:
        self.mem.close()


def _args(data: st.DataObject, op: str, s: _Store) -> tuple[tuple[Any, ...], dict[str, Any]]:
    ns = data.draw(st.one_of(known(s.namespaces), known(s.namespaces), texts, anything), label="namespace")
    tid = data.draw(st.one_of(known(s.ids), known(s.ids), texts, anything), label="trace_id")
    kw: dict[str, Any] = {"namespace": ns}
    if op == "write":
        return (data.draw(events, label="event"),), kw
    if op == "write_many":
        return (data.draw(st.one_of(st.lists(events, max_size=4), events, anything), label="events"),), kw
    if op == "recall":
        cue = data.draw(st.one_of(events, st.fixed_dictionaries({}, optional={"text": texts, "slots": _field_value("slots"),
                                                                             "bogus": anything})), label="cue")
        k = data.draw(st.one_of(st.integers(-3, 300), anything), label="k")
        for name, strat in (("where", st.one_of(st.none(), st.dictionaries(texts, anything, max_size=3), anything)),
                            ("max_tokens", st.one_of(st.none(), st.integers(-5, 5000), anything)),
                            ("min_similarity", st.one_of(st.none(), st.floats(allow_nan=True), anything))):
            if data.draw(st.booleans(), label=f"give {name}"):
                kw[name] = data.draw(strat, label=name)
        return (cue, k), kw
    if op in ("get", "delete", "pin", "unpin"):
        return (tid,), kw
    if op == "set_expiry":
        return (tid, data.draw(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), anything), label="ttl_s")), kw
    if op in ("get_by_key", "delete_by_key"):
        return (data.draw(st.one_of(st.sampled_from(["spare-key", "k1"]), texts, anything), label="key"),), kw
    if op == "list_traces":
        for name in ("limit", "offset"):
            if data.draw(st.booleans(), label=f"give {name}"):
                kw[name] = data.draw(st.one_of(st.integers(-3, 10**9), anything), label=name)
        if data.draw(st.booleans(), label="give where"):
            kw["where"] = data.draw(st.one_of(st.dictionaries(texts, anything, max_size=2), anything), label="where")
        return (), kw
    if op in ("verify", "stats", "evict"):
        kw["namespace"] = data.draw(st.one_of(st.none(), known(s.namespaces), texts, anything), label="namespace")
        if op == "evict" and data.draw(st.booleans(), label="give now"):
            kw["now"] = data.draw(st.one_of(st.floats(allow_nan=True, allow_infinity=True), anything), label="now")
        return (), kw
    if op == "refresh":
        return (ns,), {}
    if op == "namespaces":
        return (), {"include_empty": data.draw(st.one_of(st.booleans(), anything), label="include_empty")}
    return (), kw  # warm_features


def run_engine_api(examples: int, *, seed: int = 0, per_store: int = 200) -> SuiteResult:
    """Fuzz the Python API with ``examples`` generated calls."""
    tally = Tally("python_api")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hei-fuzz-api-") as tmp:
        state: dict[str, Any] = {"store": _Store(Path(tmp), 0), "n": 0}

        def body(data: st.DataObject) -> None:
            s: _Store = state["store"]
            op = data.draw(st.sampled_from(OPS), label="op")
            args, kw = _args(data, op, s)
            before = s.snap()
            try:
                out = getattr(s.mem, op)(*args, **kw)
            except InputError as err:
                tally.case(type(err).__name__, rejected=True)
                after = s.snap()
                if after != before:
                    tally.fail("changed_on_reject", op, f"{type(err).__name__} but {changed_tables(before, after)} changed",
                               (args, kw))
            except Exception as err:  # noqa: BLE001 - anything else escaping the API is a crash
                tally.case(f"crash:{type(err).__name__}", rejected=False)
                tally.fail("crash", op, f"{type(err).__name__}: {err}", (args, kw))
            else:
                tally.case("ok", rejected=False)
                _after_success(op, out, args, kw, s, tally)
            state["n"] += 1
            if state["n"] % 50 == 0:
                _check_integrity(s, tally, op)
            if state["n"] % per_store == 0:
                _check_integrity(s, tally, "end of store")
                s.close()
                state["store"] = _Store(Path(tmp), state["n"])

        drive(body, st.data(), examples, seed)
        _check_integrity(state["store"], tally, "end of run")
        state["store"].close()
    return tally.finish(time.perf_counter() - t0)


def _after_success(op: str, out: Any, args: tuple[Any, ...], kw: dict[str, Any], s: _Store, tally: Tally) -> None:
    if op in ("write", "write_many"):
        decisions = [out] if op == "write" else out
        s.ids += [d.trace_id for d in decisions if d.trace_id]
        if isinstance(kw["namespace"], str) and kw["namespace"] not in s.namespaces:
            s.namespaces.append(kw["namespace"])
    elif op == "recall" and len(out.traces) > args[1]:
        tally.fail("contract", op, f"recall returned {len(out.traces)} traces for k={args[1]}", (args, kw))


def _check_integrity(s: _Store, tally: Tally, where: str) -> None:
    check_integrity(s.mem, tally, where)

"""Processes that share one store (writers, recallers, a maintenance worker) and the ledger that checks it.

Used by :mod:`.pgfaults` (the database restarts under them) and :mod:`.concurrency` (many of
them at once). Each worker is forked from the checking process, so the embedder loads once,
and opens its own :class:`HEIMemory` on the shared store and key file, as an API replica, a
consolidation worker or an import job would. It never reopens it: after a fault the engine
must reconnect by itself.

A worker appends one JSON line per event to its own ack file with a single ``write(2)``
(see :mod:`.kill`): ``begin`` before an operation, ``op`` once it returned, ``failed`` when
it raised, with the error's class and message and the seconds the call took. Times are
``time.monotonic()``, one clock for every process of the machine. When the stop file
appears, writers finish their operation and wait; once the checker writes the final file,
every worker catches each namespace's index up with the store (``refresh``) and reports how
far its HNSW graph differs from the store's rows.

:func:`check_store` folds every ack file into what the store must hold and compares it with
what a fresh process reads: acknowledged writes present with their text, acknowledged
deletes and evictions absent, a failed batch all there or all absent, one live version per
caller key and that one the newest (no acknowledged version of the key began after the live
one was acknowledged), every row decryptable, ``verify()`` clean.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hei_nw_eval.reliability.faults import event_text
from hei_nw_eval.reliability.kill import ack, fork_child
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import Embedder
from hei_nw_plugin.errors import RuntimeFault, TraceNotFoundError
from hei_nw_plugin.memory import HEIMemory

STOP, FINAL = "stop", "final"
RECALL_K = 5
WRITE_KINDS = ("write", "write_many", "update")


@dataclass(frozen=True)
class Shared:
    """What every worker of one run shares."""

    root: Path  # ack files and the stop / final files
    settings: dict[str, Any]  # HeiNwSettings.build(**settings)
    namespaces: tuple[str, ...]  # where writers write and recallers recall
    shared_keys: int = 0  # caller keys k0..k{n-1} per namespace that every writer updates (0: each writer its own)
    own_keys: int = 4  # with shared_keys == 0: keys per writer
    evict_namespace: str | None = None  # unkeyed writes only; the maintenance worker evicts it to capacity
    seed: int = 0

    def flag(self, name: str) -> Path:
        return self.root / name

    def open(self, embedder: Embedder, **over: Any) -> HEIMemory:
        return HEIMemory(HeiNwSettings.build(**_merge(self.settings, over)), embedder=embedder)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _quiet_children() -> None:
    # The store logs each outage and recovery; the ack files already hold what the check needs.
    logging.getLogger("hei_nw_plugin").setLevel(logging.ERROR)


def _failed(fd: int, kind: str, info: dict[str, Any], t0: float, err: BaseException) -> None:
    line = {"failed": kind, **info, "t0": t0, "t1": time.monotonic(), "error": type(err).__name__,
            "message": str(err)[:400], "runtime_fault": isinstance(err, RuntimeFault)}
    if not isinstance(err, RuntimeFault):  # not an error on purpose: where it came from, for the defect report
        frames = traceback.extract_tb(err.__traceback__)[-4:]
        line["where"] = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    ack(fd, line)


def _final_phase(fd: int, shared: Shared, mem: HEIMemory) -> None:
    """Wait for the final file, then catch every namespace's graph up and compare it with the store."""
    ack(fd, {"stopped": True, "t": time.monotonic()})
    while not shared.flag(FINAL).exists():
        time.sleep(0.05)
    started = time.monotonic()
    spaces = list(shared.namespaces) + ([shared.evict_namespace] if shared.evict_namespace else [])
    mismatch = entries = 0
    t0 = time.monotonic()
    try:
        for ns in spaces:
            if not mem.store.has_namespace(ns):
                continue
            mem.refresh(ns)
            graph = mem.index.get(ns)
            have = {int(i) for i in graph.ids()} if graph is not None else set()
            want = {int(s) for s in mem.store.seqs(ns)}
            mismatch += len(have ^ want)
            entries += len(have)
    except Exception as err:  # noqa: BLE001 - recorded, and the check fails on it
        _failed(fd, "refresh", {}, t0, err)
        return
    ack(fd, {"op": "index_check", "mismatch": mismatch, "entries": entries, "seconds": round(time.monotonic() - started, 2)})
    t0 = time.monotonic()
    try:
        mem.close()
    except Exception as err:  # noqa: BLE001
        _failed(fd, "close", {}, t0, err)


# ------------------------------------------------------------------------------------------ workers
def writer(shared: Shared, emb: Embedder, idx: int) -> Callable[[int], None]:
    """Writes, batches of three, keyed updates and deletes of its own writes, until the stop file appears."""

    def body(fd: int) -> None:
        _quiet_children()
        rng = random.Random(shared.seed * 1000 + idx)
        mem = shared.open(emb)
        own: list[tuple[str, str]] = []  # (ns, id) of its acknowledged unkeyed writes outside the evicted namespace
        n = 0
        while not shared.flag(STOP).exists():
            n += 1
            tag = f"Shared-store probe w{idx}-{n}"
            r = rng.random()
            ns = rng.choice(shared.namespaces)
            info: dict[str, Any]
            if r < 0.15 and own:
                ns, tid = own.pop(rng.randrange(len(own)))
                kind, info = "delete", {"ns": ns, "id": tid}
            elif r < 0.40:
                key = f"k{rng.randrange(shared.shared_keys)}" if shared.shared_keys else f"w{idx}-k{rng.randrange(shared.own_keys)}"
                kind, info = "update", {"ns": ns, "key": key, "texts": [event_text(rng, tag)]}
            elif r < 0.55:
                kind, info = "write_many", {"ns": ns, "texts": [event_text(rng, f"{tag}.{j}") for j in range(3)]}
            else:
                if shared.evict_namespace and rng.random() < 0.3:
                    ns = shared.evict_namespace
                kind, info = "write", {"ns": ns, "texts": [event_text(rng, tag)]}
            ack(fd, {"begin": kind, **info, "t": time.monotonic()})
            t0 = time.monotonic()
            try:
                if kind == "delete":
                    mem.delete(info["id"], namespace=ns)
                    ids = [info["id"]]
                elif kind == "update":
                    ids = [mem.write({"text": info["texts"][0], "force": True, "key": info["key"]}, namespace=ns).trace_id]
                else:
                    ids = [d.trace_id for d in mem.write_many([{"text": t, "force": True} for t in info["texts"]], namespace=ns)]
            except Exception as err:  # noqa: BLE001 - every failure is recorded; the check judges it
                _failed(fd, kind, info, t0, err)  # a failed delete may have committed: it is not tried again
                continue
            ack(fd, {"op": kind, **info, "ids": ids, "t0": t0, "t1": time.monotonic()})
            if kind in ("write", "write_many") and ns != shared.evict_namespace:
                own += [(ns, i) for i in ids if i is not None]
        _final_phase(fd, shared, mem)

    return body


class _Probes:
    """Acknowledged writes of every writer, read incrementally from their ack files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.offsets: dict[Path, int] = {}
        self.items: list[tuple[str, str, str]] = []  # (ns, id, text)

    def load(self) -> None:
        for f in sorted(self.root.glob("ack-writer-*.jsonl")):
            with f.open("rb") as fh:
                fh.seek(self.offsets.get(f, 0))
                data = fh.read()
            end = data.rfind(b"\n") + 1  # a line still being written is read next time
            self.offsets[f] = self.offsets.get(f, 0) + end
            for line in data[:end].splitlines():
                obj = json.loads(line)
                if obj.get("op") in WRITE_KINDS:
                    self.items += [(obj["ns"], i, t) for i, t in zip(obj["ids"], obj["texts"], strict=True) if i]


def recaller(shared: Shared, emb: Embedder, idx: int) -> Callable[[int], None]:
    """Catches a namespace's index up with the store, recalls an acknowledged write's text, and gets one by id."""

    def body(fd: int) -> None:
        _quiet_children()
        rng = random.Random(shared.seed * 1000 + 500 + idx)
        mem = shared.open(emb)
        probes = _Probes(shared.root)
        n = 0
        while not shared.flag(STOP).exists():
            n += 1
            if n % 20 == 1:
                probes.load()
            if not probes.items:
                time.sleep(0.05)
                continue
            ns, tid, text = rng.choice(probes.items)
            t0 = time.monotonic()
            try:
                if n % 4 == 0:
                    try:
                        mem.get(tid, namespace=ns)
                        found = True
                    except TraceNotFoundError:  # deleted, replaced or evicted since: not a failure
                        found = False
                    ack(fd, {"op": "get", "ns": ns, "id": tid, "found": found, "t0": t0, "t1": time.monotonic()})
                    continue
                mem.refresh(ns)
                r = mem.recall(text, RECALL_K, namespace=ns)
            except Exception as err:  # noqa: BLE001
                _failed(fd, "get" if n % 4 == 0 else "recall", {"ns": ns, "id": tid}, t0, err)
                continue
            keys = [t.trace.key for t in r.traces if t.trace.key is not None]
            ack(fd, {"op": "recall", "ns": ns, "id": tid, "hit": tid in {t.trace.id for t in r.traces},
                     "duplicate_keys": len(keys) - len(set(keys)), "t0": t0, "t1": time.monotonic()})
        _final_phase(fd, shared, mem)

    return body


def maintenance(shared: Shared, emb: Embedder, schedule: list[tuple[float, str]], capacity: int) -> Callable[[int], None]:
    """Rotates the keys and evicts the evicted namespace to ``capacity`` at the scheduled offsets (s from its start)."""

    def body(fd: int) -> None:
        _quiet_children()
        mem = shared.open(emb, decay={"capacity": capacity})
        start = time.monotonic()
        for at, action in sorted(schedule):  # every action runs, even one a slow machine delays past the stop
            while time.monotonic() - start < at and not shared.flag(STOP).exists():
                time.sleep(0.05)
            ack(fd, {"begin": action, "t": time.monotonic()})
            t0 = time.monotonic()
            try:
                if action == "rotate":
                    ack(fd, {"op": "rotate", "rewrapped": mem.rotate_keys(), "t0": t0, "t1": time.monotonic()})
                else:
                    ns = shared.evict_namespace or shared.namespaces[0]
                    ack(fd, {"op": "evict", "ns": ns, "ids": mem.evict(namespace=ns), "t0": t0, "t1": time.monotonic()})
            except Exception as err:  # noqa: BLE001
                _failed(fd, action, {}, t0, err)
        while not shared.flag(STOP).exists():
            time.sleep(0.05)
        _final_phase(fd, shared, mem)

    return body


# ------------------------------------------------------------------------------------------ running
@dataclass
class Run:
    """Who ran, for how long (s), and every line each worker acknowledged."""

    seconds: float
    acks: dict[str, list[dict[str, Any]]]
    exit_codes: dict[str, int]
    crashed: dict[str, str] = field(default_factory=dict)  # worker -> the exception that ended it
    parent_events: list[dict[str, Any]] = field(default_factory=list)


def run_workers(shared: Shared, emb: Embedder, *, writers: int, recallers: int, seconds: float,
                maintenance_schedule: list[tuple[float, str]] | None = None, capacity: int = 50,
                parent_actions: list[tuple[float, Callable[[], dict[str, Any]]]] | None = None,
                log: Callable[[str], None] = lambda _m: None, stall_s: float = 120.0, final_s: float = 900.0) -> Run:
    """Fork the workers, run ``parent_actions`` at their offsets (s), stop after ``seconds``, collect the acks.

    Workers that have not stopped ``stall_s`` after the stop file, or not finished catching their
    indexes up ``final_s`` after the final file, are killed and named in ``exit_codes`` (-9).
    """
    shared.root.mkdir(parents=True, exist_ok=True)
    for flag in (STOP, FINAL):
        shared.flag(flag).unlink(missing_ok=True)
    bodies: dict[str, Callable[[int], None]] = {}
    for i in range(writers):
        bodies[f"writer-{i}"] = writer(shared, emb, i)
    for i in range(recallers):
        bodies[f"recaller-{i}"] = recaller(shared, emb, i)
    if maintenance_schedule:
        bodies["maintenance-0"] = maintenance(shared, emb, maintenance_schedule, capacity)
    pids = {name: fork_child(body, shared.root / f"ack-{name}.jsonl") for name, body in bodies.items()}
    codes: dict[str, int] = {}
    start = time.monotonic()
    events: list[dict[str, Any]] = []
    for at, action in sorted(parent_actions or [], key=lambda a: a[0]):
        while time.monotonic() - start < at:
            time.sleep(0.05)
        events.append(action())
        log(f"  t={time.monotonic() - start:6.1f} s: {events[-1]}")
    while time.monotonic() - start < seconds:
        time.sleep(0.2)
    shared.flag(STOP).touch()
    _wait_for(lambda: all(n in _poll(pids, codes) or _stopped(shared.root / f"ack-{n}.jsonl") for n in pids), stall_s)
    elapsed = time.monotonic() - start
    shared.flag(FINAL).touch()
    _wait_for(lambda: len(_poll(pids, codes)) == len(pids), final_s)
    for name, pid in pids.items():
        if name not in codes:  # stalled: named in the result, never left running
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            codes[name] = -9
    acks = {name: _lines(shared.root / f"ack-{name}.jsonl") for name in pids}
    crashed = {name: a["error"] for name, lines in acks.items() for a in lines if "error" in a and "failed" not in a}
    return Run(seconds=round(elapsed, 1), acks=acks, exit_codes=codes, crashed=crashed, parent_events=events)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def _stopped(path: Path) -> bool:
    return path.exists() and b'"stopped"' in path.read_bytes()


def _poll(pids: dict[str, int], codes: dict[str, int]) -> dict[str, int]:
    """Reap the workers that exited (their exit codes go into ``codes``, which is returned)."""
    for name, pid in pids.items():
        if name not in codes:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[name] = os.waitstatus_to_exitcode(status)
    return codes


def _wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


# ------------------------------------------------------------------------------------------ checking
@dataclass
class StoreCheck:
    """What a fresh process found in the store, against what the workers acknowledged."""

    acked_events: int = 0  # events of acknowledged write operations
    acked_deletes: int = 0
    evicted: int = 0
    live_rows: int = 0
    lost: int = 0  # acknowledged, never deleted, evicted or replaced, and absent
    wrong_text: int = 0
    resurrected: int = 0  # acknowledged as deleted or evicted, and present
    unexpected: int = 0  # live rows that no operation wrote
    failed_writes_present: int = 0  # unacknowledged batches found whole
    failed_writes_absent: int = 0
    partial_batches: int = 0  # unacknowledged batches found in part (must be 0)
    keys: int = 0
    duplicated_keys: int = 0  # (namespace, key) with more than one live row
    newest_wins_violations: int = 0  # a key's live version is older than an acknowledged one that began after it
    keys_without_live_version: int = 0  # a key with acknowledged versions and none live
    undecryptable: int = 0  # rows the fresh process could not decrypt or verify
    verify_problems: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.wrong_text or self.resurrected or self.unexpected or self.partial_batches
                    or self.duplicated_keys or self.newest_wins_violations or self.keys_without_live_version
                    or self.undecryptable or self.verify_problems)


def _ops(acks: dict[str, list[dict[str, Any]]], key: str) -> Iterator[dict[str, Any]]:
    for lines in acks.values():
        yield from (a for a in lines if key in a)


def check_store(mem: HEIMemory, acks: dict[str, list[dict[str, Any]]], namespaces: list[str]) -> StoreCheck:
    """Compare the store (read by ``mem``, a fresh process's handle) with every worker's acknowledgements."""
    c = StoreCheck()
    live: dict[str, tuple[str, str, str | None]] = {}  # id -> (ns, text, key)
    for ns in namespaces:
        if not mem.store.has_namespace(ns):
            continue
        traces = mem.list_traces(namespace=ns, limit=10**8)
        c.undecryptable += mem.store.count(ns) - len(traces)
        live.update({t.id: (ns, t.text, t.key) for t in traces})
    c.live_rows = len(live)
    by_text = {text: tid for tid, (_ns, text, _k) in live.items()}
    gone: set[str] = set()
    # A delete that raised may have committed first (the error came after): either outcome is allowed.
    uncertain = {a["id"] for a in _ops(acks, "failed") if a["failed"] == "delete"}
    for a in _ops(acks, "op"):
        if a["op"] == "delete":
            c.acked_deletes += 1
            gone.add(a["id"])
        elif a["op"] == "evict":
            c.evicted += len(a["ids"])
            gone |= set(a["ids"])
    versions: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    known_texts: set[str] = set()
    for a in _ops(acks, "op"):
        if a["op"] not in WRITE_KINDS:
            continue
        c.acked_events += len(a["texts"])
        known_texts |= set(a["texts"])
        if a["op"] == "update":
            versions[(a["ns"], a["key"])].append(a)
            continue
        for tid, text in zip(a["ids"], a["texts"], strict=True):
            if tid in gone:
                if tid in live:
                    c.resurrected += 1
                    c.details.append(f"resurrected {tid}")
            elif tid not in live and tid not in uncertain:
                c.lost += 1
                c.details.append(f"lost {tid} ({text[:40]})")
            elif tid in live and live[tid][1] != text:
                c.wrong_text += 1
    for a in list(_ops(acks, "failed")) + list(_ops(acks, "begin")):
        known_texts |= set(a.get("texts") or [])
    for a in _ops(acks, "failed"):
        if a["failed"] not in WRITE_KINDS:
            continue
        present = sum(t in by_text for t in a["texts"])
        if present == 0:
            c.failed_writes_absent += 1
        elif present == len(a["texts"]):
            c.failed_writes_present += 1
        else:
            c.partial_batches += 1
            c.details.append(f"partial batch: {present} of {len(a['texts'])} ({a['error']})")
    c.unexpected = sum(1 for _ns, text, _k in live.values() if text not in known_texts)
    _check_keys(c, live, versions)
    report = mem.verify()
    c.verify_problems = len(report.problems)
    c.details += [f"verify: {p['kind']} {p.get('trace_id')}" for p in report.problems[:5]]
    return c


def _check_keys(c: StoreCheck, live: dict[str, tuple[str, str, str | None]],
                versions: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    live_by_key: dict[tuple[str, str], list[str]] = defaultdict(list)
    for tid, (ns, _text, key) in live.items():
        if key is not None:
            live_by_key[(ns, key)].append(tid)
    c.keys = len(set(live_by_key) | set(versions))
    c.duplicated_keys = sum(1 for ids in live_by_key.values() if len(ids) > 1)
    for k, acked in versions.items():
        ids = live_by_key.get(k, [])
        if not ids:
            c.keys_without_live_version += 1
            c.details.append(f"key {k} has {len(acked)} acknowledged versions and none live")
            continue
        winner = next((a for a in acked if a["ids"][0] in ids), None)
        if winner is None:
            continue  # the live version is one whose call failed after it committed: no acknowledged order to check
        later = [a for a in acked if a["t0"] > winner["t1"]]
        if later:
            c.newest_wins_violations += 1
            c.details.append(f"key {k}: live version acknowledged at {winner['t1']:.3f}, {len(later)} acknowledged "
                             "versions began after it")


# ------------------------------------------------------------------------------------------ figures
def percentiles_ms(durations_s: list[float]) -> dict[str, float | None]:
    """p50 / p95 / max of durations given in seconds, in ms (None when there are none)."""
    if not durations_s:
        return {"p50": None, "p95": None, "max": None}
    a = np.asarray(durations_s) * 1000
    return {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2),
            "max": round(float(a.max()), 2)}


def errors_by_class(acks: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return dict(Counter(a["error"] for a in _ops(acks, "failed")))


def error_examples(acks: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """The first failed call of each error class: '<call>: <message>'."""
    out: dict[str, str] = {}
    for a in _ops(acks, "failed"):
        out.setdefault(a["error"], f"{a['failed']}: {a['message']}" + (f" (at {a['where']})" if a.get("where") else ""))
    return out


def catch_up_seconds(acks: dict[str, list[dict[str, Any]]]) -> dict[str, float | None]:
    """How long the workers' final index catch-up took (s): median and longest over the workers that reported."""
    secs = [a["seconds"] for lines in acks.values() for a in lines if a.get("op") == "index_check" and "seconds" in a]
    return {"p50": round(float(np.median(secs)), 2) if secs else None, "max": round(max(secs), 2) if secs else None}


def index_checks(acks: dict[str, list[dict[str, Any]]]) -> tuple[int, int, int]:
    """(workers that reported an index check, total mismatching entries, workers that never reported)."""
    reported = mismatch = 0
    for lines in acks.values():
        checks = [a for a in lines if a.get("op") == "index_check"]
        if checks:
            reported += 1
            mismatch += int(checks[-1]["mismatch"])
    return reported, mismatch, len(acks) - reported

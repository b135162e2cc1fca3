"""Crash safety: SIGKILL a process while it writes, rotates keys or consolidates; reopen and check.

``hei-nw reliability crash --trials 200 --rotation-trials 20 --consolidation-trials 3 --out reports/reliability/crash.json``

Each trial forks a child from the checking process (so the embedder, and the
language model for consolidation, load once) and kills it with SIGKILL at a
random moment: inside operation k+1 for a random k (writes, rotations), or a
random fraction into the consolidation's measured duration. The child acknowledges every operation by appending one JSON line
to an ack file after the call returns (one ``write(2)``, which a kill cannot
tear), and announces the operation it is about to start, so the checker knows
which single operation may have been in flight. After the kill the checker
reopens the store and requires:

* writes: every acknowledged write present with its text and pin state, every
  acknowledged delete absent, nothing else but what the in-flight operation may
  have done; ``PRAGMA integrity_check`` ok; ``verify()`` with no problem; each
  namespace's index equal to the store's rows after opening (rebuilt or caught
  up from a stale file), and recall of this trial's acknowledged texts finds them;
* key rotation: the key file readable, every trace decrypts, ``verify()`` ok, no
  row wrapped by a key the provider lacks, and after one more rotation no
  retired key left in the key file;
* consolidation: the served (active) adapter is the previously promoted one, or
  a version the killed run completed; its files load with peft and match the
  hash in its lineage.

Not simulated: power loss or a kernel crash (a SIGKILL leaves the page cache
intact); for those the store relies on SQLite's WAL with ``synchronous=FULL``
and the key file's fsync of file and folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hei_nw_eval.reliability.crash_consolidation import run_consolidation_trials
from hei_nw_eval.reliability.faults import (
    EmbedderName,
    event_text,
    integrity_check,
    load_embedder,
    open_memory,
    write_json,
)
from hei_nw_eval.reliability.kill import Summary, ack, fork_child, kill_at_random_moment, read_acks
from hei_nw_plugin.embed import Embedder
from hei_nw_plugin.index import USearchIndex

NAMESPACES = ("alice", "bob")
SAVE_EVERY = 5  # index saves this often in trials, so kills land during saves too
RECALL_K = 5


# ------------------------------------------------------------------------------------- records
@dataclass
class WriteTrial:
    trial: int
    store: int
    kill_after_ops: int
    delay_s: float
    acked_ops: int
    in_flight: str | None
    live_after: int
    lost: int = 0  # acknowledged writes missing
    resurrected: int = 0  # acknowledged deletes present
    unexpected: int = 0  # rows no acknowledged or in-flight operation explains
    wrong_text: int = 0
    wrong_pin: int = 0
    verify_problems: int = 0
    integrity: str = "ok"
    index_stale_missing: int = 0  # entries the index file lacked before reopening (caught up)
    index_stale_extra: int = 0
    index_mismatch: int = 0  # entries differing between index and store after reopening (must be 0)
    recall_checked: int = 0
    recall_missed: int = 0
    child_error: str | None = None  # the child raised instead of being killed (a defect, in it or the engine)
    details: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.child_error or self.lost or self.resurrected or self.unexpected or self.wrong_text or self.wrong_pin
                    or self.verify_problems or self.integrity != "ok" or self.index_mismatch or self.recall_missed)


@dataclass
class RotationTrial:
    trial: int
    delay_s: float
    rotations_acked: int
    in_flight: bool
    traces: int
    decrypted: int
    verify_problems: int
    missing_keks: int  # rows wrapped by a key the provider does not hold (must be 0)
    stale_keks_after_kill: int  # keys the killed rotation moved rows off but had not retired yet
    stale_keks_after_next_rotation: int  # must be 0: the next rotation retires them
    verify_problems_after_next_rotation: int
    key_file_readable: bool = True
    child_error: str | None = None
    never_used_keks: int = 0  # keys made current by rotations killed before their commit (they wrapped nothing)

    @property
    def failed(self) -> bool:
        return (bool(self.child_error) or not self.key_file_readable or self.decrypted != self.traces or self.verify_problems > 0
                or self.missing_keks > 0 or self.stale_keks_after_next_rotation > 0
                or self.verify_problems_after_next_rotation > 0)



@dataclass
class CrashReport:
    """``hei-nw reliability crash`` output."""

    embedder: str
    seed: int
    write: Summary
    rotation: Summary
    consolidation: Summary
    failures: int
    write_trials: list[dict[str, Any]]
    rotation_trials: list[dict[str, Any]]
    consolidation_trials: list[dict[str, Any]]


# ------------------------------------------------------------------------------------- children
@dataclass
class Expected:
    """What the store must hold: id -> (namespace, text, pinned, caller key)."""

    live: dict[str, tuple[str, str, bool, str | None]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)


def _writer(data: Path, emb: Embedder, seed: int, view: Expected) -> Callable[[int], None]:
    def body(fd: int) -> None:
        rng = random.Random(seed)
        mem = open_memory(data, emb, save_every=SAVE_EVERY)
        live = {k: v[0] for k, v in view.live.items()}
        keyed = {(v[0], v[3]): k for k, v in view.live.items() if v[3] is not None}  # a keyed write replaces these
        n = 0
        while True:
            n += 1
            ns = rng.choice(NAMESPACES)
            r = rng.random()
            tag = f"Crash probe {seed}-{n}"
            if r < 0.5 or not live:
                text = event_text(rng, tag)
                ack(fd, {"begin": "write", "ns": ns, "n": 1})
                tid = mem.write({"text": text, "force": True}, namespace=ns).trace_id
                ack(fd, {"op": "write", "ns": ns, "ids": [tid], "texts": [text]})
                live[tid] = ns  # type: ignore[index]
            elif r < 0.65:
                texts = [event_text(rng, f"{tag}.{j}") for j in range(3)]
                ack(fd, {"begin": "write", "ns": ns, "n": 3})
                ids = [d.trace_id for d in mem.write_many([{"text": t, "force": True} for t in texts], namespace=ns)]
                ack(fd, {"op": "write", "ns": ns, "ids": ids, "texts": texts})
                live.update({i: ns for i in ids})  # type: ignore[misc]
            elif r < 0.78:
                key, text = f"key-{rng.randrange(6)}", event_text(rng, tag)
                ack(fd, {"begin": "update", "ns": ns, "n": 1, "key": key})
                tid = mem.write({"text": text, "force": True, "key": key}, namespace=ns).trace_id
                ack(fd, {"op": "update", "ns": ns, "ids": [tid], "texts": [text], "key": key})
                if (old := keyed.pop((ns, key), None)) is not None:
                    live.pop(old, None)
                live[tid] = ns  # type: ignore[index]
                keyed[(ns, key)] = tid  # type: ignore[assignment]
            elif r < 0.9:
                tid = rng.choice(sorted(live))
                keyed = {k: v for k, v in keyed.items() if v != tid}
                ack(fd, {"begin": "delete", "id": tid})
                mem.delete(tid, namespace=live.pop(tid))
                ack(fd, {"op": "delete", "id": tid})
            else:
                tid = rng.choice(sorted(live))
                pinned = rng.random() < 0.5
                ack(fd, {"begin": "pin", "id": tid})
                (mem.pin if pinned else mem.unpin)(tid, namespace=live[tid])
                ack(fd, {"op": "pin", "id": tid, "pinned": pinned})
    return body


def _apply(exp: Expected, acks: list[dict[str, Any]]) -> set[str]:
    """Fold acknowledged operations into ``exp``; returns the ids written by them."""
    written: set[str] = set()
    for a in acks:
        if a["op"] in ("write", "update"):
            if a["op"] == "update":
                for old, (ns, _t, _p, key) in list(exp.live.items()):
                    if ns == a["ns"] and key == a["key"]:
                        del exp.live[old]
                        exp.deleted.add(old)
            for tid, text in zip(a["ids"], a["texts"], strict=True):
                if tid is not None:
                    exp.live[tid] = (a["ns"], text, False, a.get("key"))
                    written.add(tid)
        elif a["op"] == "delete":
            exp.live.pop(a["id"], None)
            exp.deleted.add(a["id"])
        elif a["op"] == "pin" and a["id"] in exp.live:
            ns, text, _, key = exp.live[a["id"]]
            exp.live[a["id"]] = (ns, text, a["pinned"], key)
    return written


def _index_ids(mem: Any, ns: str) -> set[int]:
    path = mem.index.path_for(ns)
    if path is None or not path.exists():
        return set()
    return {int(i) for i in USearchIndex(mem.settings.keyer.dim, mem.settings.index, path).ids()}


def _check_writes(data: Path, emb: Embedder, exp: Expected, acks: list[dict[str, Any]], begun: dict[str, Any] | None,
                  trial: WriteTrial, rng: random.Random) -> None:
    written = _apply(exp, acks)
    uncertain: set[str] = set()  # may be present or not
    pin_uncertain: set[str] = set()
    allowance: dict[str, int] = {}
    if begun is not None:
        if begun["begin"] in ("write", "update"):
            allowance[begun["ns"]] = begun["n"]
            if begun["begin"] == "update":
                uncertain |= {t for t, (ns, _x, _p, key) in exp.live.items() if ns == begun["ns"] and key == begun["key"]}
        elif begun["begin"] == "delete":
            uncertain.add(begun["id"])
        else:
            pin_uncertain.add(begun["id"])
    if not (data / "traces.db").exists():  # killed before it created the store: nothing to check
        return
    trial.integrity = integrity_check(data / "traces.db")
    mem = open_memory(data, emb, save_every=SAVE_EVERY)
    try:
        with sqlite3.connect(data / "traces.db") as c:
            store_seqs = {ns: {int(s) for (s,) in c.execute("select seq from hei_traces where namespace=?", (ns,))}
                          for ns in NAMESPACES}
        for ns in NAMESPACES:
            on_disk = _index_ids(mem, ns)
            trial.index_stale_missing += len(store_seqs[ns] - on_disk)
            trial.index_stale_extra += len(on_disk - store_seqs[ns])
        actual: dict[str, tuple[str, str, bool, str | None]] = {}
        for ns in NAMESPACES:
            if mem.store.has_namespace(ns):
                for t in mem.list_traces(namespace=ns, limit=10**7):
                    actual[t.id] = (ns, t.text, t.pinned, t.key)
        for tid, (ns, text, pinned, _key) in exp.live.items():
            if tid in uncertain:
                continue
            if tid not in actual:
                trial.lost += 1
                trial.details.append(f"lost {tid}")
            elif actual[tid][1] != text:
                trial.wrong_text += 1
            elif actual[tid][2] != pinned and tid not in pin_uncertain:
                trial.wrong_pin += 1
        trial.resurrected = sum(1 for t in exp.deleted if t in actual and t not in uncertain)
        for tid, (ns, _t, _p, _k) in actual.items():
            if tid in exp.live or tid in uncertain:
                continue
            if allowance.get(ns, 0) > 0:
                allowance[ns] -= 1
            else:
                trial.unexpected += 1
                trial.details.append(f"unexpected {tid}")
        problems = mem.verify().problems
        trial.verify_problems = len(problems)
        trial.details += [f"verify: {p['kind']} {p.get('trace_id')}" for p in problems[:3]]
        for ns in NAMESPACES:
            if mem.store.has_namespace(ns):
                graph_ids = {int(i) for i in mem._graph(ns).ids()}
                trial.index_mismatch += len(graph_ids ^ store_seqs[ns])
        probe = sorted(t for t in written if t in exp.live and t in actual)
        for tid in rng.sample(probe, min(10, len(probe))):
            ns, text, _, _ = exp.live[tid]
            trial.recall_checked += 1
            if tid not in {r.trace.id for r in mem.recall(text, RECALL_K, namespace=ns).traces}:
                trial.recall_missed += 1
                trial.details.append(f"recall missed {tid}")
        # Adopt what the store holds (the in-flight operation's outcome, and any failure already
        # counted), so the next trial's expectations are exact.
        exp.deleted |= set(exp.live) - set(actual)
        exp.live = dict(actual)
        trial.live_after = len(actual)
    finally:
        mem.close()


def _write_trials(root: Path, emb: Embedder, *, trials: int, per_store: int, max_ops: int, seed: int,
                  log: Callable[[str], None]) -> tuple[Summary, list[WriteTrial]]:
    t0 = time.perf_counter()
    rng = random.Random(seed)
    out: list[WriteTrial] = []
    exp = Expected()
    data = root / "writes-0"
    for i in range(trials):
        if i % per_store == 0:  # a fresh store every per_store trials keeps each check's cost bounded
            shutil.rmtree(data, ignore_errors=True)
            data = root / f"writes-{i // per_store}"
            exp = Expected()
        ack_file = root / f"ack-w{i}.jsonl"
        after = rng.randint(0, max_ops)
        pid = fork_child(_writer(data, emb, seed * 100_003 + i, exp), ack_file)
        delay, _ = kill_at_random_moment(pid, ack_file, rng, after_ops=after)
        acks, begun, error = read_acks(ack_file)
        trial = WriteTrial(trial=i, store=i // per_store, kill_after_ops=after, delay_s=round(delay, 3), acked_ops=len(acks),
                           in_flight=begun["begin"] if begun else None, live_after=0)
        if error:
            trial.child_error = error
            trial.details.append(f"the child failed on its own: {error}")
        _check_writes(data, emb, exp, acks, begun, trial, rng)
        ack_file.unlink(missing_ok=True)
        out.append(trial)
        if trial.failed or (i + 1) % 20 == 0:
            log(f"write trial {i + 1}/{trials}: {'FAIL ' + '; '.join(trial.details[:3]) if trial.failed else 'ok'}")
    shutil.rmtree(data, ignore_errors=True)
    totals = {k: sum(getattr(t, k) for t in out) for k in (
        "acked_ops", "lost", "resurrected", "unexpected", "wrong_text", "wrong_pin", "verify_problems",
        "index_stale_missing", "index_stale_extra", "index_mismatch", "recall_checked", "recall_missed")}
    totals["integrity_not_ok"] = sum(t.integrity != "ok" for t in out)
    totals["trials_with_stale_index_file"] = sum(bool(t.index_stale_missing or t.index_stale_extra) for t in out)
    return Summary(trials=len(out), failed=sum(t.failed for t in out),
                   killed_mid_operation=sum(t.in_flight is not None for t in out), totals=totals,
                   seconds=round(time.perf_counter() - t0, 1)), out


# ------------------------------------------------------------------------------------- rotation
def _rotator(data: Path, emb: Embedder) -> Callable[[int], None]:
    def body(fd: int) -> None:
        mem = open_memory(data, emb)
        while True:
            ack(fd, {"begin": "rotate"})
            n = mem.rotate_keys()
            ack(fd, {"op": "rotate", "n": n})
    return body


@dataclass
class KekState:
    used: set[str]  # KEK ids the rows use
    held: set[str]  # KEK ids the key file holds
    current: str
    named: set[str]  # KEK ids the store's rotate records name for retirement

    @property
    def stale(self) -> set[str]:
        """Keys a rotation moved rows off that are still held (a kill between commit and retirement)."""
        return (self.named & self.held) - self.used - {self.current}

    @property
    def never_used(self) -> set[str]:
        """Keys no row of this store ever used: made current by a rotation killed before its commit."""
        return self.held - self.used - self.named - {self.current}


def _kek_state(data: Path) -> KekState:
    from hei_nw_plugin.store.keys import LocalKeyFile

    keys = LocalKeyFile(data / "keys.json")
    with sqlite3.connect(data / "traces.db") as c:
        used = {k for (k,) in c.execute("select distinct kek_id from hei_trace_keys")}
        named = {k for (r,) in c.execute("select record from hei_provenance where event='rotate'")
                 for k in json.loads(r).get("retires", [])}
    return KekState(used, set(keys.kek_ids()), keys.current_kek_id(), named)


def _rotation_trials(root: Path, emb: Embedder, *, trials: int, traces: int, seed: int,
                     log: Callable[[str], None]) -> tuple[Summary, list[RotationTrial]]:
    t0 = time.perf_counter()
    rng = random.Random(seed + 1)
    data = root / "rotation"
    mem = open_memory(data, emb)
    for start in range(0, traces, 50):
        mem.write_many([{"text": event_text(rng, f"Rotation probe {j}"), "force": True}
                        for j in range(start, min(start + 50, traces))], namespace=rng.choice(NAMESPACES))
    t = time.perf_counter()
    mem.rotate_keys()
    one = time.perf_counter() - t
    mem.close()
    out: list[RotationTrial] = []
    for i in range(trials):
        ack_file = root / f"ack-r{i}.jsonl"
        pid = fork_child(_rotator(data, emb), ack_file)
        delay, _ = kill_at_random_moment(pid, ack_file, rng, after_ops=rng.randint(0, 2))
        acks, begun, error = read_acks(ack_file)
        ack_file.unlink(missing_ok=True)
        readable = True
        try:
            state = _kek_state(data)
        except Exception:  # noqa: BLE001 - a torn key file is exactly what this trial looks for
            readable, state = False, KekState(set(), set(), "", set())
        trial = RotationTrial(trial=i, delay_s=round(delay, 3), rotations_acked=len(acks), in_flight=begun is not None,
                              traces=traces, decrypted=0, verify_problems=0, missing_keks=len(state.used - state.held),
                              stale_keks_after_kill=0, stale_keks_after_next_rotation=0,
                              verify_problems_after_next_rotation=0, key_file_readable=readable, child_error=error)
        if readable:
            trial.stale_keks_after_kill = len(state.stale)
            mem = open_memory(data, emb)
            try:
                trial.decrypted = sum(len(mem.list_traces(namespace=ns, limit=10**7)) for ns in mem.namespaces())
                trial.verify_problems = len(mem.verify().problems)
                mem.rotate_keys()
                trial.verify_problems_after_next_rotation = len(mem.verify().problems)
            finally:
                mem.close()
            state = _kek_state(data)
            trial.stale_keks_after_next_rotation = len(state.stale)
            trial.never_used_keks = len(state.never_used)
        out.append(trial)
        if trial.failed:
            log(f"rotation trial {i + 1}/{trials}: FAIL {asdict(trial)}")
    totals = {"rotations_acked": sum(t.rotations_acked for t in out),
              "decrypt_failures": sum(t.traces - t.decrypted for t in out),
              "verify_problems": sum(t.verify_problems for t in out),
              "missing_keks": sum(t.missing_keks for t in out),
              "trials_leaving_a_stale_kek": sum(t.stale_keks_after_kill > 0 for t in out),
              "stale_keks_after_next_rotation": sum(t.stale_keks_after_next_rotation for t in out),
              "never_used_keks_in_key_file_at_end": out[-1].never_used_keks if out else 0,
              "unreadable_key_files": sum(not t.key_file_readable for t in out)}
    return Summary(trials=len(out), failed=sum(t.failed for t in out), killed_mid_operation=sum(t.in_flight for t in out),
                   totals=totals, seconds=round(time.perf_counter() - t0, 1),
                   notes=[f"{traces} traces; one rotation took {one * 1000:.0f} ms in the checking process"]), out


# ------------------------------------------------------------------------------------- entry points
def run(*, trials: int = 200, per_store: int = 25, max_ops: int = 30, rotation_trials: int = 20,
        rotation_traces: int = 300, consolidation_trials: int = 3, consolidation_steps: int = 2, seed: int = 0,
        embedder: EmbedderName = "minilm", out: Path | None = None, work_dir: Path | None = None,
        log: Callable[[str], None] = lambda _m: None, model_factory: Callable[[], tuple[Any, Any]] | None = None,
        ) -> CrashReport:
    """Run the write, rotation and consolidation kill trials; see the module docstring.

    A write trial kills its child during operation ``k + 1``, ``k`` drawn from 0..``max_ops``.
    ``model_factory`` replaces the configured language model in the consolidation trials (tests).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # forked children must not inherit a tokenizer pool
    emb = load_embedder(embedder)
    emb.embed(["warm up"])  # load lazily-built parts once, before the first fork
    with tempfile.TemporaryDirectory(prefix="hei-crash-", dir=work_dir) as tmp:
        root = Path(tmp)
        write, wt = _write_trials(root, emb, trials=trials, per_store=per_store, max_ops=max_ops, seed=seed, log=log)
        rot, rt = _rotation_trials(root, emb, trials=rotation_trials, traces=rotation_traces, seed=seed, log=log)
        if consolidation_trials > 0:
            con, ct = run_consolidation_trials(root, emb, trials=consolidation_trials, steps=consolidation_steps,
                                            seed=seed, log=log, model_factory=model_factory)
        else:
            con, ct = Summary(notes=["not run (--consolidation-trials 0)"]), []
    report = CrashReport(
        embedder=embedder, seed=seed, write=write, rotation=rot, consolidation=con,
        failures=write.failed + rot.failed + con.failed, write_trials=[asdict(t) for t in wt],
        rotation_trials=[asdict(t) for t in rt], consolidation_trials=[asdict(t) for t in ct])
    if out is not None:
        write_json(report, out)
    return report


def summary(r: CrashReport) -> str:
    w, ro, c = r.write, r.rotation, r.consolidation
    return "\n".join([
        f"crash: {r.failures} failed trial(s)",
        (f"  writes: {w.trials} SIGKILLs ({w.killed_mid_operation} mid-operation), {w.totals.get('acked_ops', 0)} acknowledged "
        f"operations; lost {w.totals.get('lost', 0)}, resurrected {w.totals.get('resurrected', 0)}, unexpected "
        f"{w.totals.get('unexpected', 0)}, verify problems {w.totals.get('verify_problems', 0)}, integrity failures "
        f"{w.totals.get('integrity_not_ok', 0)}; stale index files caught up in {w.totals.get('trials_with_stale_index_file', 0)} "
        f"trials, index mismatches after reopen {w.totals.get('index_mismatch', 0)}; recall {w.totals.get('recall_checked', 0) - w.totals.get('recall_missed', 0)}"
        f"/{w.totals.get('recall_checked', 0)}"),
        (f"  key rotation: {ro.trials} SIGKILLs ({ro.killed_mid_operation} mid-rotation); decrypt failures "
        f"{ro.totals.get('decrypt_failures', 0)}, verify problems {ro.totals.get('verify_problems', 0)}, missing keys "
        f"{ro.totals.get('missing_keks', 0)}, stale keys after the next rotation {ro.totals.get('stale_keks_after_next_rotation', 0)}"
        f" (left by a kill: {ro.totals.get('trials_leaving_a_stale_kek', 0)} trials)"),
        (f"  consolidation: {c.trials} SIGKILLs ({c.killed_mid_operation} before finishing); served adapter changed to an "
        f"unfinished one {c.totals.get('served_changed_to_unfinished', 0)}, unloadable {c.totals.get('unloadable', 0)}; "
        f"recovered {c.totals.get('recovered', 0)}"),
    ])


def register(subparsers: Any) -> None:
    """Add ``crash`` under ``hei-nw reliability``."""
    p = subparsers.add_parser("crash", help="SIGKILL writers, key rotations and consolidations; reopen and check")
    p.add_argument("--trials", type=int, default=200, help="write trials (each one SIGKILL)")
    p.add_argument("--per-store", type=int, default=25, help="write trials sharing one store before a fresh one")
    p.add_argument("--max-ops", type=int, default=30, help="a write trial kills during operation k+1, k drawn from 0..max-ops")
    p.add_argument("--rotation-trials", type=int, default=20)
    p.add_argument("--rotation-traces", type=int, default=300, help="traces whose keys each rotation re-wraps")
    p.add_argument("--consolidation-trials", type=int, default=3, help="kills during a real SmolLM2 consolidation (slow)")
    p.add_argument("--consolidation-steps", type=int, default=2, help="optimizer steps per consolidation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embedder", choices=["minilm", "hashing"], default="minilm")
    p.add_argument("--out", type=Path, default=Path("reports/reliability/crash.json"))
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> None:
    r = run(trials=args.trials, per_store=args.per_store, max_ops=args.max_ops, rotation_trials=args.rotation_trials,
            rotation_traces=args.rotation_traces, consolidation_trials=args.consolidation_trials,
            consolidation_steps=args.consolidation_steps, seed=args.seed, embedder=args.embedder, out=args.out,
            log=lambda m: print(m, flush=True))
    print(summary(r))
    print(f"written to {args.out}")
    if r.failures:
        raise SystemExit(1)

"""Disk full: the store (SQLite, its WAL, the key file, the index) and the index alone on a small file system.

``hei-nw reliability diskfull --size-mb 8 --rounds 3 --out reports/reliability/diskfull.json``

Two scenarios, each on a fresh tmpfs of ``--size-mb`` (mounted for the check, unmounted after):

* **store**: the whole data folder is on it. Writes, batches, deletes, pins, key rotations,
  evictions and recalls run until writes keep failing; each round a filler file takes half
  the free space first, then goes. Every failing call must raise
  :class:`DiskFullError` (a clear error that names the disk and says nothing was stored).
* **index**: only the index folder is on it; SQLite has room. Writes must keep succeeding
  while index saves fail (they log and leave the store as the source of truth).

After the last round the file system grows to twice its size (space returns, as an operator
would give it), and the same memory keeps writing (no reopen), then closes; a fresh one
must find every acknowledged write with its text and no acknowledged delete, no write
whose call failed, SQLite's ``integrity_check`` ok, ``verify()`` clean, each index equal
to the store's rows once opened, no temp file left, and recall of a sample of
acknowledged texts finds them.

Mounting needs root (or CAP_SYS_ADMIN); without it the check reports why it did not run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hei_nw_eval.reliability.faults import EmbedderName, event_text, integrity_check, load_embedder, write_json
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import Embedder
from hei_nw_plugin.errors import DiskFullError, HeiNwError
from hei_nw_plugin.memory import HEIMemory

NAMESPACES = ("alice", "bob")
STOP_AFTER_FAILURES = 12  # consecutive failed writes that end a round's fill
RECALL_SAMPLE = 20


def can_mount(where: Path) -> str | None:
    """None when a tmpfs can be mounted here, else why not."""
    if shutil.which("mount") is None:
        return "no mount command"
    probe = where / "mount-probe"
    probe.mkdir(parents=True, exist_ok=True)
    try:
        with tmpfs(probe, 1):
            return None
    except (OSError, subprocess.CalledProcessError) as err:
        return f"cannot mount a tmpfs ({getattr(err, 'stderr', b'') or err}); the check needs root or CAP_SYS_ADMIN"
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


@contextlib.contextmanager
def tmpfs(folder: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` MB mounted on ``folder`` (created), unmounted on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(folder)], check=True,
                   capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


@dataclass
class Scenario:
    """One scenario's counts (bytes as named)."""

    name: str
    what_is_full: str
    fs_bytes: int
    rounds: int = 0
    calls: dict[str, dict[str, int]] = field(default_factory=dict)  # op -> outcome -> count
    acked_events: int = 0
    failed_writes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)
    unclear_errors: int = 0  # failures that were not DiskFullError (must be 0)
    index_saves_failed: int = 0  # failed saves of index files and lexical indexes (logged warnings)
    writes_after_space_returned: int = 0
    writes_failed_after_space_returned: int = 0
    close_error: str | None = None  # closing the memory once space returned failed (must be None)
    lost: int = 0
    wrong_text: int = 0
    resurrected: int = 0
    failed_writes_present: int = 0  # a write whose call failed, found stored (must be 0: nothing was stored)
    integrity: str = ""
    verify_problems: int = 0
    index_mismatch: int = 0
    leftover_temp_files: int = 0
    recall_checked: int = 0
    recall_missed: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.close_error or self.unclear_errors or self.lost or self.wrong_text or self.resurrected or self.failed_writes_present
                    or self.integrity != "ok" or self.verify_problems or self.index_mismatch or self.leftover_temp_files
                    or self.recall_missed or self.writes_failed_after_space_returned or not self.writes_after_space_returned
                    or (self.name == "store" and not self.failed_writes) or (self.name == "index" and self.failed_writes)
                    or (self.name == "index" and not self.index_saves_failed))


@dataclass
class DiskFullReport:
    """``hei-nw reliability diskfull`` output."""

    embedder: str
    seed: int
    size_mb: int
    skipped: str | None
    scenarios: list[Scenario]
    ok: bool


class _Counting(logging.Handler):
    """Counts the warnings of failed saves of derived files (HNSW graphs and lexical indexes)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.index_saves_failed = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "not saved" in record.getMessage():
            self.index_saves_failed += 1


@dataclass
class _Ledger:
    live: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (ns, text)
    deleted: set[str] = field(default_factory=set)
    unsure: set[str] = field(default_factory=set)  # deletes whose call failed: there or not
    failed_texts: set[str] = field(default_factory=set)


def _settings(data: Path) -> HeiNwSettings:
    return HeiNwSettings.build(store={"data_dir": data}, index={"save_every": 5})


def _op(sc: Scenario, led: _Ledger, mem: HEIMemory, rng: random.Random, n: int, *, writes_only: bool = False) -> bool:
    """One random call; returns whether it was a write that failed."""
    r = 0.0 if writes_only else rng.random()
    ns = rng.choice(NAMESPACES)
    kind = "write" if r < 0.55 else "write_many" if r < 0.75 else "delete" if r < 0.85 else "pin" if r < 0.9 \
        else "recall" if r < 0.96 else "evict" if r < 0.98 else "rotate_keys"
    texts: list[str] = []
    target: str | None = None
    try:
        if kind in ("write", "write_many"):
            texts = [event_text(rng, f"Disk probe {sc.name}-{n}.{j}") for j in range(1 if kind == "write" else 5)]
            ids = [d.trace_id for d in mem.write_many([{"text": t, "force": True} for t in texts], namespace=ns)]
            led.live.update({i: (ns, t) for i, t in zip(ids, texts, strict=True) if i})
            sc.acked_events += len(texts)
        elif kind in ("delete", "pin", "recall") and led.live:
            target = rng.choice(sorted(led.live))
            tns, text = led.live[target]
            if kind == "delete":
                mem.delete(target, namespace=tns)
                led.deleted.add(target)
                del led.live[target]
            elif kind == "pin":
                mem.pin(target, namespace=tns)
            else:
                mem.recall(text, 5, namespace=tns)
        elif kind == "evict":
            mem.evict(namespace=ns)  # no TTL or capacity set: it reads and deletes nothing, but must not fail oddly
        elif kind == "rotate_keys":
            mem.rotate_keys()
        outcome = "ok"
    except HeiNwError as err:
        outcome = type(err).__name__
        sc.error_examples.setdefault(outcome, f"{kind}: {err}")
        if not isinstance(err, DiskFullError):
            sc.unclear_errors += 1
        if kind in ("write", "write_many"):
            sc.failed_writes += 1
            led.failed_texts |= set(texts)
        if kind == "delete" and target is not None:
            led.unsure.add(target)
            led.live.pop(target, None)
    except Exception as err:  # noqa: BLE001 - not an error on purpose: a defect, counted and named
        outcome = type(err).__name__
        sc.unclear_errors += 1
        sc.error_examples.setdefault(outcome, f"{kind}: {err}")
        if kind in ("write", "write_many"):
            sc.failed_writes += 1
            led.failed_texts |= set(texts)
    sc.calls.setdefault(kind, {}).setdefault(outcome, 0)
    sc.calls[kind][outcome] += 1
    if outcome != "ok":
        sc.errors[outcome] = sc.errors.get(outcome, 0) + 1
    return outcome != "ok" and kind in ("write", "write_many")


def _fill_round(sc: Scenario, led: _Ledger, mem: HEIMemory, full_dir: Path, rng: random.Random, start: int,
                max_calls: int, saves_failed: Callable[[], int]) -> int:
    """Take half the free space with a filler file, call until the disk is full, then free the filler.

    The store scenario is full once writes keep failing; the index scenario once index saves
    have failed a few times (its writes must not fail).
    """
    filler = full_dir / "filler"
    with filler.open("wb") as fh:
        fh.write(b"\0" * (free_bytes(full_dir) // 2))
    streak, n, saves_before = 0, start, saves_failed()
    try:
        while n - start < max_calls:
            n += 1
            streak = streak + 1 if _op(sc, led, mem, rng, n) else 0
            if streak >= STOP_AFTER_FAILURES or (sc.name == "index" and saves_failed() - saves_before >= 3):
                break
    finally:
        filler.unlink(missing_ok=True)
    sc.rounds += 1
    return n


def _check_reopened(sc: Scenario, led: _Ledger, data: Path, emb: Embedder, rng: random.Random) -> None:
    sc.integrity = integrity_check(data / "traces.db")
    mem = HEIMemory(_settings(data), embedder=emb)
    try:
        stored: dict[str, tuple[str, str]] = {}
        for ns in NAMESPACES:
            if mem.store.has_namespace(ns):
                stored.update({t.id: (ns, t.text) for t in mem.list_traces(namespace=ns, limit=10**7)})
        for tid, (_ns, text) in led.live.items():
            if tid not in stored:
                sc.lost += 1
                sc.details.append(f"lost {tid}")
            elif stored[tid][1] != text:
                sc.wrong_text += 1
        sc.resurrected = sum(1 for t in led.deleted if t in stored)
        texts = {text for _ns, text in stored.values()}
        sc.failed_writes_present = sum(1 for t in led.failed_texts if t in texts)
        problems = mem.verify().problems
        sc.verify_problems = len(problems)
        sc.details += [f"verify: {p['kind']} {p.get('trace_id')}" for p in problems[:3]]
        for ns in NAMESPACES:
            if mem.store.has_namespace(ns):
                graph = {int(i) for i in mem._graph(ns).ids()}
                sc.index_mismatch += len(graph ^ {int(s) for s in mem.store.seqs(ns)})
        sample = rng.sample(sorted(led.live), min(RECALL_SAMPLE, len(led.live)))
        for tid in sample:
            ns, text = led.live[tid]
            sc.recall_checked += 1
            if tid not in {r.trace.id for r in mem.recall(text, 5, namespace=ns).traces}:
                sc.recall_missed += 1
    finally:
        mem.close()
    sc.leftover_temp_files = sum(1 for p in data.rglob("*.tmp"))


def _scenario(name: str, root: Path, emb: Embedder, *, size_mb: int, rounds: int, max_calls: int, seed: int,
              log: Callable[[str], None]) -> Scenario:
    data = root / name / "data"
    full_dir = data if name == "store" else data / "index"
    rng = random.Random(seed)
    counter = _Counting()
    saves = logging.getLogger("hei_nw_plugin.derived")
    saves.addHandler(counter)
    quiet = logging.getLogger("hei_nw_plugin")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # each failed save and checkpoint logs a warning; the counts are kept here
    saves.setLevel(logging.WARNING)
    try:
        with tmpfs(full_dir, size_mb):
            sc = Scenario(name=name, fs_bytes=free_bytes(full_dir),
                          what_is_full="SQLite database, WAL, key file and index" if name == "store" else "index files only")
            led = _Ledger()
            mem = HEIMemory(_settings(data), embedder=emb)
            n = 0
            for i in range(rounds):
                n = _fill_round(sc, led, mem, full_dir, rng, n, max_calls, lambda: counter.index_saves_failed)
                log(f"  {name}: round {i + 1}/{rounds}: {sc.acked_events} events acknowledged, {sc.failed_writes} writes "
                    f"failed, errors {sc.errors}")
            # Space returns as an operator gives it back: the file system grows to twice its size.
            subprocess.run(["mount", "-o", f"remount,size={2 * size_mb}m", str(full_dir)], check=True, capture_output=True)
            for _ in range(20):  # the same memory must write again without reopening
                n += 1
                failed = _op(sc, led, mem, rng, n, writes_only=True)
                sc.writes_after_space_returned += not failed
                sc.writes_failed_after_space_returned += failed
            try:
                mem.close()
            except Exception as err:  # noqa: BLE001 - counted: closing with room on the disk must work
                sc.close_error = f"{type(err).__name__}: {err}"
            _check_reopened(sc, led, data, emb, rng)
    finally:
        saves.removeHandler(counter)
        saves.setLevel(logging.NOTSET)
        quiet.setLevel(level)
    sc.index_saves_failed = counter.index_saves_failed
    return sc


def run(*, size_mb: int = 8, rounds: int = 3, max_calls: int = 4000, embedder: EmbedderName = "minilm", seed: int = 0,
        out: Path | None = None, work_dir: Path | None = None, log: Callable[[str], None] = lambda _m: None) -> DiskFullReport:
    """Both scenarios; see the module docstring. A machine that cannot mount reports ``skipped`` and ok False."""
    with tempfile.TemporaryDirectory(prefix="hei-diskfull-", dir=work_dir) as tmp:
        root = Path(tmp)
        why = can_mount(root)
        if why is not None:
            report = DiskFullReport(embedder=embedder, seed=seed, size_mb=size_mb, skipped=why, scenarios=[], ok=False)
        else:
            emb = load_embedder(embedder)
            scenarios = [_scenario(name, root, emb, size_mb=size_mb, rounds=rounds, max_calls=max_calls, seed=seed + i,
                                   log=log) for i, name in enumerate(("store", "index"))]
            report = DiskFullReport(embedder=embedder, seed=seed, size_mb=size_mb, skipped=None, scenarios=scenarios,
                                    ok=not any(s.failed for s in scenarios))
    if out is not None:
        write_json(_with_failed(report), out)
    return report


def _with_failed(r: DiskFullReport) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(r)
    for s, d in zip(r.scenarios, data["scenarios"], strict=True):
        d["failed"] = s.failed
    return data


def summary(r: DiskFullReport) -> str:
    if r.skipped:
        return f"diskfull: not run: {r.skipped}"
    out = [f"diskfull: {'ok' if r.ok else 'FAILED'} (tmpfs of {r.size_mb} MB)"]
    for s in r.scenarios:
        out += [
            (f"  {s.name} ({s.what_is_full} on the full disk): {'FAILED' if s.failed else 'ok'}; {s.rounds} rounds, "
             f"{s.acked_events} events acknowledged, {s.failed_writes} writes failed; errors {s.errors or 0} "
             f"(not DiskFullError: {s.unclear_errors}); index saves failed {s.index_saves_failed}"),
            (f"    after space returned: {s.writes_after_space_returned} writes ok, {s.writes_failed_after_space_returned} "
             f"failed; reopened: lost {s.lost}, wrong text {s.wrong_text}, resurrected {s.resurrected}, failed writes "
             f"found stored {s.failed_writes_present}, integrity {s.integrity}, verify problems {s.verify_problems}, index "
             f"mismatches {s.index_mismatch}, temp files left {s.leftover_temp_files}, recall "
             f"{s.recall_checked - s.recall_missed}/{s.recall_checked}"),
        ]
        out += [f"    {k}: {Counter(v).most_common()}" for k, v in sorted(s.calls.items())]
    return "\n".join(out)


def register(subparsers: Any) -> None:
    """Add ``diskfull`` under ``hei-nw reliability``."""
    p = subparsers.add_parser("diskfull", help="fill a small tmpfs under the store and under the index; reopen and check")
    p.add_argument("--size-mb", type=int, default=8, help="size of each tmpfs (MB)")
    p.add_argument("--rounds", type=int, default=3, help="fill-and-free rounds per scenario")
    p.add_argument("--max-calls", type=int, default=4000, help="calls per round at most")
    p.add_argument("--embedder", choices=["minilm", "hashing"], default="minilm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("reports/reliability/diskfull.json"))
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> None:
    r = run(size_mb=args.size_mb, rounds=args.rounds, max_calls=args.max_calls, embedder=args.embedder, seed=args.seed,
            out=args.out, log=lambda m: print(m, flush=True))
    print(summary(r))
    print(f"written to {args.out}")
    if not r.ok:
        raise SystemExit(1)

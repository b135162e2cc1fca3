"""Many writers at once: writer and recall processes on one SQLite store and on one PostgreSQL store.

``hei-nw reliability concurrency --minutes 10 --writers 8 --recallers 4 --out reports/reliability/concurrency.json``

For each backend, ``--writers`` writer processes and ``--recallers`` recall processes
(:mod:`.workers`) share one store and one key file for ``--minutes``, as API replicas, an
import job and a consolidation worker would; a maintenance process rotates the keys and
evicts one namespace to its capacity while they run. Writers update a small set of caller
keys that every writer writes, so newest-wins is tested across processes. Afterwards a fresh
process checks the store (:func:`.workers.check_store`): 0 lost, 0 resurrected, 0 partial
batches, one live version per key and that one the newest, every row decryptable after the
rotation, ``verify()`` clean; and every worker's index, caught up with ``refresh``, equals
the store's rows. Throughput (acknowledged writes and recalls per second, all processes
together) and p50/p95 latency per call are reported, measured on this machine while the
processes shared its cores; a recall's time includes the ``refresh`` before it, as a replica
serving a request does it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hei_nw_eval.reliability import pgserver
from hei_nw_eval.reliability.faults import EmbedderName, load_embedder, write_json
from hei_nw_eval.reliability.workers import (
    Run,
    Shared,
    catch_up_seconds,
    check_store,
    error_examples,
    errors_by_class,
    index_checks,
    percentiles_ms,
    run_workers,
)
from hei_nw_plugin.embed import Embedder

Backend = Literal["sqlite", "postgresql"]
NAMESPACES = ("team-0", "team-1", "team-2")
EVICTED = "evicted"


@dataclass
class BackendResult:
    """One backend's run (seconds, ms, per-second figures over all processes)."""

    backend: str
    seconds: float
    writers: int
    recallers: int
    throughput: dict[str, float]
    latency_ms: dict[str, dict[str, float | None]]
    rotations: list[dict[str, Any]]
    evictions: list[dict[str, Any]]
    keys_written_by_several_processes: int
    recall_hit_rate: float | None
    duplicate_keys_in_recall: int
    errors: dict[str, int]
    error_examples: dict[str, str]
    store: dict[str, Any]
    index: dict[str, int]
    index_catch_up_s: dict[str, float | None]  # each worker's refresh of every namespace once the writers stopped
    exit_codes: dict[str, int]
    crashed: dict[str, str]  # worker -> the exception that ended it
    failures: list[str] = field(default_factory=list)
    ok: bool = False


@dataclass
class ConcurrencyReport:
    """``hei-nw reliability concurrency`` output."""

    embedder: str
    seed: int
    minutes: float
    capacity: int
    results: list[BackendResult]
    load_avg_1min_end: float
    ok: bool


@contextmanager
def _store_settings(backend: Backend, root: Path, admin_url: str) -> Iterator[dict[str, Any]]:
    if backend == "sqlite":
        yield {"store": {"data_dir": root / "data"}}
        return
    with pgserver.fresh_schema(admin_url, prefix="hei_concurrency") as schema:
        yield {"store": {"url": schema.url, "data_dir": root / "data"}}


def run_backend(backend: Backend, emb: Embedder, *, seconds: float, writers: int, recallers: int, rotations: int,
                evictions: int, capacity: int, shared_keys: int, seed: int, admin_url: str, work_dir: Path | None,
                log: Callable[[str], None]) -> BackendResult:
    """One backend's run and check; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix=f"hei-concurrency-{backend}-", dir=work_dir) as tmp, \
            _store_settings(backend, Path(tmp), admin_url) as settings:
        shared = Shared(root=Path(tmp) / "acks", settings=settings, namespaces=NAMESPACES, shared_keys=shared_keys,
                        evict_namespace=EVICTED, seed=seed)
        shared.open(emb).close()  # tables and key file exist before the workers fork
        schedule = [(seconds * (i + 1) / (rotations + 1), "rotate") for i in range(rotations)]
        schedule += [(seconds * (i + 1.5) / (evictions + 1), "evict") for i in range(evictions)]
        log(f"{backend}: {writers} writers + {recallers} recallers + 1 maintenance worker for {seconds:.0f} s")
        run = run_workers(shared, emb, writers=writers, recallers=recallers, seconds=seconds,
                          maintenance_schedule=schedule, capacity=capacity, log=log)
        mem = shared.open(emb)
        try:
            store = check_store(mem, run.acks, [*NAMESPACES, EVICTED])
        finally:
            mem.close()
    return _result(backend, run, store, writers=writers, recallers=recallers, rotations=rotations, evictions=evictions)


def _result(backend: str, run: Run, store: Any, *, writers: int, recallers: int, rotations: int,
            evictions: int) -> BackendResult:
    lines = [a for ls in run.acks.values() for a in ls]
    done = [a for a in lines if "op" in a and "t1" in a]
    writes = [a for a in done if a["op"] in ("write", "write_many", "update")]
    recalls = [a for a in done if a["op"] == "recall"]
    writers_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, ls in run.acks.items():
        for a in ls:
            if a.get("op") == "update":
                writers_of[(a["ns"], a["key"])].add(name)
    reported, mismatch, missing = index_checks(run.acks)
    rot = [{"rewrapped": a["rewrapped"], "seconds": round(a["t1"] - a["t0"], 2)} for a in done if a["op"] == "rotate"]
    ev = [{"evicted": len(a["ids"]), "seconds": round(a["t1"] - a["t0"], 2)} for a in done if a["op"] == "evict"]
    secs = max(run.seconds, 1e-9)
    r = BackendResult(
        backend=backend, seconds=run.seconds, writers=writers, recallers=recallers,
        throughput={"write_calls_per_s": round(len(writes) / secs, 1), "events_per_s": round(store.acked_events / secs, 1),
                    "recalls_per_s": round(len(recalls) / secs, 1),
                    "gets_per_s": round(sum(a["op"] == "get" for a in done) / secs, 1)},
        latency_ms={"write": percentiles_ms([a["t1"] - a["t0"] for a in writes]),
                    "delete": percentiles_ms([a["t1"] - a["t0"] for a in done if a["op"] == "delete"]),
                    "recall": percentiles_ms([a["t1"] - a["t0"] for a in recalls]),
                    "get": percentiles_ms([a["t1"] - a["t0"] for a in done if a["op"] == "get"])},
        rotations=rot, evictions=ev, keys_written_by_several_processes=sum(len(w) > 1 for w in writers_of.values()),
        recall_hit_rate=round(sum(a["hit"] for a in recalls) / len(recalls), 3) if recalls else None,
        duplicate_keys_in_recall=sum(a["duplicate_keys"] for a in recalls), errors=errors_by_class(run.acks),
        error_examples=error_examples(run.acks), store=asdict(store) | {"failed": store.failed},
        index={"workers_reported": reported, "mismatch": mismatch, "workers_missing": missing},
        index_catch_up_s=catch_up_seconds(run.acks), exit_codes=run.exit_codes,
        crashed=run.crashed)
    checks = {
        "acknowledged writes lost or wrong, deletes undone, partial batches, keys or verify() problems": store.failed,
        "a call failed": bool(r.errors),
        "a recall returned two versions of one key": r.duplicate_keys_in_recall > 0,
        "an index did not catch up with the store, or a worker never reported": mismatch > 0 or missing > 0,
        "a worker exited abnormally": any(c != 0 for c in run.exit_codes.values()),
        f"fewer than {rotations} key rotations ran": len(rot) < rotations,
        f"fewer than {evictions} evictions ran": len(ev) < evictions,
        "no key was written by two processes": r.keys_written_by_several_processes == 0,
    }
    r.failures = [what for what, bad in checks.items() if bad]
    r.ok = not r.failures
    return r


def run(*, minutes: float = 10.0, writers: int = 8, recallers: int = 4, rotations: int = 1, evictions: int = 2,
        capacity: int = 40, shared_keys: int = 8, backends: tuple[Backend, ...] = ("sqlite", "postgresql"),
        embedder: EmbedderName = "minilm", seed: int = 0, admin_url: str = pgserver.DEFAULT_URL, out: Path | None = None,
        work_dir: Path | None = None, log: Callable[[str], None] = lambda _m: None) -> ConcurrencyReport:
    """Run each backend in turn (not at once: they would share the cores); see the module docstring."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    emb = load_embedder(embedder, threads=1)
    emb.embed(["warm up"])  # loaded once, before the workers fork
    results = [run_backend(b, emb, seconds=minutes * 60, writers=writers, recallers=recallers, rotations=rotations,
                           evictions=evictions, capacity=capacity, shared_keys=shared_keys, seed=seed, admin_url=admin_url,
                           work_dir=work_dir, log=log) for b in backends]
    report = ConcurrencyReport(embedder=embedder, seed=seed, minutes=minutes, capacity=capacity, results=results,
                               load_avg_1min_end=round(os.getloadavg()[0], 2), ok=all(r.ok for r in results))
    if out is not None:
        write_json(report, out)
    return report


def summary(r: ConcurrencyReport) -> str:
    out = [f"concurrency: {'ok' if r.ok else 'FAILED'} ({r.minutes:g} min per backend, embedder {r.embedder})"]
    for b in r.results:
        s = b.store
        out += [
            (f"  {b.backend}: {'ok' if b.ok else 'FAILED: ' + '; '.join(b.failures)}; {b.writers} writers + {b.recallers} "
             f"recallers + maintenance for {b.seconds:.0f} s"),
            (f"    {s['acked_events']} events acknowledged ({b.throughput['events_per_s']}/s, {b.throughput['write_calls_per_s']} "
             f"write calls/s), {b.throughput['recalls_per_s']} recalls/s; write p50/p95 {b.latency_ms['write']['p50']}/"
             f"{b.latency_ms['write']['p95']} ms, recall p50/p95 {b.latency_ms['recall']['p50']}/{b.latency_ms['recall']['p95']} ms"),
            (f"    lost {s['lost']}, resurrected {s['resurrected']}, unexpected {s['unexpected']}, partial batches "
             f"{s['partial_batches']}, duplicated keys {s['duplicated_keys']}, newest-wins violations "
             f"{s['newest_wins_violations']} ({s['keys']} keys, {b.keys_written_by_several_processes} written by several "
             f"processes), undecryptable {s['undecryptable']}, verify problems {s['verify_problems']}"),
            (f"    rotations {b.rotations}, evictions {b.evictions}; index mismatches {b.index['mismatch']} (catch-up "
             f"p50/max {b.index_catch_up_s['p50']}/{b.index_catch_up_s['max']} s); errors "
             f"{b.errors or 0}; recall hit rate {b.recall_hit_rate}"),
        ]
    return "\n".join(out)


def register(subparsers: Any) -> None:
    """Add ``concurrency`` under ``hei-nw reliability``."""
    p = subparsers.add_parser("concurrency", help="many writer and recall processes on one SQLite and one PostgreSQL store")
    p.add_argument("--minutes", type=float, default=10.0, help="run length per backend")
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--recallers", type=int, default=4)
    p.add_argument("--rotations", type=int, default=1, help="key rotations during each run")
    p.add_argument("--evictions", type=int, default=2, help="capacity evictions of one namespace during each run")
    p.add_argument("--capacity", type=int, default=40, help="capacity of the evicted namespace (traces)")
    p.add_argument("--shared-keys", type=int, default=8, help="caller keys per namespace that every writer updates")
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    p.add_argument("--embedder", choices=["minilm", "hashing"], default="minilm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--url", default=pgserver.DEFAULT_URL, help="PostgreSQL server (a fresh schema is made in its database)")
    p.add_argument("--out", type=Path, default=Path("reports/reliability/concurrency.json"))
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> None:
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    bad = [b for b in backends if b not in ("sqlite", "postgresql")]
    if bad or not backends:
        raise SystemExit(f"--backends takes sqlite and/or postgresql, got {args.backends!r}")
    r = run(minutes=args.minutes, writers=args.writers, recallers=args.recallers, rotations=args.rotations,
            evictions=args.evictions, capacity=args.capacity, shared_keys=args.shared_keys,
            backends=backends,  # type: ignore[arg-type]
            embedder=args.embedder, seed=args.seed, admin_url=args.url, out=args.out, log=lambda m: print(m, flush=True))
    print(summary(r))
    print(f"written to {args.out}")
    if not r.ok:
        raise SystemExit(1)

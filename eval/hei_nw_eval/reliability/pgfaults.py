"""PostgreSQL faults: the real server restarts, and our backends are terminated, while writers and recallers run.

``hei-nw reliability pgfaults --seconds 180 --restarts 4 --terminations 4 --outages 1 --out reports/reliability/pgfaults.json``

Writer and recaller processes (:mod:`.workers`) share one store in a fresh schema of the
server on 127.0.0.1:5432. While they run, the checker restarts the server
(``pg_ctlcluster … restart``), terminates every backend of the run
(``pg_terminate_backend``, picked by the run's ``application_name``), and stops the server
for longer than ``store.reconnect_s`` (an outage). No worker reopens its memory. The check
requires:

* every acknowledged write present with its text, every acknowledged delete absent, every
  unacknowledged batch all there or all absent, one live version per key, ``verify()`` clean;
* after every fault, every worker has an operation acknowledged again (the engine reconnected
  by itself), and its index catches up with the store at the end;
* every call that failed raised a :class:`RuntimeFault` whose message names the server, and
  no call, failed or not, took longer than ``reconnect_s`` plus two connect timeouts plus 5 s.

Restarts and terminations are short enough for the store's retries to absorb, so callers
should see no error at all; the outage is not, and callers see StoreUnavailableError after
``reconnect_s``. The server is started again whatever happens to the check.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hei_nw_eval.reliability import pgserver
from hei_nw_eval.reliability.faults import EmbedderName, load_embedder, write_json
from hei_nw_eval.reliability.workers import (
    Run,
    Shared,
    check_store,
    error_examples,
    errors_by_class,
    index_checks,
    percentiles_ms,
    run_workers,
)
from hei_nw_plugin.errors import ConfigError

NAMESPACES = ("alice", "bob")
SLACK_S = 5.0


@dataclass
class Fault:
    """One fault done to the server, and how the workers came through it (s)."""

    kind: str  # restart | terminate | outage
    at_s: float  # from the run's start
    down_s: float  # how long the command (restart, or stop + wait + start) took
    terminated: int = 0  # backends ended (terminate)
    failed_calls: int = 0  # calls that raised, running at some moment from the fault's start until the workers recovered
    recovered_s: float | None = None  # from the fault's end until every worker had an operation acknowledged again
    workers_recovered: int = 0
    start: float = 0.0  # time.monotonic() of the fault's start and end
    end: float = 0.0


@dataclass
class PgFaultsReport:
    """``hei-nw reliability pgfaults`` output."""

    server: str
    embedder: str
    seed: int
    seconds: float
    writers: int
    recallers: int
    reconnect_s: float
    connect_timeout_s: int
    faults: list[Fault]
    ops: dict[str, int]
    latency_ms: dict[str, dict[str, float | None]]
    errors: dict[str, int]  # failed calls by error class
    error_examples: dict[str, str]  # the first message of each class, and the call that raised it
    non_runtime_faults: int
    unnamed_errors: int  # failed calls whose message does not name the server
    call_bound_s: float
    longest_call_s: float
    calls_over_bound: int
    workers_not_recovered: int
    store: dict[str, Any]
    index: dict[str, int]
    exit_codes: dict[str, int]
    crashed: dict[str, str]  # worker -> the exception that ended it
    failures: list[str] = field(default_factory=list)
    ok: bool = False


def _fault_action(kind: str, schema: pgserver.Schema, outage_s: float, faults: list[Fault],
                  start: Callable[[], float]) -> Callable[[], dict[str, Any]]:
    def act() -> dict[str, Any]:
        t0 = time.monotonic()
        terminated = 0
        if kind == "restart":
            pgserver.ctl("restart", schema.admin)
        elif kind == "terminate":
            terminated = pgserver.terminate(schema)
        else:
            pgserver.ctl("stop", schema.admin)
            try:
                time.sleep(outage_s)
            finally:
                pgserver.ctl("start", schema.admin)
        t1 = time.monotonic()
        faults.append(Fault(kind=kind, at_s=round(t0 - start(), 2), down_s=round(t1 - t0, 2), terminated=terminated,
                            start=t0, end=t1))
        return {"fault": kind, "seconds": round(t1 - t0, 2), "terminated": terminated}
    return act


def _recovery(fault: Fault, run: Run, next_start: float | None) -> None:
    """When each worker had an operation acknowledged after ``fault`` ended; the failed calls it caused.

    A failed call counts when it ran at some moment from the fault's start until then: one begun
    just before the server went away waits out its retries in the fault, as one begun in it does.
    """
    latest = fault.end
    recovered = 0
    for lines in run.acks.values():
        first = next((a["t1"] for a in lines if "op" in a and "t1" in a and a["t1"] > fault.end
                      and (next_start is None or a["t1"] < next_start)), None)
        if first is not None:
            recovered += 1
            latest = max(latest, first)
    fault.workers_recovered = recovered
    fault.recovered_s = round(latest - fault.end, 2) if recovered == len(run.acks) else None
    fault.failed_calls = sum(1 for lines in run.acks.values() for a in lines
                             if "failed" in a and a["t0"] <= latest and a["t1"] >= fault.start)


def run(*, seconds: float = 180.0, restarts: int = 4, terminations: int = 4, outages: int = 1, writers: int = 4,
        recallers: int = 2, reconnect_s: float = 5.0, connect_timeout_s: int = 3, embedder: EmbedderName = "minilm",
        seed: int = 0, admin_url: str = pgserver.DEFAULT_URL, out: Path | None = None, work_dir: Path | None = None,
        log: Callable[[str], None] = lambda _m: None) -> PgFaultsReport:
    """Run the workers under the fault schedule and check the store; see the module docstring."""
    if pgserver.cluster(admin_url) is None:
        raise ConfigError("pgfaults restarts the server with pg_ctlcluster; it is not installed here, or no local "
                          f"cluster listens on the port of {admin_url}")
    if (why := pgserver.reachable(admin_url)) is not None:
        raise ConfigError(f"PostgreSQL at {admin_url} is not reachable: {why}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    emb = load_embedder(embedder)
    emb.embed(["warm up"])  # loaded once, before the workers fork
    outage_s = reconnect_s + 4.0
    kinds = ["restart"] * restarts + ["terminate"] * terminations + ["outage"] * outages
    random.Random(seed).shuffle(kinds)
    faults: list[Fault] = []
    with pgserver.fresh_schema(admin_url, prefix="hei_pgfaults") as schema, \
            tempfile.TemporaryDirectory(prefix="hei-pgfaults-", dir=work_dir) as tmp:
        root = Path(tmp)
        shared = Shared(root=root / "acks", namespaces=NAMESPACES, seed=seed, settings={
            "store": {"url": schema.url, "data_dir": root / "data", "reconnect_s": reconnect_s,
                      "connect_timeout_s": connect_timeout_s}})
        shared.open(emb).close()  # tables and key file exist before the workers fork
        t_start = [0.0]
        span = (0.15 * seconds, 0.85 * seconds)
        actions = [(span[0] + (span[1] - span[0]) * i / max(1, len(kinds) - 1) if len(kinds) > 1 else seconds / 2,
                    _fault_action(k, schema, outage_s, faults, lambda: t_start[0])) for i, k in enumerate(kinds)]
        t_start[0] = time.monotonic()
        try:
            result = run_workers(shared, emb, writers=writers, recallers=recallers, seconds=seconds,
                                 parent_actions=actions, log=log)
        finally:
            pgserver.ensure_up(admin_url)
        mem = shared.open(emb)
        try:
            store = check_store(mem, result.acks, list(NAMESPACES))
        finally:
            mem.close()
    starts = [f.start for f in faults] + [None]
    for f, nxt in zip(faults, starts[1:], strict=True):
        _recovery(f, result, nxt)
    return _report(result, faults, store, seconds=seconds, writers=writers, recallers=recallers, reconnect_s=reconnect_s,
                   connect_timeout_s=connect_timeout_s, embedder=embedder, seed=seed, admin_url=admin_url, out=out)


def _report(result: Run, faults: list[Fault], store: Any, *, seconds: float, writers: int, recallers: int,
            reconnect_s: float, connect_timeout_s: int, embedder: str, seed: int, admin_url: str,
            out: Path | None) -> PgFaultsReport:
    lines = [a for ls in result.acks.values() for a in ls]
    failed = [a for a in lines if "failed" in a]
    done = [a for a in lines if "op" in a and "t1" in a]
    bound = reconnect_s + 2 * connect_timeout_s + SLACK_S
    durations = [a["t1"] - a["t0"] for a in done + failed]
    reported, mismatch, missing = index_checks(result.acks)
    ops = {"write_calls": sum(a["op"] in ("write", "write_many", "update") for a in done),
           "events_acknowledged": store.acked_events, "deletes": store.acked_deletes,
           "recalls": sum(a["op"] == "recall" for a in done), "gets": sum(a["op"] == "get" for a in done),
           "failed_calls": len(failed), "live_rows_after": store.live_rows}
    report = PgFaultsReport(
        server=_server_name(admin_url), embedder=embedder, seed=seed, seconds=result.seconds, writers=writers,
        recallers=recallers, reconnect_s=reconnect_s, connect_timeout_s=connect_timeout_s, faults=faults, ops=ops,
        latency_ms={"write": percentiles_ms([a["t1"] - a["t0"] for a in done if a["op"] in ("write", "write_many", "update")]),
                    "recall": percentiles_ms([a["t1"] - a["t0"] for a in done if a["op"] == "recall"])},
        errors=errors_by_class(result.acks), error_examples=error_examples(result.acks), non_runtime_faults=sum(not a["runtime_fault"] for a in failed),
        unnamed_errors=sum("PostgreSQL at" not in a["message"] for a in failed), call_bound_s=bound,
        longest_call_s=round(max(durations, default=0.0), 2), calls_over_bound=sum(d > bound for d in durations),
        workers_not_recovered=sum(len(result.acks) - f.workers_recovered for f in faults),
        store=asdict(store) | {"failed": store.failed}, index={"workers_reported": reported, "mismatch": mismatch,
                                                                "workers_missing": missing},
        exit_codes=result.exit_codes, crashed=result.crashed)
    checks = {
        "acknowledged writes lost or wrong, deletes undone, partial batches, keys or verify() problems": store.failed,
        "a call failed with an error that is not a RuntimeFault": report.non_runtime_faults > 0,
        "a failed call's message does not name the server": report.unnamed_errors > 0,
        f"a call took longer than {bound:g} s": report.calls_over_bound > 0,
        "a worker had no operation acknowledged after a fault": report.workers_not_recovered > 0,
        "an index did not catch up with the store, or a worker never reported": mismatch > 0 or missing > 0,
        "a worker exited abnormally": any(c != 0 for c in result.exit_codes.values()),
        "a fault did not run": len(faults) == 0,
    }
    report.failures = [what for what, bad in checks.items() if bad]
    report.ok = not report.failures
    if out is not None:
        write_json(report, out)
    return report


def _server_name(admin_url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(admin_url)
    try:
        version = pgserver._sql(admin_url, "SHOW server_version")
    except Exception:  # noqa: BLE001 - the name is informative only
        version = "?"
    return f"PostgreSQL {version} at {u.host}:{u.port or 5432}/{u.database}"


def summary(r: PgFaultsReport) -> str:
    s = r.store
    kinds = ", ".join(f"{f.kind} at {f.at_s:.0f} s ({f.down_s:.1f} s down, recovered "
                      f"{'NOT' if f.recovered_s is None else f'in {f.recovered_s:.1f} s'}, {f.failed_calls} failed calls)"
                      for f in r.faults)
    return "\n".join([
        f"pgfaults: {'ok' if r.ok else 'FAILED: ' + '; '.join(r.failures)}",
        f"  {r.server}, {r.writers} writers + {r.recallers} recallers for {r.seconds:.0f} s; faults: {kinds}",
        (f"  {s['acked_events']} events acknowledged, {s['acked_deletes']} deletes; lost {s['lost']}, wrong text "
         f"{s['wrong_text']}, resurrected {s['resurrected']}, partial batches {s['partial_batches']}, unacknowledged "
         f"batches present/absent {s['failed_writes_present']}/{s['failed_writes_absent']}, duplicated keys "
         f"{s['duplicated_keys']}, verify problems {s['verify_problems']}"),
        (f"  failed calls {r.ops['failed_calls']} {r.errors or ''}; not RuntimeFault {r.non_runtime_faults}; not naming "
         f"the server {r.unnamed_errors}; longest call {r.longest_call_s:.2f} s (bound {r.call_bound_s:g} s); index "
         f"mismatches {r.index['mismatch']}"),
        (f"  write p50/p95 {r.latency_ms['write']['p50']}/{r.latency_ms['write']['p95']} ms, recall p50/p95 "
         f"{r.latency_ms['recall']['p50']}/{r.latency_ms['recall']['p95']} ms"),
    ])


def register(subparsers: Any) -> None:
    """Add ``pgfaults`` under ``hei-nw reliability``."""
    p = subparsers.add_parser("pgfaults", help="restart PostgreSQL and terminate its backends under writers and recallers")
    p.add_argument("--seconds", type=float, default=180.0, help="how long the workers run")
    p.add_argument("--restarts", type=int, default=4, help="pg_ctlcluster restarts during the run")
    p.add_argument("--terminations", type=int, default=4, help="pg_terminate_backend of every backend of the run")
    p.add_argument("--outages", type=int, default=1, help="server stops lasting reconnect-s + 4 s")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--recallers", type=int, default=2)
    p.add_argument("--reconnect-s", type=float, default=5.0, help="store.reconnect_s of the workers (s)")
    p.add_argument("--connect-timeout-s", type=int, default=3, help="store.connect_timeout_s of the workers (s)")
    p.add_argument("--embedder", choices=["minilm", "hashing"], default="minilm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--url", default=pgserver.DEFAULT_URL, help="the server (a fresh schema is made in its database)")
    p.add_argument("--out", type=Path, default=Path("reports/reliability/pgfaults.json"))
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> None:
    r = run(seconds=args.seconds, restarts=args.restarts, terminations=args.terminations, outages=args.outages,
            writers=args.writers, recallers=args.recallers, reconnect_s=args.reconnect_s,
            connect_timeout_s=args.connect_timeout_s, embedder=args.embedder, seed=args.seed, admin_url=args.url,
            out=args.out, log=lambda m: print(m, flush=True))
    print(summary(r))
    print(f"written to {args.out}")
    if not r.ok:
        raise SystemExit(1)

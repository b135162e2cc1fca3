"""``hei-nw`` command line: write, import, recall, delete, pin, verify, rotate-keys, backup, stats, metrics, bench, demo.

Other parts of the project add subcommands (eval, report, serve, consolidate)
through ``register(subparsers)`` functions listed in :data:`EXTENSIONS`; a
missing extension is skipped so the engine's CLI works without extras.
Errors from the engine print one line and exit with status 2 (caller error)
or 1 (runtime fault).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

EXTENSIONS = ["hei_nw_eval.cli", "hei_nw_plugin.model.cli", "hei_nw_plugin.consolidate_cli", "server.cli"]


def _settings(args: argparse.Namespace) -> Any:
    from hei_nw_plugin.config import HeiNwSettings

    over: dict[str, Any] = {}
    if args.data_dir:
        over["store"] = {"data_dir": Path(args.data_dir)}
    if args.store_url:
        over.setdefault("store", {})["url"] = args.store_url
    if args.config:
        return HeiNwSettings.from_file(args.config, **over)
    return HeiNwSettings.build(**over)


def _memory(args: argparse.Namespace) -> Any:
    from hei_nw_plugin.memory import HEIMemory

    return HEIMemory(_settings(args))


def _slots(pairs: list[str] | None) -> dict[str, str]:
    from hei_nw_plugin.errors import InvalidEventError

    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise InvalidEventError(f"--slot expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _print(obj: Any) -> None:
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    print(json.dumps(obj, indent=2, default=str))


def cmd_write(args: argparse.Namespace) -> None:
    with _memory(args) as mem:
        ev = {"text": args.text, "slots": _slots(args.slot), "pin": args.pin, "reward": args.reward}
        if args.key:
            ev["key"] = args.key
        _print(mem.write(ev, namespace=args.namespace))


def cmd_import(args: argparse.Namespace) -> None:
    from hei_nw_plugin.errors import InvalidEventError

    def events() -> Any:
        with open(args.file, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise InvalidEventError(f"{args.file}:{lineno}: not JSON: {err.msg}") from err

    offered = stored = 0
    try:
        with _memory(args) as mem:
            for decisions in mem.write_stream(events(), namespace=args.namespace, batch=args.batch):
                offered += len(decisions)
                stored += sum(d.accepted for d in decisions)
                print(f"\r{offered} offered, {stored} stored", end="", file=sys.stderr, flush=True)
    finally:
        print(file=sys.stderr)  # end the progress line (before any error message)
    _print({"offered": offered, "stored": stored, "namespace": args.namespace})


def cmd_config(args: argparse.Namespace) -> None:
    from hei_nw_plugin.config import settings_reference

    if args.reference:
        print(settings_reference())
        return
    print(_settings(args).model_dump_json(indent=2))


def cmd_recall(args: argparse.Namespace) -> None:
    with _memory(args) as mem:
        r = mem.recall({"text": args.cue, "slots": _slots(args.slot)}, args.k, namespace=args.namespace)
        if args.json:
            _print(r)
            return
        for i, rt in enumerate(r.traces, 1):
            print(f"{i}. {rt.score:.3f}  {rt.trace.id}  {rt.trace.text}")
        print("--- memory tokens ---")
        print(r.memory_tokens.text)
        print("--- timings (ms) ---")
        print("  ".join(f"{k}={v:.2f}" for k, v in r.timings_ms.items()))


def cmd_delete(args: argparse.Namespace) -> None:
    with _memory(args) as mem:
        mem.delete(args.trace_id, namespace=args.namespace)
        print(f"deleted {args.trace_id}")


def cmd_pin(args: argparse.Namespace) -> None:
    with _memory(args) as mem:
        (mem.unpin if args.unpin else mem.pin)(args.trace_id, namespace=args.namespace)
        print(f"{'unpinned' if args.unpin else 'pinned'} {args.trace_id}")


def cmd_verify(args: argparse.Namespace) -> None:
    with _memory(args) as mem:
        report = mem.verify(namespace=args.only_namespace)
        _print(report)
        if not report.ok:
            raise SystemExit(1)


def cmd_rotate(args: argparse.Namespace) -> None:
    with _memory(args) as mem:
        print(f"re-wrapped {mem.rotate_keys()} data keys under a new key")


def cmd_backup(args: argparse.Namespace) -> None:
    from hei_nw_plugin.store import LocalKeyFile, SQLTraceStore

    s = _settings(args)  # the store alone: a copy needs no embedder or index
    store = SQLTraceStore(s.sqlalchemy_url, LocalKeyFile(s.key_file_path))
    try:
        print(f"backup written to {store.backup(args.path)} (keys are not in it: back up the key file apart)")
    finally:
        store.close()


def cmd_stats(args: argparse.Namespace) -> None:
    with _memory(args) as mem:
        _print(mem.stats(namespace=args.only_namespace))


def cmd_evict(args: argparse.Namespace) -> None:
    with _memory(args) as mem:
        gone = mem.evict(namespace=args.only_namespace)
        print(f"evicted {len(gone)} traces")


def cmd_metrics(args: argparse.Namespace) -> None:
    if args.url:
        import urllib.request

        with urllib.request.urlopen(args.url, timeout=30) as resp:
            sys.stdout.write(resp.read().decode())
        return
    with _memory(args) as mem:
        sys.stdout.write(mem.telemetry.render(mem))


def cmd_bench(args: argparse.Namespace) -> None:
    from hei_nw_plugin.bench import bench_recall

    bench_recall(args.n, queries=args.queries, k=args.k, seed=args.seed, out=Path(args.out), settings=_settings(args),
                 keep=Path(args.keep) if args.keep else None, grow=args.grow)


def cmd_bench_shards(args: argparse.Namespace) -> None:
    from hei_nw_plugin.bench import bench_shards

    bench_shards(args.n, keep=Path(args.keep), grow=args.grow, queries=args.queries, k=args.k, seed=args.seed,
                 settings=_settings(args), out=Path(args.out))


def cmd_demo(args: argparse.Namespace) -> None:
    from hei_nw_plugin.demo import run_demo

    run_demo(_settings(args), with_model=not args.engine_only)


def one_line(message: object) -> str:
    """``message`` as one printable line: line breaks and other control characters escaped."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(message))


class _Parser(argparse.ArgumentParser):
    """argparse that keeps its error on one line: an argument full of control characters
    (a carriage return, a vertical tab) is echoed escaped, not written raw to the terminal."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hei-nw", description="HEI-NW episodic memory")
    p.add_argument("--data-dir", help="folder for the SQLite store, index and key file (default .hei_nw)")
    p.add_argument("--store-url", help="SQLAlchemy URL of the trace store (e.g. postgresql+psycopg://...)")
    p.add_argument("--config", help="settings file (.toml/.yaml)")
    p.add_argument("--namespace", "-n", default="default", help="tenant / user namespace")
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("write", help="offer an event to the write gate")
    w.add_argument("text")
    w.add_argument("--slot", action="append", help="key=value (repeatable)")
    w.add_argument("--pin", action="store_true", help="remember this: force-write and protect")
    w.add_argument("--reward", type=float, default=0.0)
    w.add_argument("--key", help="stable caller key (replaces an earlier trace with the same key)")
    w.set_defaults(func=cmd_write)

    im = sub.add_parser("import", help="bulk-write events from a JSONL file (one event object or string per line)")
    im.add_argument("file")
    im.add_argument("--batch", type=int, default=512, help="events per transaction")
    im.set_defaults(func=cmd_import)

    r = sub.add_parser("recall", help="recall traces from a partial cue")
    r.add_argument("cue")
    r.add_argument("-k", type=int, default=5)
    r.add_argument("--slot", action="append", help="key=value (repeatable)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_recall)

    d = sub.add_parser("delete", help="delete a trace (its payload becomes unrecoverable)")
    d.add_argument("trace_id")
    d.set_defaults(func=cmd_delete)

    pn = sub.add_parser("pin", help="pin (or --unpin) a trace")
    pn.add_argument("trace_id")
    pn.add_argument("--unpin", action="store_true")
    pn.set_defaults(func=cmd_pin)

    for name, fn, helptext in [("verify", cmd_verify, "check signatures, hash chain and rows"),
                               ("stats", cmd_stats, "counts and gate telemetry"),
                               ("evict", cmd_evict, "apply TTL decay and capacity eviction")]:
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("--only-namespace", default=None, help="restrict to one namespace")
        sp.set_defaults(func=fn)

    mt = sub.add_parser("metrics", help="Prometheus metrics: this store's gauges, or a running server's /metrics with --url")
    mt.add_argument("--url", default=None, help="fetch and print a server's metrics (e.g. http://127.0.0.1:8080/metrics)")
    mt.set_defaults(func=cmd_metrics)

    rk = sub.add_parser("rotate-keys", help="re-wrap all data keys under a new key")
    rk.set_defaults(func=cmd_rotate)

    bk = sub.add_parser("backup", help="write a consistent copy of the SQLite store to a new file")
    bk.add_argument("path", help="file to create (must not exist)")
    bk.set_defaults(func=cmd_backup)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    br = bsub.add_parser("recall", help="recall latency and write throughput at store sizes N")
    br.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 100000])
    br.add_argument("--queries", type=int, default=200)
    br.add_argument("-k", type=int, default=5)
    br.add_argument("--seed", type=int, default=0)
    br.add_argument("--out", default="reports/bench_recall.json")
    br.add_argument("--keep", default=None, help="keep the filled stores in this folder and reuse them on later runs")
    br.add_argument("--grow", action="store_true", help="one store filled up to each size in turn (a 1M run writes 1M traces, not 1.11M)")
    br.set_defaults(func=cmd_bench)

    bs = bsub.add_parser("shards", help="shard fan-out and warm-key cache / prefetch on a kept benchmark store")
    bs.add_argument("--n", type=int, default=100000)
    bs.add_argument("--keep", required=True, help="folder of kept benchmark stores (filled here when missing)")
    bs.add_argument("--grow", action="store_true", help="use the store of bench recall --grow")
    bs.add_argument("--queries", type=int, default=200)
    bs.add_argument("-k", type=int, default=5)
    bs.add_argument("--seed", type=int, default=0)
    bs.add_argument("--out", default="reports/reliability/shards.json")
    bs.set_defaults(func=cmd_bench_shards)

    cf = sub.add_parser("config", help="print the effective settings as JSON, or the settings reference (--reference)")
    cf.add_argument("--reference", action="store_true", help="Markdown reference of every setting (docs/configuration.md)")
    cf.set_defaults(func=cmd_config)
    dm = sub.add_parser("demo", help="the main job end to end on the embedded defaults")
    dm.add_argument("--engine-only", action="store_true", help="skip the language model part")
    dm.set_defaults(func=cmd_demo)

    for mod in EXTENSIONS:
        try:
            importlib.import_module(mod).register(sub)
        except ImportError:
            continue
    return p


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hei_nw_plugin.errors import InputError, RuntimeFault

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from err
    except RuntimeFault as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(1) from err


if __name__ == "__main__":
    main()

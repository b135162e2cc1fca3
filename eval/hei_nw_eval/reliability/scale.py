"""``hei-nw reliability scale``: the cost curve up to 1M traces, shard fan-out and the warm-key cache.

One command for both scale figures of the reliability report:

1. ``bench recall --grow``: one store filled to each size in turn (1k, 10k, 100k, 1M by
   default), recall latency per stage, hit@1, write rate, RSS and disk at each size
   (``scale.json``). The largest size is checked against the p95 target (20 ms).
2. ``bench shards`` on a store of ``--shards-n`` traces: one graph vs time shards vs slot
   shards, and a cold cache of n/5 entries without and with prefetch (``shards.json``).

Filled stores are kept under ``--keep`` and reused, so a second run only measures.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hei_nw_plugin.bench import bench_recall, bench_shards
from hei_nw_plugin.config import HeiNwSettings

P95_TARGET_MS = 20.0


def run(sizes: list[int], *, keep: Path, shards_n: int | None, queries: int = 200, seed: int = 0,
        feature_cache: int | None = None, out_dir: Path = Path("reports/reliability"),
        progress: bool = True) -> dict[str, Any]:
    """Run both benchmarks; returns {"scale": …, "shards": …, "p95_ok": bool}."""
    settings = HeiNwSettings()
    # The cost curve's feature cache covers the largest store (its RAM is part of the RSS figure).
    settings.index.feature_cache = feature_cache if feature_cache is not None else max(settings.index.feature_cache,
                                                                                        max(sizes) + 1000)
    scale = bench_recall(sizes, queries=queries, seed=seed, settings=settings, keep=keep, grow=True,
                         out=out_dir / "scale.json", progress=progress)
    largest = scale["results"][-1] if scale["results"] else None
    p95_ok = bool(largest) and largest["latency_ms"]["total"]["p95"] <= P95_TARGET_MS
    if largest:
        print(f"p95 at N={largest['n']}: {largest['latency_ms']['total']['p95']:.2f} ms "
              f"({'within' if p95_ok else 'over'} the {P95_TARGET_MS:.0f} ms target)")
    shards = None
    if shards_n:
        shards = bench_shards(shards_n, keep=keep, queries=queries, seed=seed, out=out_dir / "shards.json",
                              progress=progress)
    return {"scale": scale, "shards": shards, "p95_ok": p95_ok}


def register(subparsers: Any) -> None:
    """Add ``scale`` under ``hei-nw reliability``."""
    p = subparsers.add_parser("scale", help="cost curve up to 1M traces (p95 target), shard fan-out, warm-key cache")
    p.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 100000, 1000000], help="store sizes of the cost curve")
    p.add_argument("--shards-n", type=int, default=100000, help="store size of the shard / cache comparison (0: skip)")
    p.add_argument("--keep", type=Path, default=Path.home() / ".cache" / "hei-nw" / "bench",
                   help="folder of kept benchmark stores (reused by later runs)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--feature-cache", type=int, default=None, help="feature cache entries (default: the largest size)")
    p.add_argument("--out-dir", type=Path, default=Path("reports/reliability"))
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> None:
    r = run(args.n, keep=args.keep, shards_n=args.shards_n or None, queries=args.queries, seed=args.seed,
            feature_cache=args.feature_cache, out_dir=args.out_dir)
    if not r["p95_ok"]:
        raise SystemExit(1)

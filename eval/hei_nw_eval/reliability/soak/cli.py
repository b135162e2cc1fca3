"""``hei-nw reliability soak`` arguments (see :mod:`hei_nw_eval.reliability.soak`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    from hei_nw_eval.reliability.soak import SoakConfig

    d = SoakConfig()
    p = subparsers.add_parser("soak", help="mixed workload for --minutes with zero-loss, pin, TTL, clutter, alert and RSS checks")
    p.add_argument("--minutes", type=float, default=d.minutes, help="duration (the report's run is 60)")
    p.add_argument("--out", default="reports/reliability/soak.json", help="JSON report; the plot goes beside it as .png")
    p.add_argument("--data-dir", default=None, help="empty folder for the store (default: a temporary one, removed after)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--tenants", type=int, default=d.tenants)
    p.add_argument("--users", type=int, default=d.users)
    p.add_argument("--events-per-s", type=float, default=d.events_per_s, help="average offered events per second (bursty)")
    p.add_argument("--capacity", type=int, default=d.capacity, help="traces per namespace before eviction")
    p.add_argument("--ttl-min-s", type=float, default=d.ttl_min_s, help="shortest TTL of the facts written with one")
    p.add_argument("--ttl-max-s", type=float, default=d.ttl_max_s)
    p.add_argument("--sample-every-s", type=float, default=d.sample_every_s, help="time-series resolution")
    p.add_argument("--spike-every-s", type=float, default=d.spike_every_s)
    p.add_argument("--check-every-s", type=float, default=d.check_every_s)
    p.add_argument("--verify-every-s", type=float, default=d.verify_every_s)
    p.add_argument("--consolidations", type=int, default=d.consolidations, help="real consolidations during the run (background)")
    p.add_argument("--consolidate-steps", type=int, default=d.consolidate_steps, help="optimizer steps per consolidation")
    p.add_argument("--no-consolidate", action="store_true", help="no consolidation (CI)")
    p.add_argument("--rss-growth-bound-mb", type=float, default=d.rss_growth_bound_mb)
    p.add_argument("--clutter-alert-per-1k", type=float, default=d.clutter_alert_per_1k)
    p.add_argument("--embedder", choices=("minilm", "hashing"), default=d.embedder, help="hashing: no model (fast, CI)")
    p.add_argument("--no-plot", action="store_true")
    p.set_defaults(func=_cmd)


def _cmd(args: Any) -> None:
    import tempfile

    from hei_nw_eval.reliability.soak import SoakConfig, run, summary

    cfg = SoakConfig(minutes=args.minutes, seed=args.seed, tenants=args.tenants, users=args.users, events_per_s=args.events_per_s,
                     capacity=args.capacity, ttl_min_s=args.ttl_min_s, ttl_max_s=args.ttl_max_s,
                     sample_every_s=args.sample_every_s, spike_every_s=args.spike_every_s, check_every_s=args.check_every_s,
                     verify_every_s=args.verify_every_s, consolidations=0 if args.no_consolidate else args.consolidations,
                     consolidate_steps=args.consolidate_steps, rss_growth_bound_mb=args.rss_growth_bound_mb,
                     clutter_alert_per_1k=args.clutter_alert_per_1k, embedder=args.embedder)
    out = Path(args.out)
    if args.data_dir:
        report = run(cfg, out=out, data_dir=Path(args.data_dir), plot=not args.no_plot)
    else:
        with tempfile.TemporaryDirectory(prefix="hei-nw-soak-") as tmp:
            report = run(cfg, out=out, data_dir=Path(tmp), plot=not args.no_plot)
    print(summary(report))
    print(f"wrote {out}" + ("" if args.no_plot else f" and {out.with_suffix('.png')}"))
    if not report.ok:
        raise SystemExit(1)

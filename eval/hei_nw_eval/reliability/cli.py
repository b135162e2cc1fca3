"""``hei-nw reliability <check>``: one subcommand per module of :mod:`hei_nw_eval.reliability`.

A check whose module (or whose optional dependency) is missing is skipped, so the
command works with whatever is installed. ``hei-nw reliability report``
(:mod:`.summary`) turns the checks' JSON into one report.
"""

from __future__ import annotations

import importlib
from typing import Any

CHECKS = ["crash", "tamper", "deletion", "fuzz", "soak", "scale", "pgfaults", "diskfull", "concurrency", "tenants", "summary"]


def register(subparsers: Any) -> None:
    """Add ``reliability`` with one subcommand per available check."""
    p = subparsers.add_parser("reliability", help="crash, tamper, deletion, fuzz, soak, scale, PostgreSQL-fault, disk-full, concurrency and tenant checks (JSON) and their report")
    sub = p.add_subparsers(dest="check", required=True)
    for name in CHECKS:
        try:
            mod = importlib.import_module(f"hei_nw_eval.reliability.{name}")
        except ImportError:
            continue
        if hasattr(mod, "register"):
            mod.register(sub)

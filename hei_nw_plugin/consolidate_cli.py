"""``hei-nw consolidate``: replay memories into a versioned LoRA, roll back, show status.

::

    hei-nw consolidate --data-dir ./mem --namespace u1 [--steps 60] [--order scheduled|shuffled] [--background]
    hei-nw consolidate --data-dir ./mem --namespace u1 status
    hei-nw consolidate --data-dir ./mem --namespace u1 rollback

Versions live in ``<data-dir>/consolidated/<namespace>/`` unless ``--out`` says
otherwise. ``--background`` starts the same command as a detached process
(log and pid file in the output folder) and returns at once; ``status`` says
whether it is still running.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ORDERS = {"scheduled": "ca2", "ca2": "ca2", "shuffled": "shuffled"}
PID_FILE = "consolidate.pid"
LOG_FILE = "consolidate.log"


def register(subparsers: Any) -> None:
    """Add ``consolidate`` to the ``hei-nw`` command line."""
    from hei_nw_plugin.consolidate import ConsolidationConfig

    d = ConsolidationConfig()
    p = subparsers.add_parser("consolidate", help="replay memories into a consolidated LoRA (modes B2/B3)")
    keep = argparse.SUPPRESS  # so values given before the subcommand are not reset
    p.add_argument("--data-dir", default=keep, help="memory folder (also accepted before 'consolidate')")
    p.add_argument("--namespace", "-n", action="append", default=keep, help="namespace to consolidate (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="versions folder (default <data-dir>/consolidated/<namespace>)")
    p.add_argument("--steps", type=int, default=d.max_steps, help="optimizer steps cap")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds, help="training time cap (s); resumable after")
    p.add_argument("--replay-size", type=int, default=d.replay_size, help="traces replayed (the budget)")
    p.add_argument("--rehearse", type=int, default=d.rehearse, help="earlier consolidated traces rehearsed")
    p.add_argument("--order", choices=sorted(ORDERS), default="scheduled", help="CA2 scheduler or the shuffled ablation")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--kl-weight", type=float, default=d.kl_weight,
                   help="weight of the KL to the frozen base model on general prompts (0: off)")
    p.add_argument("--stop-train-em", type=float, default=d.stop_train_em,
                   help="stop once this share of the cue->answer rows is answered exactly (above 1: never early)")
    p.add_argument("--from-depth", type=float, default=d.lora_from_depth,
                   help="LoRA in the decoder layers from this fraction of its depth up (0: all layers)")
    p.add_argument("--no-drift-check", action="store_true", help="skip the base-task drift guard")
    p.add_argument("--fresh", action="store_true", help="train from the base model on live traces (drops deleted ones from weights)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--background", action="store_true", help="run detached; see 'status'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("action", nargs="?", choices=["run", "status", "rollback"], default="run")
    p.set_defaults(func=cmd_consolidate)


def _namespaces(args: argparse.Namespace) -> list[str]:
    ns = args.namespace
    return [ns] if isinstance(ns, str) else list(ns)


def _out_dir(args: argparse.Namespace, data_dir: Path) -> Path:
    if args.out is not None:
        return Path(args.out)
    slug = "+".join(_namespaces(args))
    return data_dir / "consolidated" / "".join(ch if ch.isalnum() or ch in "._-+" else "_" for ch in slug)


def cmd_consolidate(args: argparse.Namespace) -> None:
    from hei_nw_plugin.cli import _settings

    settings = _settings(args)
    out = _out_dir(args, settings.store.data_dir)
    if args.background and args.action == "run":
        _start_background(out)
        return
    from hei_nw_plugin.consolidate import ConsolidationConfig, ConsolidationWorker
    from hei_nw_plugin.memory import HEIMemory

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = ConsolidationConfig(
        replay_size=args.replay_size, rehearse=args.rehearse, max_steps=args.steps, max_seconds=args.max_seconds,
        order=ORDERS[args.order], lr=args.lr, batch_size=args.batch_size, seed=args.seed,
        drift_check=not args.no_drift_check, device=args.device, kl_weight=args.kl_weight,
        stop_train_em=args.stop_train_em, lora_from_depth=args.from_depth,
    )
    with HEIMemory(settings) as mem:
        worker = ConsolidationWorker(mem, settings.model, out_dir=out, namespaces=_namespaces(args), config=cfg,
                                     progress=not args.quiet)
        if args.action == "status":
            print(json.dumps(worker.status() | {"background": _running(out)}, indent=2))
            return
        if args.action == "rollback":
            now = worker.rollback()
            print(f"active version: {now or 'none (base model)'}")
            return
        result = worker.step(fresh=args.fresh)
    print(json.dumps(result.to_dict(), indent=2, default=str))
    if result.status == "rejected":
        raise SystemExit(3)


def _start_background(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    argv = [a for a in sys.argv[1:] if a != "--background"] + ["--quiet"]
    with (out / LOG_FILE).open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hei_nw_plugin.cli", *argv], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (out / PID_FILE).write_text(str(proc.pid))
    print(f"consolidation running in the background (pid {proc.pid}); log {out / LOG_FILE}")


def _running(out: Path) -> int | None:
    """Pid of a background consolidation that is still alive, else None."""
    try:
        pid = int((out / PID_FILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid

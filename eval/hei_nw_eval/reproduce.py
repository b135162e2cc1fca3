"""``hei-nw reproduce``: regenerate the records, tables, figures and the write-up, from scratch.

* ``hei-nw reproduce`` (``make reproduce``, CI-sized, minutes): evidence recall of HEI-NW, RAG and
  BM25 on the first 100 questions of bAbI qa1-qa3, one LoCoMo conversation and 50 items of scenario
  A, plus B0/B1 answers with the embedded model on 8 items of scenario A, all written as JSON under
  ``build/reproduce/`` and rendered there (report and write-up); then ``paper/hei_nw_results.md`` is
  rendered again from the committed records in ``reports/``.
* ``hei-nw reproduce --full`` (``make reproduce FULL=1``, hours on 2 CPU cores): every command
  behind a table or figure in the README and ``docs/``, writing into ``reports/``, then every
  report and the write-up. :data:`FULL_STEPS` lists them; each is also runnable alone.

Each step prints its command and duration; a failing step stops the run with its exit status.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

_BABI = "babi:../shared/datasets/babi/qa{}_{}_test.txt"
_TASKS = ((1, "single-supporting-fact"), (2, "two-supporting-facts"), (3, "three-supporting-facts"))
_LOCOMO = "locomo:../shared/datasets/locomo/locomo_dev5.json"
FULL_STEPS: tuple[tuple[str, str], ...] = (
    ("evidence recall, dev suite", "eval --mode retrieval --suite dev --out reports/retrieval"),
    ("recall ablations", "eval --mode retrieval --suite dev --ablations --out reports/retrieval"),
    *((f"answers, bAbI qa{t}", (f"eval --dataset {_BABI.format(t, name)} --n 1000 --mode B0,B1,rag,bm25-rag,long-context "
                               "--max-new-tokens 4 --quiet --out reports/full")) for t, name in _TASKS),
    *((f"answers, bAbI qa{t}, no reader", (f"eval --dataset {_BABI.format(t, name)} --n 1000 --mode B1 --no-reader "
                                          "--max-new-tokens 4 --quiet --out reports/full")) for t, name in _TASKS),
    ("answers, LoCoMo", f"eval --dataset {_LOCOMO} --n 1000 --mode B0,B1,rag,bm25-rag --max-new-tokens 24 --quiet --out reports/full"),
    ("answers, LoCoMo, no reader", f"eval --dataset {_LOCOMO} --n 1000 --mode B1 --no-reader --max-new-tokens 24 --quiet --out reports/full"),
    ("answers, LoCoMo, long context (sampled)", (f"eval --dataset {_LOCOMO} --per-sample 5 --n 25 --mode long-context "
                                                "--max-new-tokens 24 --quiet --out reports/full")),
    *((f"answers, scenario {sc}", (f"eval --scenario {sc} --n 200 --mode B0,B1,rag,long-context --max-new-tokens 8 --quiet "
                                  "--out reports/full")) for sc in "ABCDE"),
    ("answers, scenario A by route", "eval --scenario A --n 50 --mode B0,B1,retrieval-only,oracle,rag,long-context --quiet "
                                     "--out reports/model_A"),
    ("answers, scenario A, adapter routes", "eval --scenario A --n 50 --mode B1,oracle --route adapter,both --quiet "
                                            "--out reports/model_A"),
    ("answers, scenario A, no reader", "eval --scenario A --n 50 --mode B1,oracle --route prefix,adapter,both --no-reader "
                                       "--quiet --out reports/model_A"),
    ("recall latency", "bench recall --n 1000 10000 100000 --out reports/bench_recall.json"),
    ("recall latency, int8 embedder", "--config examples/fast_recall.toml bench recall --n 100000 "
                                      "--out reports/bench_recall_int8.json"),
    ("recall beside LangChain", "python eval/bench_vs_langchain.py --n 100000 --out reports/bench_vs_langchain.json"),
    ("crash", "reliability crash --trials 200 --rotation-trials 20 --consolidation-trials 5"),
    ("tamper", "reliability tamper --per-kind 20"),
    ("deletion", "reliability deletion --traces 40 --delete 5"),
    ("fuzz", "reliability fuzz --cases 10000"),
    ("soak", "reliability soak --minutes 60 --consolidations 1"),
    ("PostgreSQL faults", "reliability pgfaults --seconds 180 --restarts 4 --terminations 4 --outages 1"),
    ("disk full", "reliability diskfull --size-mb 8 --rounds 3"),
    ("concurrency", "reliability concurrency --minutes 10"),
    ("tenants", "reliability tenants"),
    ("reliability report", "reliability report"),
    ("report: real data", "python eval/real_tables.py reports/full"),
)
"""(name, hei-nw arguments, or a ``python`` script line) of ``--full``, in order."""


def _run(name: str, args: list[str], env: dict[str, str]) -> None:
    script = args[0] == "python"
    cmd = [sys.executable, *args[1:]] if script else [sys.executable, "-m", "hei_nw_plugin.cli", *args]
    print(f"== {name}: {'' if script else 'hei-nw '}{shlex.join(args)}", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=REPO, env=env, check=False).returncode
    print(f"== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
    if rc != 0:
        raise SystemExit(rc)


def ci_sized(out: Path, env: dict[str, str], *, model: bool = True) -> None:
    """The CI-sized run: JSON into ``out``, then its report and write-up there."""
    from hei_nw_eval.datasets import BABI_FILES, default_datasets_dir

    data = default_datasets_dir()
    retrieval = out / "retrieval"
    steps: list[tuple[str, list[str]]] = []
    if data is not None:
        for task in (1, 2, 3):
            steps.append((f"evidence recall, bAbI qa{task} (100 questions)",
                          ["eval", "--mode", "retrieval", "--dataset", f"babi:{data / 'babi' / BABI_FILES[task]}",
                           "--n", "100", "--n-boot", "500", "--out", str(retrieval)]))
        steps.append(("evidence recall, LoCoMo conv-30", ["eval", "--mode", "retrieval", "--dataset",
                                                          f"locomo:{data / 'locomo' / 'locomo_dev5.json'}",
                                                          "--condition", "conv-30", "--n-boot", "500",
                                                          "--out", str(retrieval)]))
    else:
        print("== ../shared/datasets not found: the bAbI and LoCoMo steps are skipped", flush=True)
    steps.append(("evidence recall, scenario A (50 items)", ["eval", "--mode", "retrieval", "--scenario", "A", "--n", "50",
                                                             "--n-boot", "500", "--out", str(retrieval)]))
    if model:
        steps.append(("answers, scenario A B0/B1 (8 items)", ["eval", "--scenario", "A", "--mode", "B0,B1", "--n", "8",
                                                              "--max-new-tokens", "8", "--n-boot", "500", "--quiet",
                                                              "--out", str(out / "answers")]))
    for name, args in steps:
        _run(name, args, env)
    render(retrieval=retrieval, answers=out / "answers", consolidation=out / "consolidation",
           reliability=out / "reliability", paper=out / "paper" / "hei_nw_results.md")


def render(*, retrieval: Path, answers: Path, consolidation: Path, reliability: Path, paper: Path) -> None:
    """Reports of the folders that hold records, and the write-up."""
    from hei_nw_eval.paper import build_paper
    from hei_nw_eval.report import build_report

    for folder, title in ((retrieval, "HEI-NW evidence recall"), (answers, "HEI-NW answers")):
        if folder.is_dir() and any(folder.glob("*.json")):
            files = build_report(folder, title=title)
            print(f"== rendered {files.html}", flush=True)
    print(f"== wrote {build_paper(retrieval=retrieval, answers=answers, consolidation=consolidation, reliability=reliability, out=paper)}",
          flush=True)


def committed_paper() -> Path:
    """Render ``paper/hei_nw_results.md`` from the committed records in ``reports/``."""
    reports = REPO / "reports"
    out = REPO / "paper" / "hei_nw_results.md"
    from hei_nw_eval.paper import build_paper

    return build_paper(retrieval=reports / "retrieval", answers=reports / "full", consolidation=reports / "consolidation",
                       reliability=reports / "reliability", out=out, routes=reports / "model_A",
                       latency=reports / "bench_recall.json")


def cmd_reproduce(args: argparse.Namespace) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    if args.full:
        for name, line in FULL_STEPS:
            _run(name, shlex.split(line), env)
    else:
        ci_sized(args.out, env, model=not args.no_model)
    print(f"== wrote {committed_paper()} (from reports/)")
    print(f"== reproduce done in {time.perf_counter() - t0:.0f} s")


def register(subparsers: Any) -> None:
    """Add ``reproduce`` to the ``hei-nw`` command line."""
    p = subparsers.add_parser("reproduce", help="regenerate records, reports and paper/hei_nw_results.md (CI-sized, or --full)")
    p.add_argument("--full", action="store_true", help="every command behind the README's and docs' figures, into reports/")
    p.add_argument("--out", type=Path, default=Path("build/reproduce"), help="folder of the CI-sized run")
    p.add_argument("--no-model", action="store_true", help="CI-sized run without the language-model step")
    p.set_defaults(func=cmd_reproduce)

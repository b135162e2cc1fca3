"""``hei-nw eval`` and ``hei-nw report``: the evaluation's command line.

Registered into the engine's CLI through :func:`register`. ``eval`` loads the
model once, plays the chosen task through each mode of ``--mode`` (comma
separated), writes one RunRecord (+ per-question sidecar) per mode into
``--out``, then refreshes the paired comparisons against B0 for the whole folder.
``eval --mode retrieval`` needs no model: it scores evidence recall of HEI-NW, RAG
and BM25 on every question (:mod:`hei_nw_eval.recall_eval`); ``--suite dev`` runs
every dev task and renders the report.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hei_nw_eval.runner import MODES, ROUTED_MODES, ROUTES


def register(subparsers: Any) -> None:
    """Add ``eval`` and ``report`` to the ``hei-nw`` command line."""
    p = subparsers.add_parser("eval", help="run the end-to-end evaluation (model + memory) and write run records")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scenario", choices=list("ABCDE"), help="generated scenario (default A)")
    src.add_argument("--dataset", help="babi:PATH (file or folder), locomo:PATH or jsonl:PATH; a bare "
                                       "'babi'/'locomo' reads ../shared/datasets next to the repository")
    p.add_argument("--mode", default="B0,B1", help=f"comma-separated modes of {', '.join(MODES)}; or 'retrieval': "
                                                  "evidence recall of HEI-NW, RAG and BM25 without a model")
    p.add_argument("--condition", default=None, help="scenario condition (default: the scenario's first)")
    p.add_argument("--n", type=int, default=None,
                   help="questions (default 20; --mode retrieval: every question of a dataset, 200 scenario items)")
    p.add_argument("--per-sample", type=int, default=None,
                   help="datasets: at most this many questions per story/conversation, evenly spread")
    p.add_argument("--seed", type=int, default=0, help="data and bootstrap seed")
    p.add_argument("--out", type=Path, default=Path("reports/eval"), help="folder for the JSON records")
    p.add_argument("--route", default="prefix",
                   help="how memory reaches the model: prefix, adapter or both; comma-separated runs each "
                        "memory mode (B1, B2, oracle) once per route with one loaded model")
    p.add_argument("--no-hopfield", action="store_true", help="probe E3: recall without Hopfield completion")
    p.add_argument("--no-reader", action="store_true", help="B1/B2 without the memory-reader LoRA")
    p.add_argument("--k", type=int, default=None, help="traces / chunks recalled per question (default model.recall_k)")
    p.add_argument("--max-new-tokens", type=int, default=10, help="answer length cap (tokens)")
    p.add_argument("--context-window", type=int, default=None, help="long-context window (tokens; default the model's)")
    p.add_argument("--rag-chunk", type=int, default=1, help="episodes per RAG chunk")
    p.add_argument("--cue-slots", action="store_true", help="recall with the question's cue slots, not its text alone")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--config", default=None, help="HEI-NW settings file (TOML)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    r = p.add_argument_group("retrieval (--mode retrieval)")
    r.add_argument("--suite", choices=["dev"], default=None,
                   help="dev: LoCoMo dev5 (every question), bAbI qa1-qa3 (--n each, default 1000) and scenarios A-E "
                        "(200 items; D 100), then the report")
    r.add_argument("--systems", default="hei-nw,rag,bm25", help="retrievers to compare (comma-separated)")
    r.add_argument("--ablations", action="store_true",
                   help="with --suite dev: HEI-NW alone under one changed setting at a time on LoCoMo and bAbI "
                        "(ablations.json/.md in --out; how the recall defaults were chosen)")
    c = p.add_argument_group("consolidation (modes B2/B3)")
    c.add_argument("--consolidate-cycles", type=int, default=0,
                   help="B2/B3 from real consolidation: write through the gate, then this many replay cycles, "
                        "asking B2/B3 after each (0: B2/B3 use model.consolidated_weights)")
    c.add_argument("--consolidate-orders", default="scheduled,shuffled", help="scheduler orders to run (same budget)")
    c.add_argument("--replay-size", type=int, default=None, help="traces replayed per cycle (default: the consolidation config's replay_size)")
    c.add_argument("--consolidate-steps", type=int, default=None, help="optimizer steps cap per cycle")
    c.add_argument("--consolidate-epochs", type=float, default=None, help="passes over each cycle's rows")
    c.add_argument("--consolidate-lr", type=float, default=None, help="LoRA learning rate")
    c.add_argument("--consolidate-kl", type=float, default=None,
                   help="weight of the KL to the frozen base model on general prompts (0: off)")
    c.add_argument("--consolidate-from-depth", type=float, default=None,
                   help="LoRA in the decoder layers from this fraction of its depth up (0: all layers)")
    c.add_argument("--rehearse-paraphrase", action="store_true",
                   help="rehearse earlier consolidated traces in every wording (default: the plain wording only)")
    c.add_argument("--no-drift-check", action="store_true", help="skip the base-task drift guard (smoke tests only)")
    c.add_argument("--device", default=None, help="torch device of the model and of consolidation (default cpu)")
    p.set_defaults(func=cmd_eval)

    r = subparsers.add_parser("report", help="build report.md / report.html from a folder of run records")
    r.add_argument("folder", type=Path)
    r.add_argument("--title", default="HEI-NW evaluation")
    r.add_argument("--reliability", type=Path, default=None, metavar="DIR",
                   help="append a reliability and scale section from this folder's JSON (e.g. reports/reliability)")
    r.set_defaults(func=cmd_report)

    from hei_nw_eval.reliability.cli import register as register_reliability
    from hei_nw_eval.reproduce import register as register_reproduce

    register_reliability(subparsers)
    register_reproduce(subparsers)


def cmd_eval(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    if modes == ["retrieval"]:
        _retrieval(args)
        return
    if args.suite:
        raise SystemExit("error: --suite goes with --mode retrieval")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise SystemExit(f"error: unknown mode(s) {bad}; choose from {', '.join(MODES)}")
    routes = [r.strip() for r in args.route.split(",") if r.strip()]
    if not routes or any(r not in ROUTES for r in routes):
        raise SystemExit(f"error: --route takes {', '.join(ROUTES)} (comma-separated), got {args.route!r}")
    if args.consolidate_cycles > 0 and {"B2", "B3"} & set(modes):
        _consolidation(args, modes)
        modes = [m for m in modes if m not in ("B2", "B3")]
        if not modes:
            return
    if args.n is None and args.dataset:  # a dataset holds hundreds of questions: say that 20 of them are asked
        print("note: asking 20 questions of the dataset (the default); --n 1000 asks every question", flush=True)
    results = run_eval(
        scenario=args.scenario, dataset=args.dataset, modes=modes, condition=args.condition, n=args.n or 20,
        seed=args.seed, out=args.out, route=routes, hopfield=not args.no_hopfield, reader=not args.no_reader,
        k=args.k, max_new_tokens=args.max_new_tokens, context_window=args.context_window,
        rag_chunk=args.rag_chunk, cue_slots=args.cue_slots, n_boot=args.n_boot, threads=args.threads,
        config=args.config, progress=not args.quiet, per_sample=args.per_sample,
    )
    for rec, path in results:
        m = rec.metrics
        cells = "  ".join(f"{k}={m[k].value:.3f}" for k in ("em", "f1", "p@1", "mrr") if k in m and m[k].value is not None)
        print(f"{rec.run_id}\n{'':>26}n={rec.n_items}  {cells}  prompt={_v(m, 'prompt_tokens')}  "
              f"p50={_v(m, 'latency_p50')}ms  -> {path}")
        for c in rec.comparisons:
            d = c.diff
            print(f"{'':>26}{c.metric} vs {c.baseline}: {d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
                  if d.value is not None and d.low is not None and d.high is not None else "")


def _consolidation(args: argparse.Namespace, modes: list[str]) -> None:
    """B2/B3 through consolidation cycles (see :mod:`hei_nw_eval.consolidation`)."""
    import torch

    from hei_nw_eval.consolidation import run_consolidation_eval
    from hei_nw_eval.runner import EvalRunner, RunOptions, refresh_comparisons
    from hei_nw_plugin import HeiNwSettings
    from hei_nw_plugin.embed import embedder_from_settings
    from hei_nw_plugin.wrapper import HeiNwForCausalLM

    orders = [{"scheduled": "ca2"}.get(o.strip(), o.strip()) for o in args.consolidate_orders.split(",") if o.strip()]
    if not orders or any(o not in ("ca2", "shuffled") for o in orders):
        raise SystemExit(f"error: --consolidate-orders takes scheduled and/or shuffled, got {args.consolidate_orders!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    task, cond, units = _task_units(args.scenario, args.dataset, args.condition, args.n or 20, args.seed)
    settings = HeiNwSettings.from_file(args.config) if args.config else HeiNwSettings.build()
    settings.model.memory_reader = settings.model.memory_reader and not args.no_reader
    lm = HeiNwForCausalLM.from_settings(settings, mode="B0")
    if args.device:
        lm.base_model.to(args.device)
        if lm.adapter is not None:
            lm.adapter.to(args.device)
    route = args.route.split(",")[0].strip()
    options = RunOptions(route=route, hopfield=not args.no_hopfield, k=args.k or settings.model.recall_k,
                         max_new_tokens=args.max_new_tokens, cue_slots=args.cue_slots, n_boot=args.n_boot,
                         seed=args.seed, progress=not args.quiet)
    embedder = embedder_from_settings(settings.embedder, cache=False)
    runner = EvalRunner(lm, embedder=embedder, options=options, base_settings=settings)
    over = {k: v for k, v in {"replay_size": args.replay_size, "max_steps": args.consolidate_steps,
                              "epochs": args.consolidate_epochs, "lr": args.consolidate_lr,
                              "kl_weight": args.consolidate_kl,
                              "lora_from_depth": args.consolidate_from_depth}.items() if v is not None}
    if args.no_drift_check:
        over["drift_check"] = False
    if args.rehearse_paraphrase:
        over["rehearse_paraphrase"] = True
    result, paths = run_consolidation_eval(
        runner, units, task=task, condition=cond, out=args.out, cycles=args.consolidate_cycles, orders=orders,
        b2="B2" in modes, config=over, settings_model=settings.model, seed=args.seed, n_boot=args.n_boot)
    refresh_comparisons(args.out, n_boot=args.n_boot)
    print(f"B0 EM {result.b0_em.value:.3f}  B1 EM {result.b1_em.value:.3f}")
    for order, points in result.orders.items():
        for pt in points:
            d = pt.b3_minus_b0
            print(f"{order:>10} cycle {pt.cycle}: B3 EM {pt.b3_em.value:.3f}  B3-B0 {d.value:+.3f} [{d.low}, {d.high}]  "
                  f"retention {pt.retention_vs_b1}  {pt.consolidation['status']}")
    print(f"-> {paths[-1]}")


RETRIEVAL_SUITE: tuple[tuple[str | None, str | None, int | None], ...] = (
    (None, "locomo", None), (None, "babi:qa1", 1000), (None, "babi:qa2", 1000), (None, "babi:qa3", 1000),
    ("A", None, 200), ("B", None, 200), ("C", None, 200), ("D", None, 100), ("E", None, 200),
)
"""(scenario, dataset, n) of ``--suite dev``; ``babi:qaN`` is that task's test file in the datasets folder."""


def _retrieval(args: argparse.Namespace) -> None:
    """``--mode retrieval``: evidence recall of HEI-NW, RAG and BM25 (no model), one task or the dev suite."""
    from hei_nw_eval.datasets import BABI_FILES, default_datasets_dir
    from hei_nw_eval.recall_eval import run_recall_eval
    from hei_nw_eval.report import build_report
    from hei_nw_plugin import HeiNwSettings
    from hei_nw_plugin.embed import embedder_from_settings

    systems = [x.strip() for x in args.systems.split(",") if x.strip()]
    settings = HeiNwSettings.from_file(args.config) if args.config else HeiNwSettings.build()
    embedder = embedder_from_settings(settings.embedder, cache=False)
    if args.suite:
        base = default_datasets_dir()
        if base is None:
            raise SystemExit("error: --suite dev reads ../shared/datasets next to the repository; it is not there")
        plan = []
        for scenario, dataset, n in RETRIEVAL_SUITE:
            if dataset == "locomo":
                dataset = f"locomo:{base / 'locomo' / 'locomo_dev5.json'}"
            elif dataset is not None:
                dataset = f"babi:{base / 'babi' / BABI_FILES[int(dataset[-1])]}"
            plan.append((scenario, dataset, args.n or n))
    else:
        plan = [(args.scenario or (None if args.dataset else "A"), args.dataset, args.n or (None if args.dataset else 200))]
    if args.ablations:
        if not args.suite:
            raise SystemExit("error: --ablations goes with --suite dev")
        from hei_nw_eval.recall_ablations import run_ablations

        tasks = []
        for scenario, dataset, n in plan:
            if dataset is not None:
                task, _c, units = _task_units(scenario, dataset, None, n, args.seed)
                tasks.append((task, "locomo" if task == "locomo" else task.split(":")[0], units))
        run_ablations(tasks, embedder=embedder, base=settings, out=args.out, n_boot=args.n_boot, seed=args.seed)
        print(f"wrote {args.out / 'ablations.json'} and {args.out / 'ablations.md'}")
        return
    for scenario, dataset, n in plan:
        task, cond, units = _task_units(scenario, dataset, None if args.suite else args.condition, n, args.seed,
                                        args.per_sample)
        source = "locomo" if task == "locomo" else task.split(":")[0]
        t0 = time.perf_counter()
        run_recall_eval(units, task=task, source=source, condition=cond, out=args.out, systems=systems, embedder=embedder,
                        settings=settings, n_boot=args.n_boot, seed=args.seed, verbose=not args.quiet)
        print(f"  {task}: {len(units)} questions in {time.perf_counter() - t0:.0f} s")
    files = build_report(args.out, title="HEI-NW evidence recall")
    print(f"wrote {files.markdown} and {files.html}")


def _v(m: dict[str, Any], key: str) -> str:
    return f"{m[key].value:.1f}" if key in m and m[key].value is not None else "-"


def run_eval(
    *, scenario: str | None, dataset: str | None, modes: list[str], condition: str | None, n: int, seed: int,
    out: Path, route: str | Sequence[str] = "prefix", hopfield: bool = True, reader: bool = True, k: int | None = None,
    max_new_tokens: int = 10, context_window: int | None = None, rag_chunk: int = 1, cue_slots: bool = False,
    n_boot: int = 2000, threads: int | None = None, config: str | None = None, progress: bool = True,
    lm: Any = None, per_sample: int | None = None,
) -> list[tuple[Any, Path]]:
    """Run ``modes`` on one task and write a record per mode into ``out``; returns (record, path) pairs.

    ``lm`` reuses an already loaded :class:`~hei_nw_plugin.wrapper.HeiNwForCausalLM`. With several
    routes, each mode that reads memory through the model (B1, B2, oracle) runs once per route.
    """
    from hei_nw_eval.runner import EvalRunner, RunOptions, build_record, refresh_comparisons, write_run
    from hei_nw_plugin import HeiNwSettings
    from hei_nw_plugin.embed import embedder_from_settings

    task, cond, units = _task_units(scenario, dataset, condition, n, seed, per_sample)
    settings = lm.settings if lm is not None else (HeiNwSettings.from_file(config) if config else HeiNwSettings.build())
    settings.model.memory_reader = settings.model.memory_reader and reader
    needs_lm = any(m != "retrieval-only" for m in modes)
    if needs_lm and lm is None:
        import torch

        from hei_nw_plugin.wrapper import HeiNwForCausalLM

        if threads:
            torch.set_num_threads(threads)
        lm = HeiNwForCausalLM.from_settings(settings, mode="B0")
    routes = [route] if isinstance(route, str) else list(route)
    options = RunOptions(route=routes[0], hopfield=hopfield, k=k or settings.model.recall_k, max_new_tokens=max_new_tokens,
                         context_window=context_window, rag_chunk=rag_chunk, cue_slots=cue_slots, n_boot=n_boot,
                         seed=seed, progress=progress)
    embedder = embedder_from_settings(settings.embedder, cache=False)
    runner = EvalRunner(lm if needs_lm else None, embedder=embedder, options=options, base_settings=settings)
    written = []
    plan = [(m, r) for m in modes for r in (routes if m in ROUTED_MODES else routes[:1])]
    for mode, route_now in plan:
        runner.set_route(route_now)
        result = runner.run(mode, units)
        tag = _tag(mode, route_now, hopfield, reader)
        generation = lm.generation_record() if lm is not None and mode != "retrieval-only" else None
        config_rec = {
            "source": {"scenario": scenario, "dataset": dataset, "condition": cond, "n": n, "per_sample": per_sample},
            "embedder": settings.embedder.name,
            "context_window": runner.window() if runner.lm is not None else None,
            "engine": {"hopfield": hopfield, "gate_tau": settings.gate.tau, "keyer_k": settings.keyer.k},
            "memory_reader": settings.model.memory_reader and mode in ("B1", "B2", "oracle"),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        record = build_record(result, task=task, condition=cond, options=options,
                              model_id=settings.model.model_id if generation else None, generation=generation,
                              config=config_rec, tag=tag)
        written.append((record, write_run(record, result, out)))
    refresh_comparisons(out, n_boot=n_boot)
    from hei_nw_eval.records import load_records

    fresh = {r.run_id: r for r in load_records(out)}
    return [(fresh.get(rec.run_id, rec), path) for rec, path in written]


def _tag(mode: str, route: str, hopfield: bool, reader: bool) -> str:
    parts = []
    if mode in ("B1", "B2", "oracle") and route != "prefix":
        parts.append(route)
    if mode in ("B1", "B2", "retrieval-only") and not hopfield:
        parts.append("nohopfield")
    if mode in ("B1", "B2", "oracle") and not reader:
        parts.append("noreader")
    return "-".join(parts)


def _task_units(scenario: str | None, dataset: str | None, condition: str | None, n: int | None, seed: int,
                per_sample: int | None = None) -> tuple[str, str | None, list[Any]]:
    from hei_nw_eval.runner import units_from_samples, units_from_split

    if dataset:
        from hei_nw_eval.datasets import load_dataset

        samples = load_dataset(dataset)
        if not samples:
            raise SystemExit(f"error: {dataset} holds no samples")
        kind = dataset.split(":", 1)[0].lower()
        sources = sorted({s.source for s in samples})
        task = sources[0] if len(sources) == 1 else kind
        if kind == "babi" and len(sources) > 1:
            task = "babi:qa1-3"
        if condition:
            samples = [s for s in samples if s.source == condition or s.id.startswith(condition)]
        return task, condition, units_from_samples(samples, n, per_sample=per_sample)
    from hei_nw_eval.scenarios import generate

    split = generate(scenario or "A", n or 20, seed=seed, condition=condition)
    return f"scenario:{split.scenario}", split.condition, units_from_split(split)


def cmd_report(args: argparse.Namespace) -> None:
    from hei_nw_eval.report import build_report

    files = build_report(args.folder, title=args.title)
    print(f"wrote {files.markdown}, {files.html} and {len(files.figures)} figures")
    if args.reliability is not None:
        from hei_nw_eval.reliability.summary import add_to_report

        rel = add_to_report(files, args.reliability)
        print(f"added the reliability and scale section; wrote {rel.markdown} and {rel.html}")

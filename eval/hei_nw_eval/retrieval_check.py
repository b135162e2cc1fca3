"""Engine-only retrieval check: does recall find the evidence episode? (no LLM)

For scenario items (A-E), every item's episodes go into a fresh namespace of a
fresh :class:`~hei_nw_plugin.HEIMemory` on SQLite in a temporary folder (D's
shared store goes into one namespace), then the question's partial cue
(text + cue slots) is recalled. The ranked trace ids are mapped back to episode
ids and scored against the evidence: P@1, P@k, recall@k, MRR, collision and
near-miss rates, recall latency, and P@1 by time lag.

The same items run under four engine configurations, so differences are paired:

* ``full``: DG sparsity (k-WTA) and Hopfield completion, the defaults;
* ``no-hopfield``: ``hopfield.enabled = False`` (raw ANN ranking);
* ``no-dg``: ``keyer.k = keyer.dim`` (dense keys, no pattern separation);
* ``no-dg-no-hopfield``: both off.

``gate="oracle"`` writes exactly the episodes labelled should-remember, pinned,
so retrieval is measured apart from the gate; ``gate="live"`` offers every
episode to the write gate and also reports the gate's PR-AUC, precision and
recall at τ and writes per 1k tokens against the labels; ``gate="random"`` (the
random-writes ablation) writes each episode, pinned, with probability equal to
the split's share of should-remember episodes (seeded), so it stores as much as
the oracle but chooses blindly.

Embeddings are computed once and shared by the four configurations; the cue
cache is warmed before the first one so that every configuration's recall
latency excludes cue embedding equally (the cost of embedding is reported
separately as ``embed_ms_per_text``).

Run it as a script: ``python -m hei_nw_eval.retrieval_check --scenario A --n 50``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from hei_nw_eval import metrics as M
from hei_nw_eval.engine_io import CachingEmbedder, GateLog, episode_event, gate_metrics, write_batches
from hei_nw_eval.items import Episode, Item, Split
from hei_nw_eval.records import Comparison, Curve, MetricValue, RunRecord, git_commit, write_record
from hei_nw_eval.scenarios import generate

if TYPE_CHECKING:
    from hei_nw_plugin import HEIMemory, HeiNwSettings
    from hei_nw_plugin.embed import Embedder


@dataclass(frozen=True)
class EngineConfig:
    """One ablation of the retrieval stack."""

    name: str
    hopfield: bool
    dg_sparse: bool


CONFIGS: tuple[EngineConfig, ...] = (
    EngineConfig("full", hopfield=True, dg_sparse=True),
    EngineConfig("no-hopfield", hopfield=False, dg_sparse=True),
    EngineConfig("no-dg", hopfield=True, dg_sparse=False),
    EngineConfig("no-dg-no-hopfield", hopfield=False, dg_sparse=False),
)


@dataclass
class _QueryResult:
    ranked: list[str]
    relevant: set[str]
    confusers: set[str]
    lag: int
    latency_ms: float
    stages_ms: dict[str, float]


def _write(mem: HEIMemory, episodes: Sequence[Episode], namespace: str, gate: str, use_keys: bool,
           log: GateLog, batch: int = 256, rng: random.Random | None = None, rate: float = 0.0) -> None:
    if gate == "oracle":
        chosen = [e for e in episodes if e.should_remember]
    elif gate == "random":
        assert rng is not None
        chosen = [e for e in episodes if rng.random() < rate]
    else:
        chosen = list(episodes)
    for part in write_batches(chosen, batch, use_keys):
        events = [episode_event(e, pin=gate != "live", use_keys=use_keys) for e in part]
        decisions = mem.write_many(events, namespace=namespace)
        if gate == "live":
            for ep, d in zip(part, decisions, strict=True):
                log.scores.append(d.score)
                log.labels.append(bool(ep.should_remember))
                log.accepted.append(d.accepted)
                log.tokens += mem.packer.count(ep.text)
                log.tau = d.threshold


def _recall(mem: HEIMemory, item: Item, namespace: str, k: int, cue_slots: bool) -> _QueryResult:
    from hei_nw_plugin import Cue

    q = item.question
    cue = Cue(text=q.cue, slots=dict(q.cue_slots) if cue_slots else {})
    result = mem.recall(cue, k=k, namespace=namespace)
    ranked = [str(r.trace.metadata.get("episode_id", "")) for r in result.traces]
    stages = {s: v for s, v in result.timings_ms.items() if s != "total"}
    return _QueryResult(ranked, set(q.evidence), set(q.confusers), item.time_lag, result.timings_ms["total"], stages)


def run_config(
    split: Split,
    config: EngineConfig,
    *,
    embedder: Embedder,
    base_settings: HeiNwSettings | None = None,
    k: int = 10,
    gate: Literal["oracle", "live", "random"] = "oracle",
    use_keys: bool = False,
    cue_slots: bool = True,
    work_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[_QueryResult], GateLog]:
    """Write ``split`` into a fresh memory under ``config`` and recall every question."""
    return run_configs(split, [config], embedder=embedder, base_settings=base_settings, k=k, gate=gate,
                       use_keys=use_keys, cue_slots=cue_slots, work_dir=work_dir, progress=progress)[config.name]


def run_configs(
    split: Split,
    configs: Sequence[EngineConfig],
    *,
    embedder: Embedder,
    base_settings: HeiNwSettings | None = None,
    k: int = 10,
    gate: Literal["oracle", "live", "random"] = "oracle",
    use_keys: bool = False,
    cue_slots: bool = True,
    work_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, tuple[list[_QueryResult], GateLog]]:
    """Run several configs that share a key space (same ``dg_sparse``) over one memory.

    Hopfield completion acts only at recall, so the split is written once and each
    question is recalled once per config with completion switched on or off: the
    same stored traces, half the writing (at 100k stories writing is most of the cost).
    """
    from hei_nw_plugin import HEIMemory, HeiNwSettings

    if len({c.dg_sparse for c in configs}) != 1:
        raise ValueError("run_configs needs configs with the same dg_sparse (they share one key space)")
    base = base_settings or HeiNwSettings.build()
    with tempfile.TemporaryDirectory(prefix=f"hei-rc-{configs[0].name}-", dir=work_dir) as tmp:
        data = base.model_dump()
        data["store"].update(data_dir=Path(tmp), url=None)
        data["security"]["key_file"] = None
        if not configs[0].dg_sparse:
            data["keyer"]["k"] = data["keyer"]["dim"]
        settings = HeiNwSettings.build(**data)
        log = GateLog([], [], [], 0, settings.gate.tau)
        results: dict[str, list[_QueryResult]] = {c.name: [] for c in configs}
        everything = [*split.shared_episodes, *(e for it in split.items for e in it.episodes)]
        rate = sum(bool(e.should_remember) for e in everything) / max(1, len(everything))
        rng = random.Random(f"random-writes|{split.scenario}|{split.condition}|{split.seed}")
        mem = HEIMemory(settings, embedder=embedder, persist_index=False)
        put = partial(_write, mem, gate=gate, use_keys=use_keys, log=log, rng=rng, rate=rate)
        try:
            shared_ns = f"{split.scenario}-{split.condition}-{split.seed}-shared"
            if split.shared_episodes:
                put(split.shared_episodes, shared_ns)
            for i, item in enumerate(split.items):
                ns = shared_ns if split.shared_episodes else item.id
                if item.episodes:
                    put(item.episodes, ns)
                for cfg in configs:
                    mem.settings.hopfield.enabled = cfg.hopfield
                    results[cfg.name].append(_recall(mem, item, ns, k, cue_slots))
                if progress:
                    progress(i + 1, len(split.items))
        finally:
            mem.close()
    return {name: (res, log) for name, res in results.items()}


def _summarise(results: list[_QueryResult], k: int, seed: int, n_boot: int) -> tuple[dict[str, MetricValue], dict[str, np.ndarray]]:
    rankings = [r.ranked for r in results]
    relevant = [r.relevant for r in results]
    ks = sorted({1, min(5, k), k})
    every = M.retrieval_per_query(rankings, relevant, ks)
    # Most items have one evidence episode, so P@k for k > 1 is just recall@k / k: keep P@1 and recall@k.
    per_query = {"p@1": every["p@1"], **{f"recall@{x}": every[f"recall@{x}"] for x in ks if x > 1}, "mrr": every["mrr"]}
    per_query["collision"] = M.collision_per_query(rankings, [r.confusers for r in results])
    per_query["near_miss"] = M.near_miss_per_query(rankings, relevant, min(5, k))
    metrics = {name: MetricValue.of(M.bootstrap_ci(vals, n_boot=n_boot, seed=seed)) for name, vals in per_query.items()}
    lat = M.latency_summary([r.latency_ms for r in results])
    metrics["recall_p50"] = MetricValue(value=lat.p50_ms, n=lat.n, unit="ms")
    metrics["recall_p95"] = MetricValue(value=lat.p95_ms, n=lat.n, unit="ms")
    for stage in sorted({s for r in results for s in r.stages_ms}):
        vals = [r.stages_ms.get(stage, 0.0) for r in results]
        metrics[f"{stage}_p50"] = MetricValue(value=float(np.percentile(vals, 50)), n=len(vals), unit="ms")
    return metrics, per_query


def run_retrieval_check(
    scenario: str,
    *,
    n: int = 50,
    seed: int = 0,
    condition: str | None = None,
    k: int = 10,
    gate: Literal["oracle", "live", "random"] = "oracle",
    use_keys: bool = False,
    cue_slots: bool = True,
    configs: Sequence[EngineConfig] = CONFIGS,
    embedder: Embedder | None = None,
    base_settings: HeiNwSettings | None = None,
    n_boot: int = 5_000,
    work_dir: Path | None = None,
    verbose: bool = False,
) -> list[RunRecord]:
    """Run the check on ``n`` items of ``scenario`` under every config; one record per config.

    ``cue_slots=False`` recalls from the question text alone, as an agent that
    gets only the user's words would. The first config's record carries the paired comparisons of every metric
    that matters for the ablations (P@1, MRR, recall@k) against the others.
    """
    from hei_nw_plugin import HeiNwSettings
    from hei_nw_plugin.embed import embedder_from_settings

    split = generate(scenario, n, seed=seed, condition=condition)
    base = base_settings or HeiNwSettings.build()
    inner = embedder or embedder_from_settings(base.embedder, cache=False)
    cache = CachingEmbedder(inner)
    texts = [e.text for e in split.shared_episodes] + [e.text for it in split.items for e in it.episodes]
    cues = [it.question.cue for it in split.items]
    cache.warm(texts + cues)
    embed_ms = 1000.0 * cache.embed_seconds / max(1, cache.embedded_texts)

    commit = git_commit()
    cue_kind = "slots-and-text" if cue_slots else "text-only"
    per_config: dict[str, dict[str, np.ndarray]] = {}
    records: list[RunRecord] = []
    lags = [it.time_lag for it in split.items]
    runs: dict[str, tuple[list[_QueryResult], GateLog]] = {}
    wall: dict[str, float] = {}
    for dg in dict.fromkeys(c.dg_sparse for c in configs):
        group = [c for c in configs if c.dg_sparse == dg]
        t0 = time.perf_counter()
        tick = _printer("+".join(c.name for c in group)) if verbose else None
        runs.update(run_configs(split, group, embedder=cache, base_settings=base, k=k, gate=gate,
                                use_keys=use_keys, cue_slots=cue_slots, work_dir=work_dir, progress=tick))
        wall.update({c.name: (time.perf_counter() - t0) / len(group) for c in group})
    for cfg in configs:
        results, log = runs[cfg.name]
        metrics, per_query = _summarise(results, k, seed, n_boot)
        metrics.update(gate_metrics(log))
        metrics["embed_ms_per_text"] = MetricValue(value=embed_ms, n=cache.embedded_texts, unit="ms")
        per_config[cfg.name] = per_query
        lag_bins = M.accuracy_by_lag(per_query["p@1"], lags, n_boot=min(n_boot, 2000), seed=seed)
        records.append(
            RunRecord(
                run_id=f"retrieval-{split.scenario}-{split.condition}-{cue_kind}-{gate}-{cfg.name}-s{seed}-n{n}",
                task=f"retrieval:{split.scenario}",
                condition=f"{split.condition}/{cue_kind}/{gate}-gate",
                mode=cfg.name,
                model_id=None,
                seeds={"data": seed, "bootstrap": seed, "keyer": base.keyer.seed},
                git_commit=commit,
                config={
                    "engine": {"hopfield": cfg.hopfield, "dg_sparse": cfg.dg_sparse},
                    "k": k, "gate": gate, "use_keys": use_keys, "cue_slots": cue_slots, "n_boot": n_boot,
                    "embedder": type(inner).__name__ + (f":{getattr(inner, 'name', '')}" if hasattr(inner, "name") else ""),
                    "settings": base.model_dump(mode="json", exclude={"store", "security"}),
                    "wall_s": round(wall[cfg.name], 2),  # a shared memory's time is split evenly between its configs
                },
                n_items=len(split.items),
                metrics=metrics,
                curves={"P@1 vs time lag": Curve.from_lag_bins(lag_bins, "P@1")},
            )
        )
    head = configs[0].name
    for other in [c.name for c in configs[1:]]:
        for metric in ("p@1", "mrr", f"recall@{k}"):
            diff = M.paired_bootstrap_diff(per_config[head][metric], per_config[other][metric], n_boot=n_boot, seed=seed)
            records[0].comparisons.append(
                Comparison(metric=metric, mode=head, baseline=other, diff=MetricValue.of(diff),
                           excludes_zero=M.excludes_zero(diff), seed=seed)
            )
    return records


def _printer(name: str) -> Callable[[int, int], None]:
    def tick(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            print(f"  [{name}] {done}/{total} questions", flush=True)

    return tick


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hei_nw_eval.retrieval_check", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="A", choices=list("ABCDE"))
    parser.add_argument("--condition", default=None, help="scenario condition (default: the scenario's first)")
    parser.add_argument("--n", type=int, default=50, help="questions (items)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--gate", choices=["oracle", "live", "random"], default="oracle",
                        help="oracle: labelled episodes; live: the write gate; random: blind writes at the oracle's rate")
    parser.add_argument("--use-keys", action="store_true", help="write scenario B chains with their caller key")
    parser.add_argument("--text-only", action="store_true", help="recall from the question text without cue slots")
    parser.add_argument("--embedder", choices=["minilm", "hashing"], default="minilm",
                        help="'hashing' needs no model (word overlap only)")
    parser.add_argument("--configs", default=",".join(c.name for c in CONFIGS))
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON records")
    args = parser.parse_args(argv)

    embedder = None
    if args.embedder == "hashing":
        from hei_nw_plugin.embed import HashingEmbedder

        embedder = HashingEmbedder(dim=384)
    wanted = args.configs.split(",")
    unknown = set(wanted) - {c.name for c in CONFIGS}
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}")
    configs = [c for name in wanted for c in CONFIGS if c.name == name]
    records = run_retrieval_check(args.scenario, n=args.n, seed=args.seed, condition=args.condition, k=args.k,
                                  gate=args.gate, use_keys=args.use_keys, cue_slots=not args.text_only, configs=configs, embedder=embedder,
                                  verbose=True)
    cols = ["p@1", "mrr", f"recall@{args.k}", "collision", "near_miss", "recall_p50", "recall_p95"]
    print(f"scenario {args.scenario} / {records[0].condition}, n={args.n}, seed={args.seed}")
    print("config".ljust(20) + "".join(c.rjust(13) for c in cols))
    for r in records:
        print(r.mode.ljust(20) + "".join(_cell(r.metrics.get(c)).rjust(13) for c in cols))
        for name in ("gate_pr_auc", "gate_precision", "gate_recall", "writes_per_1k_tokens"):
            if name in r.metrics:
                print(f"    {name} = {_cell(r.metrics[name])}")
    for c in records[0].comparisons:
        d = c.diff
        print(f"  {c.metric}: {c.mode} - {c.baseline} = {d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
              if d.low is not None and d.value is not None and d.high is not None else f"  {c.metric}: n/a")
    if args.out:
        for r in records:
            print("wrote", write_record(r, args.out))
    return 0


def _cell(m: MetricValue | None) -> str:
    return "–" if m is None or m.value is None else f"{m.value:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())

"""Evidence recall without a language model: HEI-NW against RAG and BM25 on every question.

``hei-nw eval --mode retrieval`` plays a task's units (a LoCoMo conversation, a bAbI
story, a scenario item) through three retrievers in one process, with one shared
(caching) MiniLM embedder, and scores each question's ranking against the data's own
evidence: LoCoMo's ``evidence`` dialogue ids, bAbI's supporting-fact lines, the
scenarios' gold traces.

* **hei-nw**: a fresh :class:`~hei_nw_plugin.HEIMemory` per task; every episode is
  offered to the live write gate (nothing pinned or forced) before the question that
  follows it, and the question's text is the cue.
* **rag**: one LangChain ``InMemoryVectorStore`` per conversation, a document per
  turn, the same MiniLM (:class:`~hei_nw_eval.baselines.RagStore`).
* **bm25**: ``bm25s`` over the turns seen so far (English stopwords, Porter stems).

Per question: evidence recall@k (share of the evidence ids in the top k) for
k = 1, 5, 10, ``all@k`` (every evidence id in the top k: bAbI's two- and
three-fact questions), hit@1 and MRR. Headline figures are over LoCoMo categories 1-4
(category 5, adversarial, apart) or over all questions elsewhere; every category gets
a breakdown, and HEI-NW's record carries paired-bootstrap differences against RAG and
BM25. HEI-NW's record also says what its gate kept: the share of evidence episodes
stored (any tier) and stored salient, and salient writes per 1k tokens.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hei_nw_eval import metrics as M
from hei_nw_eval.baselines import RagStore
from hei_nw_eval.engine_io import CachingEmbedder, episode_event, write_batches
from hei_nw_eval.items import Episode
from hei_nw_eval.records import Comparison, Curve, CurvePoint, MetricValue, RunRecord, git_commit, write_record

if TYPE_CHECKING:
    from hei_nw_eval.runner import Unit
    from hei_nw_plugin import HeiNwSettings
    from hei_nw_plugin.embed import Embedder

SYSTEMS: tuple[str, ...] = ("hei-nw", "rag", "bm25")
KS: tuple[int, ...] = (1, 5, 10)
DEPTH = max(KS)
COMPARED = ("recall@1", "recall@5", "recall@10", "mrr")


@dataclass
class Ranked:
    """One question's ranking under one system."""

    id: str
    category: str | None
    ranked: list[str]
    relevant: list[str]
    latency_ms: float


@dataclass
class TierLog:
    """What HEI-NW's gate did with the episodes (by episode id)."""

    tier: dict[tuple[str, str], str] = field(default_factory=dict)  # (namespace, episode id) -> 'salient' | 'cold'
    offered: int = 0
    tokens: int = 0
    salient: int = 0


@dataclass
class SystemRun:
    system: str
    ranked: list[Ranked]
    wall_s: float
    gate: TierLog | None = None


# ------------------------------------------------------------------ retrievers
def _hei_nw(units: Sequence[Unit], embedder: Embedder, settings: HeiNwSettings, work_dir: Path | None) -> SystemRun:
    from hei_nw_plugin import Cue, HEIMemory, HeiNwSettings

    t0 = time.perf_counter()
    out: list[Ranked] = []
    log = TierLog()
    with tempfile.TemporaryDirectory(prefix="hei-recall-", dir=work_dir) as tmp:
        data = settings.model_dump()
        data["store"].update(data_dir=Path(tmp), url=None)
        data["security"]["key_file"] = None
        mem = HEIMemory(HeiNwSettings.build(**data), embedder=embedder, persist_index=False)
        try:
            for unit in units:
                for part in write_batches(unit.writes, 256, use_keys=False):
                    decisions = mem.write_many([episode_event(e, pin=False, use_keys=False) for e in part], namespace=unit.namespace)
                    for ep, d in zip(part, decisions, strict=True):
                        log.offered += 1
                        log.tokens += mem.packer.count(ep.text)
                        if d.accepted and d.tier is not None:
                            log.tier[(unit.namespace, ep.id)] = d.tier
                            log.salient += d.tier == "salient"
                t = time.perf_counter()
                rr = mem.recall(Cue(text=unit.question.cue), k=DEPTH, namespace=unit.namespace)
                out.append(_ranked(unit, [str(r.trace.metadata.get("episode_id", "")) for r in rr.traces], t))
        finally:
            mem.close()
    return SystemRun("hei-nw", out, time.perf_counter() - t0, log)


def _rag(units: Sequence[Unit], embedder: Embedder) -> SystemRun:
    t0 = time.perf_counter()
    stores: dict[str, RagStore] = {}
    out = []
    for unit in units:
        store = stores.setdefault(unit.namespace, RagStore(embedder, chunk_size=1))
        store.add(unit.writes)
        t = time.perf_counter()
        _text, ranked = store.search(unit.question.cue, DEPTH)
        out.append(_ranked(unit, ranked, t))
    return SystemRun("rag", out, time.perf_counter() - t0)


class Bm25Turns:
    """``bm25s`` over the turns of one conversation seen so far (re-indexed when new turns arrive)."""

    def __init__(self) -> None:
        try:
            import bm25s
        except ImportError as err:
            raise ImportError('the bm25 baseline needs bm25s: pip install "hei-nw[eval]"') from err
        from hei_nw_plugin.porter import stem

        self._bm25s, self._stem = bm25s, stem
        self.episodes: list[Episode] = []
        self._index: Any = None
        self._indexed = 0

    def add(self, episodes: Sequence[Episode]) -> None:
        self.episodes.extend(episodes)

    def _tokens(self, texts: list[str]) -> Any:
        stem = self._stem
        return self._bm25s.tokenize(texts, stopwords="en", stemmer=lambda words: [stem(w) for w in words], show_progress=False)

    def search(self, query: str, k: int) -> list[str]:
        if not self.episodes:
            return []
        if self._indexed != len(self.episodes):
            self._index = self._bm25s.BM25()
            self._index.index(self._tokens([e.text for e in self.episodes]), show_progress=False)
            self._indexed = len(self.episodes)
        q = self._tokens([query])
        if not any(q.ids):
            return []
        docs, scores = self._index.retrieve(q, k=min(k, len(self.episodes)), show_progress=False)
        return [self.episodes[int(d)].id for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


def _bm25(units: Sequence[Unit]) -> SystemRun:
    t0 = time.perf_counter()
    stores: dict[str, Bm25Turns] = {}
    out = []
    for unit in units:
        store = stores.setdefault(unit.namespace, Bm25Turns())
        store.add(unit.writes)
        t = time.perf_counter()
        out.append(_ranked(unit, store.search(unit.question.cue, DEPTH), t))
    return SystemRun("bm25", out, time.perf_counter() - t0)


def _ranked(unit: Unit, ranked: list[str], started: float) -> Ranked:
    q = unit.question
    return Ranked(q.id, q.category, ranked, list(q.evidence), (time.perf_counter() - started) * 1000)


def run_systems(units: Sequence[Unit], *, systems: Sequence[str] = SYSTEMS, embedder: Embedder,
                settings: HeiNwSettings, work_dir: Path | None = None,
                progress: Callable[[str], None] | None = None) -> dict[str, SystemRun]:
    """Every system over the same units (one shared caching embedder); returns runs by system."""
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        raise ValueError(f"unknown system(s) {bad}; choose from {', '.join(SYSTEMS)}")
    cache = embedder if isinstance(embedder, CachingEmbedder) else CachingEmbedder(embedder)
    cache.warm([e.text for u in units for e in u.writes] + [u.question.cue for u in units])
    runs: dict[str, SystemRun] = {}
    for system in systems:
        if progress:
            progress(system)
        if system == "hei-nw":
            runs[system] = _hei_nw(units, cache, settings, work_dir)
        elif system == "rag":
            runs[system] = _rag(units, cache)
        else:
            runs[system] = _bm25(units)
    return runs


# ------------------------------------------------------------------- scoring
def per_question(ranked: Sequence[Ranked]) -> dict[str, np.ndarray]:
    """Per-question arrays: recall@k, all@k (k in :data:`KS`), hit@1, mrr (questions with evidence only)."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in ranked:
        rel = set(r.relevant)
        for k in KS:
            top = set(r.ranked[:k])
            out[f"recall@{k}"].append(len(top & rel) / len(rel))
            out[f"all@{k}"].append(float(rel <= top))
        out["hit@1"].append(float(bool(r.ranked[:1]) and r.ranked[0] in rel))
        out["mrr"].append(M.reciprocal_rank(r.ranked, rel))
    return {k: np.array(v) for k, v in out.items()}


def headline(ranked: Sequence[Ranked], source: str) -> list[Ranked]:
    """The questions behind the headline figures: those with evidence; LoCoMo's categories 1-4 only."""
    scored = [r for r in ranked if r.relevant]
    return [r for r in scored if r.category != "5"] if source == "locomo" else scored


def _metrics(vals: dict[str, np.ndarray], n_boot: int, seed: int) -> dict[str, MetricValue]:
    return {name: MetricValue.of(M.bootstrap_ci(v, n_boot=n_boot, seed=seed)) for name, v in vals.items() if len(v)}


def _tier_metrics(run: SystemRun, units: Sequence[Unit], source: str) -> dict[str, MetricValue]:
    log = run.gate
    assert log is not None
    evidence = {(u.namespace, e) for u in units for e in u.question.evidence
                if source != "locomo" or u.question.category != "5"}
    if not evidence:
        return {}
    kept = [e in log.tier for e in evidence]
    salient = [log.tier.get(e) == "salient" for e in evidence]
    return {
        "gate_evidence_kept": MetricValue.of(M.bootstrap_ci(np.array(kept, dtype=float), n_boot=2000, seed=0)),
        "gate_evidence_salient": MetricValue.of(M.bootstrap_ci(np.array(salient, dtype=float), n_boot=2000, seed=0)),
        "gate_stored_share": MetricValue(value=len(log.tier) / max(1, log.offered), n=log.offered),
        "writes_per_1k_tokens": MetricValue(value=M.writes_per_1k_tokens(log.salient, log.tokens), n=log.tokens,
                                            unit="per 1k tokens"),
    }


def build_records(runs: dict[str, SystemRun], units: Sequence[Unit], *, task: str, source: str, condition: str | None,
                  config: dict[str, Any], n_boot: int = 5000, seed: int = 0) -> list[RunRecord]:
    """One record per system; HEI-NW's carries the paired differences against the others."""
    commit = git_commit()
    values: dict[str, dict[str, np.ndarray]] = {}
    records: list[RunRecord] = []
    for system, run in runs.items():
        head = headline(run.ranked, source)
        if not head:
            raise ValueError(f"{task}: no question has evidence to score")
        vals = values[system] = per_question(head)
        metrics = _metrics(vals, n_boot, seed)
        lat = M.latency_summary([r.latency_ms for r in run.ranked])
        metrics["recall_p50"] = MetricValue(value=lat.p50_ms, n=lat.n, unit="ms")
        metrics["recall_p95"] = MetricValue(value=lat.p95_ms, n=lat.n, unit="ms")
        if run.gate is not None:
            metrics.update(_tier_metrics(run, units, source))
        breakdown: dict[str, dict[str, MetricValue]] = {}
        for cat in sorted({r.category for r in run.ranked if r.category is not None and r.relevant}):
            group = [r for r in run.ranked if r.category == cat and r.relevant]
            breakdown[f"category {cat}"] = _metrics(per_question(group), min(n_boot, 2000), seed)
        curve = Curve(x_label="k (traces returned)", y_label="evidence recall@k", points=[
            CurvePoint(x=float(k), y=float(np.mean([len(set(r.ranked[:k]) & set(r.relevant)) / len(set(r.relevant))
                                                    for r in head])), n=len(head)) for k in range(1, DEPTH + 1)])
        records.append(RunRecord(
            run_id=f"recall-{task.replace(':', '-')}-{condition or 'all'}-{system}-s{seed}-n{len(head)}",
            task=f"recall:{task}", condition=condition, mode=system, seeds={"bootstrap": seed},
            git_commit=commit, config={**config, "wall_s": round(run.wall_s, 1), "questions": len(run.ranked),
                                       "headline": "categories 1-4" if source == "locomo" else "all with evidence"},
            n_items=len(head), metrics=metrics, breakdown=breakdown, curves={"evidence recall vs k": curve}))
    if "hei-nw" in values:
        ours = records[list(runs).index("hei-nw")]
        for other in (s for s in runs if s != "hei-nw"):
            for metric in COMPARED:
                diff = M.paired_bootstrap_diff(values["hei-nw"][metric], values[other][metric], n_boot=n_boot, seed=seed)
                ours.comparisons.append(Comparison(metric=metric, mode="hei-nw", baseline=other, diff=MetricValue.of(diff),
                                                   excludes_zero=M.excludes_zero(diff), seed=seed))
    return records


def run_recall_eval(units: Sequence[Unit], *, task: str, source: str, condition: str | None, out: Path | None,
                    systems: Sequence[str] = SYSTEMS, embedder: Embedder | None = None,
                    settings: HeiNwSettings | None = None, n_boot: int = 5000, seed: int = 0,
                    verbose: bool = True) -> list[RunRecord]:
    """Run, score and (with ``out``) write one task's records; prints a table when ``verbose``."""
    from hei_nw_plugin import HeiNwSettings
    from hei_nw_plugin.embed import embedder_from_settings

    st = settings or HeiNwSettings.build()
    inner = embedder or embedder_from_settings(st.embedder, cache=False)
    runs = run_systems(units, systems=systems, embedder=inner, settings=st,
                       progress=(lambda s: print(f"  {task}: {s} ...", flush=True)) if verbose else None)
    config = {"source": source, "embedder": st.embedder.name, "depth": DEPTH,
              "settings": st.model_dump(mode="json", include={"recall", "gate", "hopfield", "keyer", "index"})}
    records = build_records(runs, units, task=task, source=source, condition=condition, config=config,
                            n_boot=n_boot, seed=seed)
    if verbose:
        print(summary_table(records))
    if out is not None:
        for r in records:
            write_record(r, out)
    return records


def summary_table(records: Sequence[RunRecord]) -> str:
    """Plain-text table: one line per record with recall@1/5/10, all@5, MRR and HEI-NW's differences."""
    cols = ["recall@1", "recall@5", "recall@10", "all@5", "all@10", "mrr"]
    lines = [f"{'task':<16}{'system':<8}{'n':>5}" + "".join(f"{c:>11}" for c in cols)]
    for r in records:
        cells = "".join(f"{r.metrics[c].value:>11.3f}" if c in r.metrics and r.metrics[c].value is not None else f"{'-':>11}"
                        for c in cols)
        lines.append(f"{r.task.removeprefix('recall:'):<16}{r.mode:<8}{r.n_items:>5}{cells}")
        for c in r.comparisons:
            d = c.diff
            if c.metric == "recall@5" and d.value is not None and d.low is not None and d.high is not None:
                lines.append(f"{'':<29}recall@5 {c.mode} - {c.baseline} = {d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}]")
    return "\n".join(lines)

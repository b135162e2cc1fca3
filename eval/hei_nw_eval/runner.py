"""The end-to-end evaluation: episodes through the write gate, a question, the model's answer, scores.

One :class:`Unit` is one question and what must be written before it is asked
(a scenario item, or the next stretch of a bAbI story / LoCoMo conversation).
:class:`EvalRunner` plays every unit through one mode:

* ``B0``/``B3`` the model alone; ``B1``/``B2`` recall from a fresh
  :class:`~hei_nw_plugin.HEIMemory` that every episode was offered to through
  ``write_many`` (the live write gate decides; nothing is pinned or forced);
* ``B1-empty`` (probe E0) B1 over an empty memory, which should equal B0;
* ``oracle`` (E1), ``retrieval-only`` (E2), ``long-context``, ``rag`` and
  ``bm25-rag``: see :mod:`hei_nw_eval.baselines`; ``no_hopfield`` (E3) turns
  Hopfield completion off.

Every mode builds its prompt with the same one-shot template
(:func:`hei_nw_plugin.model.prompting.answer_messages`). Baselines that put text
in the prompt (long-context, rag) run the base model with the prefix route and
no reader LoRA, so they get exactly what a plain LLM would. Each run writes a
:class:`~hei_nw_eval.records.RunRecord` and a per-question sidecar
``<run_id>.items.jsonl``; :func:`refresh_comparisons` pairs every run with the
B0 run of the same task, condition and seed in its folder, and every B1 run with
the reader also with B1 without it and with each baseline (paired bootstrap).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hei_nw_eval import metrics as M
from hei_nw_eval.baselines import Bm25Store, RagStore, answer_from_trace, fit_transcript, oracle_memory
from hei_nw_eval.costs import AttentionShape, attention_flops, kv_cache_mb
from hei_nw_eval.datasets import DatasetSample
from hei_nw_eval.engine_io import CachingEmbedder, GateLog, episode_event, gate_metrics, write_batches
from hei_nw_eval.items import Episode, Question, Split
from hei_nw_eval.records import Comparison, Curve, MetricValue, RunRecord, git_commit, load_records, write_record

if TYPE_CHECKING:
    from hei_nw_plugin import HEIMemory, HeiNwSettings
    from hei_nw_plugin.embed import Embedder
    from hei_nw_plugin.model.prompting import OneShot
    from hei_nw_plugin.wrapper import HeiNwForCausalLM

MODES: tuple[str, ...] = ("B0", "B1", "B2", "B3", "B1-empty", "oracle", "retrieval-only", "long-context", "rag",
                         "bm25-rag")
PLAIN_MODES = frozenset({"long-context", "rag", "bm25-rag"})
"""Baselines that put text in the prompt of the plain model (prefix route, no reader)."""
MEMORY_MODES = frozenset({"B1", "B2", "B1-empty", "retrieval-only"})
"""Modes that recall from a HEIMemory (B1-empty writes nothing into it)."""
ROUTES: tuple[str, ...] = ("prefix", "adapter", "both")
ROUTED_MODES = frozenset({"B1", "B2", "oracle"})
"""Modes whose memory reaches the model by a route (``--route``)."""
RANKING_MODES = frozenset({"B1", "B2", "retrieval-only", "rag", "bm25-rag"})
COMPARED = ("em", "f1", "locomo_f1")
AGAINST: tuple[str, ...] = ("noreader", "rag", "bm25-rag", "long-context")
"""Besides B0, what a B1 run with the reader is paired with ('noreader': the same run without the reader)."""
SIDECAR = ".items.jsonl"


@dataclass
class Unit:
    """One question and the episodes to write (into ``namespace``) before it is asked."""

    id: str
    namespace: str
    writes: list[Episode]
    question: Question
    transcript: list[Episode]
    evidence: list[Episode]
    lag: int | None
    one_shot: OneShot


def _one_shot(memory: str, question: str, answer: str) -> OneShot:
    from hei_nw_plugin.model.prompting import OneShot

    return OneShot(memory=memory, question=question, answer=answer)


def units_from_split(split: Split) -> list[Unit]:
    """One unit per scenario item; a shared store (scenario D) is written before the first."""
    units = []
    shared_ns = f"{split.scenario}-{split.condition}-{split.seed}-shared"
    for i, item in enumerate(split.items):
        ns = shared_ns if split.shared_episodes else item.id
        writes = (list(split.shared_episodes) if i == 0 else []) + list(item.episodes)
        transcript = list(split.shared_episodes) + list(item.episodes)
        by_id = {e.id: e for e in transcript}
        ex = item.one_shot
        units.append(Unit(
            id=item.question.id, namespace=ns, writes=writes, question=item.question, transcript=transcript,
            evidence=[by_id[e] for e in item.question.evidence if e in by_id], lag=item.time_lag,
            one_shot=_one_shot(f"1. {ex.context}", ex.question, ex.answer),
        ))
    return units


def units_from_samples(samples: Sequence[DatasetSample], n: int | None = None, *,
                       per_sample: int | None = None) -> list[Unit]:
    """Units for dataset questions in conversation order (the first ``n``).

    Each sample is one namespace, written incrementally: a unit writes the
    episodes that appeared since the previous question of its sample.
    ``per_sample`` takes at most that many questions from each sample (so a
    small run still covers every conversation of LoCoMo), spread evenly over
    the sample's questions.
    """
    from hei_nw_plugin.model.prompting import DEFAULT_ONE_SHOT, DIALOGUE_ONE_SHOT, NARRATIVE_ONE_SHOT

    units: list[Unit] = []
    for sample in samples:
        position = {e.id: i for i, e in enumerate(sample.episodes)}
        shot = {"babi": NARRATIVE_ONE_SHOT, "locomo": DIALOGUE_ONE_SHOT}.get(sample.source.split(":")[0], DEFAULT_ONE_SHOT)
        ordered = sorted(sample.questions, key=lambda q: len(sample.visible_episodes(q)))
        if per_sample is not None and len(ordered) > per_sample:
            step = len(ordered) / per_sample
            ordered = [ordered[int(i * step)] for i in range(per_sample)]
        written = 0
        for q in ordered:
            visible = sample.visible_episodes(q)
            units.append(Unit(
                id=q.id, namespace=sample.id, writes=visible[written:], question=q, transcript=visible,
                evidence=[sample.episodes[position[e]] for e in q.evidence if e in position],
                lag=sample.time_lag(q), one_shot=shot,
            ))
            written = len(visible)
            if n is not None and len(units) >= n:
                return units
    return units


@dataclass
class RunOptions:
    """Settings of one evaluation run (recorded in the RunRecord's config)."""

    route: str = "prefix"
    hopfield: bool = True
    k: int = 3
    max_new_tokens: int = 10
    context_window: int | None = None
    rag_chunk: int = 1
    cue_slots: bool = False
    n_boot: int = 2_000
    seed: int = 0
    progress: bool = True


@dataclass
class Outcome:
    """One answered question: prediction, scores and costs."""

    id: str
    prediction: str
    golds: list[str]
    em: float
    f1: float
    lag: int | None
    category: str | None
    prompt_tokens: int = 0
    new_tokens: int = 0
    adapter_memory_tokens: int = 0
    attention_gflops: float = 0.0
    kv_cache_mb: float = 0.0
    latency_ms: float = 0.0
    stages_ms: dict[str, float] = field(default_factory=dict)
    ingest_ms: float = 0.0
    ranked: list[str] | None = None
    relevant: list[str] = field(default_factory=list)
    truncated: bool = False
    dropped_episodes: int = 0
    locomo_f1: float | None = None
    abstained: bool = False
    """The answer says memory does not hold it (LoCoMo's category-5 rule)."""
    abstain_p: float | None = None
    """Probability of the reader's abstention reply at the first answer token (None: the rule did not run)."""
    abstain_top: bool | None = None
    """Whether that reply was the top choice there (with ``abstain_p``, re-scores the run at any other
    ``model.reader_abstain_min``: ``eval/abstain_sweep.py``)."""


@dataclass
class ModeResult:
    mode: str
    outcomes: list[Outcome]
    gate: GateLog
    wall_s: float


class EvalRunner:
    """Plays units through modes with one loaded model and one shared (caching) embedder."""

    def __init__(
        self,
        lm: HeiNwForCausalLM | None,
        *,
        embedder: Embedder,
        options: RunOptions | None = None,
        base_settings: HeiNwSettings | None = None,
        work_dir: Path | None = None,
    ) -> None:
        from hei_nw_plugin import HeiNwSettings

        self.lm = lm
        self.options = options or RunOptions()
        self.embedder = embedder if isinstance(embedder, CachingEmbedder) else CachingEmbedder(embedder)
        self.base_settings = base_settings or (lm.settings if lm is not None else HeiNwSettings.build())
        self.work_dir = work_dir
        self.shape = AttentionShape.from_config(lm.base_model.config, str(lm.base_model.dtype)) if lm is not None else None
        if lm is not None:
            lm.route = self.options.route  # type: ignore[assignment]

    def set_route(self, route: str) -> None:
        """Memory route of the following runs (recorded in their options)."""
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
        self.options.route = route
        if self.lm is not None:
            self.lm.route = route  # type: ignore[assignment]

    # ------------------------------------------------------------------ memory
    @contextmanager
    def _memory(self) -> Iterator[HEIMemory]:
        from hei_nw_plugin import HEIMemory, HeiNwSettings

        with tempfile.TemporaryDirectory(prefix="hei-eval-", dir=self.work_dir) as tmp:
            data = self.base_settings.model_dump()
            data["store"].update(data_dir=Path(tmp), url=None)
            data["security"]["key_file"] = None
            data["hopfield"]["enabled"] = self.options.hopfield
            mem = HEIMemory(HeiNwSettings.build(**data), embedder=self.embedder, persist_index=False)
            if self.lm is not None:
                self.lm.memory = mem  # the gate scores surprise with this model's NLL
            try:
                yield mem
            finally:
                if self.lm is not None:
                    self.lm.memory = None
                mem.close()

    @staticmethod
    def _write(mem: HEIMemory, episodes: Sequence[Episode], namespace: str, log: GateLog) -> None:
        for part in write_batches(episodes, 256, use_keys=False):
            decisions = mem.write_many([episode_event(e, pin=False, use_keys=False) for e in part], namespace=namespace)
            for ep, d in zip(part, decisions, strict=True):
                log.tau = d.threshold
                log.tokens += mem.packer.count(ep.text)
                if ep.should_remember is not None:
                    log.scores.append(d.score)
                    log.labels.append(ep.should_remember)
                    log.accepted.append(d.accepted)

    @contextmanager
    def _plain_prompt(self) -> Iterator[None]:
        """Text in the prompt for a plain LLM: prefix route, no reader LoRA (restored after)."""
        assert self.lm is not None
        ms = self.lm.settings.model
        old = (ms.memory_route, ms.memory_reader)
        ms.memory_route, ms.memory_reader = "prefix", False
        try:
            yield
        finally:
            ms.memory_route, ms.memory_reader = old

    # ------------------------------------------------------------------ running
    def run(self, mode: str, units: Sequence[Unit]) -> ModeResult:
        """Answer every unit in ``mode``; memories and RAG stores are fresh for each call."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if self.lm is None and mode != "retrieval-only":
            raise ValueError(f"mode {mode} needs a language model")
        log = GateLog([], [], [], 0, self.base_settings.gate.tau)
        t0 = time.perf_counter()
        self.embedder.warm([e.text for u in units for e in u.writes] + [u.question.cue for u in units])
        outcomes: list[Outcome] = []
        bar = _progress(units, f"{mode}", self.options.progress)
        if mode in MEMORY_MODES:
            with self._memory() as mem:
                for unit in bar:
                    t = time.perf_counter()
                    if mode != "B1-empty":
                        self._write(mem, unit.writes, unit.namespace, log)
                    ingest = (time.perf_counter() - t) * 1000
                    out = self._answer(mode, unit, mem=mem)
                    out.ingest_ms = ingest
                    outcomes.append(out)
        elif mode in ("rag", "bm25-rag"):
            stores: dict[str, RagStore | Bm25Store] = {}
            for unit in bar:
                t = time.perf_counter()
                if unit.namespace not in stores:
                    stores[unit.namespace] = (RagStore(self.embedder, chunk_size=self.options.rag_chunk)
                                              if mode == "rag" else Bm25Store())
                store = stores[unit.namespace]
                store.add(unit.writes)
                ingest = (time.perf_counter() - t) * 1000
                out = self._answer(mode, unit, rag=store)
                out.ingest_ms = ingest
                outcomes.append(out)
        else:
            outcomes = [self._answer(mode, unit) for unit in bar]
        return ModeResult(mode, outcomes, log, time.perf_counter() - t0)

    def _answer(self, mode: str, unit: Unit, *, mem: HEIMemory | None = None,
                rag: RagStore | Bm25Store | None = None) -> Outcome:
        from hei_nw_plugin import Cue

        q = unit.question
        opts = self.options
        stages: dict[str, float] = {}
        ranked: list[str] | None = None
        memory_text: str | None = None
        fitted = None
        t0 = time.perf_counter()
        recalled = None
        ranked_traces: list[Any] = []
        if mem is not None:
            cue = Cue(text=q.cue, slots=dict(q.cue_slots) if opts.cue_slots else {})
            rr = mem.recall(cue, k=opts.k, namespace=unit.namespace)
            ranked = [str(r.trace.metadata.get("episode_id", "")) for r in rr.traces]
            stages |= {f"recall_{s}": v for s, v in rr.timings_ms.items() if s != "total"}
            stages["recall"] = rr.timings_ms["total"]
            memory_text = rr.memory_tokens.text
            recalled = rr.traces[0] if rr.traces else None
            ranked_traces = [r.trace for r in rr.traces]
        elif rag is not None:
            t = time.perf_counter()
            memory_text, ranked = rag.search(q.cue, opts.k)
            stages["retrieve"] = (time.perf_counter() - t) * 1000
        elif mode == "oracle":
            memory_text = oracle_memory(unit.evidence, self._packer())
        elif mode == "long-context":
            t = time.perf_counter()
            fitted = fit_transcript(unit.transcript, self._transcript_budget(unit), self._count)
            memory_text = fitted.text
            stages["fit"] = (time.perf_counter() - t) * 1000

        out = Outcome(id=unit.id, prediction="", golds=[q.answer, *q.aliases], em=0.0, f1=0.0, lag=unit.lag,
                      category=q.category, ranked=ranked, relevant=list(q.evidence))
        if fitted is not None:
            out.truncated, out.dropped_episodes = fitted.truncated, fitted.dropped
        if mode == "retrieval-only":
            out.prediction = answer_from_trace(recalled, q.answer_slot)
        else:
            self._generate(mode, unit, memory_text, out, stages, ranked_traces)
        out.latency_ms = (time.perf_counter() - t0) * 1000
        out.stages_ms = stages
        out.em = M.exact_match(out.prediction, out.golds)
        out.f1 = M.token_f1(out.prediction, out.golds)
        out.abstained = M.is_abstention(out.prediction)
        if q.category is not None and q.category.isdigit():
            out.locomo_f1 = M.locomo_score(out.prediction, q.answer, int(q.category))
        return out

    def _generate(self, mode: str, unit: Unit, memory_text: str | None, out: Outcome, stages: dict[str, float],
                  recalled: list[Any]) -> None:
        from hei_nw_plugin.model.prompting import answer_messages, prompt_memory

        lm = self.lm
        assert lm is not None
        plain = mode in PLAIN_MODES
        lm.mode = {"B0": "B0", "B3": "B3", "B2": "B2"}.get(mode, "B1")  # type: ignore[assignment]
        with self._plain_prompt() if plain else _nothing():
            ans = lm.generate_answer(
                unit.question.cue, namespace=unit.namespace, memory_text=memory_text if mode != "B0" else None,
                one_shot=unit.one_shot, max_new_tokens=self.options.max_new_tokens, recalled=recalled,
            )
        stages |= {s: v for s, v in ans.timings_ms.items() if s != "total"}
        shown = prompt_memory(ans.memory_text, ans.route) if ans.route is not None else ""
        out.prediction = ans.text
        if ans.abstain is not None:
            out.abstain_p, out.abstain_top = ans.abstain
        out.prompt_tokens = self._prompt_tokens(answer_messages(unit.question.cue, shown, one_shot=unit.one_shot))
        out.new_tokens = ans.new_tokens
        if ans.route in ("adapter", "both") and ans.memory_text:
            out.adapter_memory_tokens = lm.count_tokens(ans.memory_text)
        assert self.shape is not None
        out.attention_gflops = attention_flops(self.shape, out.prompt_tokens, out.new_tokens) / 1e9
        out.kv_cache_mb = kv_cache_mb(self.shape, out.prompt_tokens + out.new_tokens)

    # ------------------------------------------------------------------ helpers
    def _count(self, text: str) -> int:
        assert self.lm is not None
        return self.lm.count_tokens(text)

    def _packer(self) -> Any:
        from hei_nw_plugin.pack import Packer

        return Packer(self.base_settings.pack, token_counter=self._count if self.lm is not None else None)

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        assert self.lm is not None
        enc = self.lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        return int(enc["input_ids"].shape[1])

    def window(self) -> int:
        """Model window in tokens (``context_window`` when set, else the config's maximum)."""
        assert self.lm is not None
        return int(self.options.context_window or self.lm.base_model.config.max_position_embeddings)

    def _transcript_budget(self, unit: Unit) -> int:
        from hei_nw_plugin.model.prompting import answer_messages

        overhead = self._prompt_tokens(answer_messages(unit.question.cue, "", one_shot=unit.one_shot))
        return max(0, self.window() - overhead - self.options.max_new_tokens)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _progress(units: Sequence[Unit], desc: str, enabled: bool) -> Any:
    if not enabled:
        return units
    from tqdm.auto import tqdm

    return tqdm(units, desc=desc, unit="q", leave=False)


# ---------------------------------------------------------------------- records


def run_id(task: str, condition: str | None, mode: str, *, seed: int, n: int, tag: str = "") -> str:
    """``<task>-<condition>-<mode>[-tag]-s<seed>-n<n>`` with unsafe characters replaced."""
    parts = [task.replace(":", "-"), condition or "all", mode, *([tag] if tag else []), f"s{seed}", f"n{n}"]
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in "-".join(parts))


def _per_item(outcomes: Sequence[Outcome], k: int, *, ranking: bool = True) -> dict[str, np.ndarray]:
    vals: dict[str, np.ndarray] = {
        "em": np.array([o.em for o in outcomes]),
        "f1": np.array([o.f1 for o in outcomes]),
    }
    if all(o.locomo_f1 is not None for o in outcomes):
        vals["locomo_f1"] = np.array([o.locomo_f1 for o in outcomes], dtype=np.float64)
    scored = [o for o in outcomes if o.ranked is not None and o.relevant]
    if ranking and scored and len(scored) == len(outcomes):
        every = M.retrieval_per_query([o.ranked or [] for o in scored], [set(o.relevant) for o in scored], [1, k])
        vals["p@1"], vals[f"recall@{k}"], vals["mrr"] = every["p@1"], every[f"recall@{k}"], every["mrr"]
    return vals


def build_record(
    result: ModeResult, *, task: str, condition: str | None, options: RunOptions, model_id: str | None,
    generation: dict[str, Any] | None, config: dict[str, Any], tag: str = "",
) -> RunRecord:
    """A RunRecord for one mode's outcomes (comparisons are added by :func:`refresh_comparisons`)."""
    outs = result.outcomes
    if not outs:
        raise ValueError("no outcomes to record")
    seed, nb = options.seed, options.n_boot
    metrics: dict[str, MetricValue] = {}
    for name, vals in _per_item(outs, options.k, ranking=result.mode in RANKING_MODES).items():
        metrics[name] = MetricValue.of(M.bootstrap_ci(vals, n_boot=nb, seed=seed))
    breakdown: dict[str, dict[str, MetricValue]] = {}
    if "locomo_f1" in metrics:
        sc = M.locomo_scores([o.prediction for o in outs], [o.golds[0] for o in outs],
                             [int(o.category or 0) for o in outs], n_boot=nb, seed=seed)
        cats = np.array([int(o.category or 0) for o in outs])
        abstained = np.array([float(o.abstained) for o in outs])
        for cat, est in sc.per_category.items():
            breakdown[f"category {cat}"] = {
                "locomo_f1": MetricValue.of(est),
                "abstained": MetricValue.of(M.bootstrap_ci(abstained[cats == cat], n_boot=nb, seed=seed)),
            }
        if sc.answerable is not None:
            metrics["locomo_f1_cat1-4"] = MetricValue.of(sc.answerable)
            answerable = abstained[np.isin(cats, [1, 2, 3, 4])]
            metrics["abstained_cat1-4"] = MetricValue.of(M.bootstrap_ci(answerable, n_boot=nb, seed=seed))
        if sc.adversarial is not None:
            metrics["locomo_f1_cat5"] = MetricValue.of(sc.adversarial)  # = the share of category 5 abstained on
    if result.mode != "retrieval-only":
        metrics["abstained"] = MetricValue.of(M.bootstrap_ci([float(o.abstained) for o in outs], n_boot=nb, seed=seed))
        for name, unit in (("prompt_tokens", "tokens"), ("new_tokens", "tokens"), ("attention_gflops", "GFLOPs"),
                           ("kv_cache_mb", "MB")):
            metrics[name] = MetricValue.of(M.bootstrap_ci([float(getattr(o, name)) for o in outs], n_boot=nb, seed=seed), unit=unit)
        if any(o.adapter_memory_tokens for o in outs):
            metrics["adapter_memory_tokens"] = MetricValue(
                value=float(np.mean([o.adapter_memory_tokens for o in outs])), n=len(outs), unit="tokens")
    lat = M.latency_summary([o.latency_ms for o in outs])
    metrics["latency_p50"] = MetricValue(value=lat.p50_ms, n=lat.n, unit="ms")
    metrics["latency_p95"] = MetricValue(value=lat.p95_ms, n=lat.n, unit="ms")
    for stage in sorted({s for o in outs for s in o.stages_ms}):
        v = [o.stages_ms.get(stage, 0.0) for o in outs]
        metrics[f"{stage}_p50"] = MetricValue(value=float(np.percentile(v, 50)), n=len(v), unit="ms")
        metrics[f"{stage}_p95"] = MetricValue(value=float(np.percentile(v, 95)), n=len(v), unit="ms")
    if any(o.ingest_ms for o in outs):
        metrics["ingest_p50"] = MetricValue(value=float(np.percentile([o.ingest_ms for o in outs], 50)), n=len(outs), unit="ms")
    if result.mode == "long-context":
        metrics["truncated_items"] = MetricValue(value=float(np.mean([o.truncated for o in outs])), n=len(outs))
        metrics["truncated_count"] = MetricValue(value=float(sum(o.truncated for o in outs)), n=len(outs), unit="items")
        metrics["dropped_episodes"] = MetricValue(value=float(np.mean([o.dropped_episodes for o in outs])), n=len(outs), unit="episodes")
    metrics.update(gate_metrics(result.gate))
    curves = {}
    lagged = [o for o in outs if o.lag is not None]
    if lagged:
        bins = M.accuracy_by_lag([o.em for o in lagged], [int(o.lag or 0) for o in lagged], n_boot=nb, seed=seed)
        curves["EM vs time lag"] = Curve.from_lag_bins(bins, "EM")
    return RunRecord(
        run_id=run_id(task, condition, result.mode, seed=seed, n=len(outs), tag=tag),
        task=task, condition=condition, mode=result.mode, model_id=model_id,
        seeds={"data": seed, "bootstrap": seed, "model": int((generation or {}).get("seed", 0) or 0)},
        git_commit=git_commit(),
        config={**config, "options": asdict(options), "generation": generation or {}, "wall_s": round(result.wall_s, 2)},
        n_items=len(outs), metrics=metrics, breakdown=breakdown, curves=curves,
    )


def write_run(record: RunRecord, result: ModeResult, folder: str | Path) -> Path:
    """Write the record and its per-question sidecar; returns the record's path."""
    side = Path(folder) / f"{record.run_id}{SIDECAR}"
    side.parent.mkdir(parents=True, exist_ok=True)
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for o in result.outcomes:
            fh.write(json.dumps(asdict(o)) + "\n")
    os.replace(tmp, side)  # sidecar first: a record on disk always has its sidecar
    return write_record(record, folder)


def _sidecar(folder: Path, record: RunRecord) -> dict[str, dict[str, Any]] | None:
    path = folder / f"{record.run_id}{SIDECAR}"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["id"]: r for r in rows}


def _pair(rec: RunRecord, mine: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]], baseline: str,
          n_boot: int) -> list[Comparison]:
    """Paired differences of :data:`COMPARED` metrics over the questions both runs answered."""
    common = [i for i in mine if i in theirs]
    if len(common) < 2:
        return []
    seed = rec.seeds.get("bootstrap", 0)
    comps = []
    for metric in COMPARED:
        if any(mine[i].get(metric) is None or theirs[i].get(metric) is None for i in common):
            continue
        if metric == "locomo_f1" and any(str(mine[i].get("category")) == "5" for i in common):
            picked = [i for i in common if str(mine[i].get("category")) != "5"]
            metric_name = "locomo_f1_cat1-4"
        else:
            picked, metric_name = common, metric
        if len(picked) < 2:
            continue
        diff = M.paired_bootstrap_diff([mine[i][metric] for i in picked], [theirs[i][metric] for i in picked],
                                       n_boot=n_boot, seed=seed)
        comps.append(Comparison(metric=metric_name, mode=rec.mode, baseline=baseline,
                                diff=MetricValue.of(diff), excludes_zero=M.excludes_zero(diff), seed=seed))
    return comps


def refresh_comparisons(folder: str | Path, *, baseline: str = "B0", n_boot: int = 2_000,
                        against: Sequence[str] = AGAINST) -> int:
    """Pair every run in ``folder`` with the ``baseline`` run of the same task, condition and seed,
    and every B1 run with the reader also with the runs named in ``against``.

    Differences ``mode − other`` of EM, F1 and LoCoMo F1 (categories 1-4: category 5 is
    scored apart) over the questions both answered, with a paired-bootstrap 95% CI,
    replace the run's comparisons; a sampled baseline (long context) pairs on its sample.
    ``noreader`` in ``against`` is the same B1 run without the memory reader (same route).
    Only runs with a sidecar (written by this runner) are touched. Returns how many
    records were rewritten.
    """
    from hei_nw_eval.report import mode_label

    folder = Path(folder)
    records = load_records(folder)
    groups: dict[tuple[str, str | None, Any], dict[str, RunRecord]] = {}
    for r in records:
        groups.setdefault((r.task, r.condition, r.seeds.get("data")), {})[mode_label(r)] = r
    changed = 0
    for rec in records:
        runs = groups[(rec.task, rec.condition, rec.seeds.get("data"))]
        label = mode_label(rec)
        others = [baseline] if rec.mode != baseline else []
        if rec.mode == "B1" and "noreader" not in label:
            for name in against:
                if name == "noreader":
                    others.append(f"{label[:-1]}, noreader)" if label.endswith(")") else f"{label} (noreader)")
                else:
                    others.append(name)
        mine = _sidecar(folder, rec)
        comps: list[Comparison] = []
        for other in others:
            base = runs.get(other)
            theirs = _sidecar(folder, base) if base is not None else None
            if mine is not None and theirs is not None:
                comps += _pair(rec, mine, theirs, other, n_boot)
        if not comps or mine is None:
            continue
        rec.comparisons = comps
        write_record(rec, folder)
        changed += 1
    return changed

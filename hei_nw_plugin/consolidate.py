"""Consolidation: replayed episodes become a versioned LoRA on the base model (modes B2/B3).

:class:`ConsolidationWorker` runs one consolidation per :meth:`~ConsolidationWorker.step`:

1. the :class:`~hei_nw_plugin.replay.ReplayScheduler` picks ``replay_size``
   traces (CA2 priority, which favours traces recall has returned, or
   ``shuffled`` for the ablation: same budget); up to ``rehearse`` traces of
   earlier accepted versions are rehearsed beside them, so a later
   consolidation starts from the previous adapter without overwriting it;
2. each trace gives training rows (:mod:`hei_nw_plugin.consolidation_rows`): a
   language-model row of its text and Cue→Answer rows asking each slot from the
   others in several wordings (rehearsed traces: plain only unless ``rehearse_paraphrase``), in the
   one-shot answer template the model is asked with, memory empty;
3. a peft LoRA is trained (answer / text tokens only carry loss) until the new
   and rehearsed Cue→Answer rows are answered (``stop_train_em``), bounded by
   ``max_steps`` and ``max_seconds``; each step also pulls the model towards the
   frozen base model's next-token distribution on general prompts (KL, weight
   ``kl_weight``), because training on episode rows alone taught the model to
   answer every question from the episodes (H100: base tasks 12/12 -> 0/12
   after 60 steps). An interrupted run leaves a checkpoint the next ``step()``
   resumes bit for bit;
4. the :class:`~hei_nw_plugin.drift.DriftGuard` scores base-task accuracy
   (log-likelihood choice among four answers, 239 items) and held-text
   perplexity; a version that loses more than ``drift_max_drop`` points or
   raises perplexity by more than ``drift_max_ppl_rise`` is kept on disk as
   ``rejected`` and the previous version stays active;
5. the version folder ``vNNNN/`` gets the adapter and ``lineage.json`` (trace
   ids, config, base-model weights hash, metrics); the lineage is appended to
   the signed provenance log of every namespace it drew from, and the replayed
   traces' replay counts go up.

Deletion: a deleted trace leaves the replay queue and the store, so no later
consolidation trains on it (neither as new replay nor as rehearsal). Weights
already trained on it still carry what they learned: versions whose lineage
names a deleted trace are listed by :meth:`~ConsolidationWorker.status` under
``holds_deleted``, and ``step(fresh=True)`` retrains from the base model on the
surviving traces only (or roll back to a version from before the trace).
"""

from __future__ import annotations

import hashlib
import json
import random
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hei_nw_plugin.consolidation_config import ConsolidationConfig, steps_for
from hei_nw_plugin.consolidation_rows import TrainingRow, build_rows, kl_rows
from hei_nw_plugin.errors import ConfigError, TraceNotFoundError
from hei_nw_plugin.model.prompting import DEFAULT_ONE_SHOT, OneShot
from hei_nw_plugin.types import DEFAULT_NAMESPACE, Trace

if TYPE_CHECKING:
    from hei_nw_plugin.config import ModelSettings
    from hei_nw_plugin.drift import DriftGuard, DriftScore
    from hei_nw_plugin.memory import HEIMemory

ModelFactory = Callable[[], tuple[Any, Any]]
"""() -> (causal LM, tokenizer): a fresh base model for training."""

STATE_FILE = "state.json"
LINEAGE_FILE = "lineage.json"
CHECKPOINT_DIR = ".checkpoint"


@dataclass
class ConsolidationResult:
    """What one :meth:`ConsolidationWorker.step` did (seconds and MB as named)."""

    status: Literal["accepted", "rejected", "interrupted", "empty"]
    version: str | None
    folder: Path | None
    trace_ids: list[str] = field(default_factory=list)
    rehearsed_ids: list[str] = field(default_factory=list)
    rows: int = 0
    steps: int = 0
    train_em: float | None = None
    """Share of the Cue→Answer rows answered exactly (teacher forcing) when training stopped."""
    train_seconds: float = 0.0
    total_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    peak_device_mb: float | None = None
    loss_first: float | None = None
    loss_last: float | None = None
    drift: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"folder": str(self.folder) if self.folder else None}


def model_settings_factory(settings: ModelSettings) -> tuple[ModelFactory, str]:
    """A factory loading the configured base model, and that model's weights hash."""
    from hei_nw_plugin.model.loading import CONVERSION_RECORD, load_base_model, resolve_model_path

    path = Path(resolve_model_path(settings))
    record = path / CONVERSION_RECORD
    weights = path / "model.safetensors"
    digest = json.loads(record.read_text())["weights_sha256"] if record.is_file() else _file_sha256(weights)

    def load() -> tuple[Any, Any]:
        lm = load_base_model(settings)
        return lm.model, lm.tokenizer

    return load, digest


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def state_dict_sha256(model: Any) -> str:
    """Hash of a model's parameters (for base models without a weights file)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class ConsolidationWorker:
    """Turns replayed traces of ``namespaces`` into versioned LoRA adapters under ``out_dir``.

    ``model`` is the base model's :class:`~hei_nw_plugin.config.ModelSettings`
    (loaded once, offline) or a factory returning ``(model, tokenizer)``.
    """

    def __init__(
        self,
        memory: HEIMemory,
        model: ModelSettings | ModelFactory,
        *,
        out_dir: str | Path,
        namespaces: Sequence[str] = (DEFAULT_NAMESPACE,),
        config: ConsolidationConfig | None = None,
        one_shot: OneShot | None = DEFAULT_ONE_SHOT,
        drift: DriftGuard | None = None,
        progress: bool = True,
    ) -> None:
        if not namespaces:
            raise ConfigError("consolidation needs at least one namespace")
        self.memory = memory
        self.out_dir = Path(out_dir)
        self.namespaces = list(namespaces)
        self.config = config or ConsolidationConfig()
        self.one_shot = one_shot
        self.progress = progress
        self._drift = drift
        if callable(model):
            self._factory, self._base_hash = model, None
        else:
            self._factory, self._base_hash = model_settings_factory(model)
        self._base: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        path = self.out_dir / STATE_FILE
        if path.is_file():
            return dict(json.loads(path.read_text()))
        return {"active": None, "versions": []}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(self.out_dir / STATE_FILE)  # atomic: a crash leaves the old or the new state, never half

    @property
    def active(self) -> Path | None:
        """Folder of the active adapter version (None: the base model alone)."""
        name = self._state().get("active")
        return self.out_dir / name if name else None

    def lineage(self, version: str) -> dict[str, Any]:
        return dict(json.loads((self.out_dir / version / LINEAGE_FILE).read_text()))

    def _active_chain(self) -> list[str]:
        """Accepted versions from the active one back to the first, newest first."""
        chain: list[str] = []
        name = self._state().get("active")
        while name:
            chain.append(name)
            name = self.lineage(name).get("parent")
        return chain

    # ------------------------------------------------------------------ model
    def _base_model(self) -> tuple[Any, Any]:
        if self._base is None:
            import torch

            model, tok = self._factory()
            model.to(self.config.device)
            for p in model.parameters():
                p.requires_grad_(False)
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token
            self._base = (model, tok)
            if self._base_hash is None:
                self._base_hash = state_dict_sha256(model)
            torch.manual_seed(self.config.seed)
        return self._base

    @property
    def base_hash(self) -> str:
        self._base_model()
        assert self._base_hash is not None
        return self._base_hash

    def _guard(self) -> DriftGuard:
        if self._drift is None:
            from hei_nw_plugin.drift import DriftGuard

            self._drift = DriftGuard(max_drop=self.config.drift_max_drop, max_ppl_rise=self.config.drift_max_ppl_rise)
        return self._drift

    def _reference_drift(self) -> DriftScore:
        """The base model's drift-probe score, computed once per out_dir, base model and probe."""
        from hei_nw_plugin.drift import DriftScore

        state = self._state()
        cached = state.get("base_drift")
        key = {"base_sha256": self.base_hash, "probe": self._guard().signature}
        if cached and all(cached.get(k) == v for k, v in key.items()):
            return DriftScore.from_dict(cached)
        model, tok = self._base_model()
        score = self._guard().score(model, tok)
        state["base_drift"] = score.to_dict() | key
        self._save_state(state)
        return score

    def _kl_rows(self) -> list[TrainingRow]:
        """Distillation rows: general prompts (disjoint from the drift probe; none from memory) with the base
        model's greedy answers, in this worker's answer template and the default one (cached per base model)."""
        from hei_nw_plugin.drift import general_prompts

        if self.config.kl_weight <= 0:
            return []
        questions, texts = general_prompts()
        state = self._state()
        cached = state.get("kl_answers") or {}
        if cached.get("base_sha256") != self.base_hash or cached.get("questions") != questions:
            model, tok = self._base_model()
            from hei_nw_plugin.drift import base_answer

            cached = {"base_sha256": self.base_hash, "questions": questions,
                      "answers": [base_answer(model, tok, q) for q in questions]}
            state = self._state()
            state["kl_answers"] = cached
            self._save_state(state)
        pairs = list(zip(questions, cached["answers"]))
        return kl_rows(pairs, texts, one_shots=[self.one_shot, DEFAULT_ONE_SHOT])

    # ------------------------------------------------------------------ traces
    def _traces_by_id(self, pairs: Sequence[tuple[str, str]]) -> list[Trace]:
        """Live traces for (namespace, id) pairs; deleted or expired ones are skipped."""
        out = []
        for ns, tid in pairs:
            try:
                out.append(self.memory.get(tid, namespace=ns))
            except TraceNotFoundError:
                continue
        return out

    def _plan(self, cycle_seed: int, fresh: bool) -> tuple[list[Any], list[Trace]]:
        """(replay batches per namespace, rehearsal traces)."""
        from hei_nw_plugin.replay import ReplayScheduler

        cfg = self.config
        self.memory.flush()  # recall counts steer the priority
        sched = ReplayScheduler(self.memory)
        batches = []
        # One budget across namespaces: each namespace proposes, the global priority decides.
        proposals = []
        for ns in self.namespaces:
            if not self.memory.store.has_namespace(ns):
                continue
            b = sched.next_batch(cfg.replay_size, namespace=ns, order=cfg.order, seed=cycle_seed)
            batches.append(b)
            proposals += [(b, item) for item in b.items]
        if cfg.order == "shuffled":
            random.Random(cycle_seed).shuffle(proposals)
        else:
            proposals.sort(key=lambda bi: bi[1].priority - sched.weights.diversity * bi[1].overlap, reverse=True)
        keep = {id(item) for _, item in proposals[: cfg.replay_size]}
        for b in batches:
            b.items = [i for i in b.items if id(i) in keep]
        batches = [b for b in batches if b.items]
        picked = {i.trace.id for b in batches for i in b.items}
        earlier: list[tuple[str, str]] = []
        if not fresh:
            for version in self._active_chain():
                lin = self.lineage(version)
                earlier += [(ns, tid) for ns, tid in lin["traces"] if tid not in picked]
        earlier = list(dict.fromkeys(earlier))
        rng = random.Random(cfg.seed * 7919 + cycle_seed)
        if len(earlier) > cfg.rehearse:
            earlier = rng.sample(earlier, cfg.rehearse)
        return batches, self._traces_by_id(earlier)

    # ------------------------------------------------------------------ step
    def step(self, *, fresh: bool = False) -> ConsolidationResult:
        """One consolidation (see the module docstring). ``fresh`` trains from the base model and rehearses nothing."""
        t_start = time.perf_counter()
        cfg = self.config
        state = self._state()
        cycle = len(state["versions"]) + 1
        version = f"v{cycle:04d}"
        parent = state.get("active")
        ckpt = self.out_dir / CHECKPOINT_DIR
        resume = _load_checkpoint(ckpt)
        if resume is not None:  # finish the interrupted consolidation first, on the traces it had picked
            version, parent = resume["version"], resume["parent"]
            replay_pairs = [tuple(p) for p in resume["replay"]]
            rehearse_pairs = [tuple(p) for p in resume["rehearse"]]
            fresh = bool(resume["fresh"])
            replay = self._traces_by_id(replay_pairs)  # type: ignore[arg-type]
            rehearsal = self._traces_by_id(rehearse_pairs)  # type: ignore[arg-type]
            batches = None
        else:
            batches, rehearsal = self._plan(cycle_seed=cfg.seed + cycle, fresh=fresh)
            replay = [i.trace for b in batches for i in b.items]
        if not replay:
            return ConsolidationResult(status="empty", version=None, folder=None, total_seconds=time.perf_counter() - t_start)
        parent = None if fresh else parent
        rows = build_rows(replay, one_shot=self.one_shot, lm_rows=cfg.lm_rows, qa_rows=cfg.qa_rows, paraphrase=cfg.paraphrase)
        rows += build_rows(rehearsal, one_shot=self.one_shot, lm_rows=cfg.lm_rows, qa_rows=cfg.qa_rows,
                           paraphrase=cfg.paraphrase and cfg.rehearse_paraphrase)
        if not rows:
            raise ConfigError("the picked traces give no training rows (enable lm_rows or qa_rows)")
        _reset_peak_rss()
        model, tok = self._base_model()
        reference = self._reference_drift() if cfg.drift_check else None
        plan = {"replay": [(t.namespace, t.id) for t in replay], "rehearse": [(t.namespace, t.id) for t in rehearsal],
                "fresh": fresh, "parent": parent, "version": version}
        from hei_nw_plugin.consolidation_train import train_lora

        distill = self._kl_rows()
        try:  # LoRA layers go into the base model itself (no copy: ~0.5 GB less) and come out again below
            run = train_lora(
                model, tok, rows, cfg,
                init_from=self.out_dir / parent if parent else None, checkpoint=ckpt, plan=plan, resume=resume,
                kl_rows=distill, progress=self.progress, label=f"consolidate {version}",
            )
        except BaseException:
            self._base = None  # reloaded next time, never reused with LoRA layers in it
            raise
        try:
            return self._finish(run, t_start=t_start, version=version, parent=parent, fresh=fresh, replay=replay,
                                rehearsal=rehearsal, rows=rows, reference=reference, batches=batches, ckpt=ckpt)
        finally:
            run.model.unload()  # removes the LoRA layers; the base weights were never changed

    def _finish(self, run: Any, *, t_start: float, version: str, parent: str | None, fresh: bool, replay: list[Trace],
                rehearsal: list[Trace], rows: list[TrainingRow], reference: DriftScore | None, batches: Any,
                ckpt: Path) -> ConsolidationResult:
        """Save, judge and record a finished (or interrupted) training run."""
        cfg = self.config
        _, tok = self._base_model()
        if not run.finished:
            return ConsolidationResult(
                status="interrupted", version=None, folder=None, trace_ids=[t.id for t in replay],
                rehearsed_ids=[t.id for t in rehearsal], rows=len(rows), steps=run.steps_done,
                train_seconds=run.seconds, total_seconds=time.perf_counter() - t_start, peak_rss_mb=_peak_rss_mb(),
                peak_device_mb=run.peak_device_mb, loss_first=run.loss_first, loss_last=run.loss_last,
                train_em=run.train_em)
        folder = self.out_dir / version
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        run.model.save_pretrained(str(folder))
        verdict = None
        if reference is not None:
            run.model.eval()
            verdict = self._guard().judge(reference, self._guard().score(run.model, tok))
        accepted = verdict is None or verdict.accepted
        result = ConsolidationResult(
            status="accepted" if accepted else "rejected", version=version, folder=folder,
            trace_ids=[t.id for t in replay], rehearsed_ids=[t.id for t in rehearsal], rows=len(rows),
            steps=run.steps_done, train_em=run.train_em, train_seconds=run.seconds, peak_rss_mb=_peak_rss_mb(),
            peak_device_mb=run.peak_device_mb, loss_first=run.loss_first, loss_last=run.loss_last,
            drift=verdict.to_dict() if verdict else None,
        )
        result.total_seconds = round(time.perf_counter() - t_start, 2)
        lineage = {
            "version": version, "status": result.status, "parent": parent, "fresh": fresh,
            "namespaces": sorted({t.namespace for t in replay + rehearsal}),
            "traces": [(t.namespace, t.id) for t in replay], "rehearsed": [(t.namespace, t.id) for t in rehearsal],
            "config": cfg.model_dump(mode="json"), "one_shot": asdict(self.one_shot) if self.one_shot else None,
            "base_model": {"weights_sha256": self.base_hash},
            "adapter_sha256": _file_sha256(folder / "adapter_model.safetensors"),
            "metrics": {k: v for k, v in result.to_dict().items() if k not in ("trace_ids", "rehearsed_ids", "folder")}
            | {"loss_curve": run.curve},
            "created_at": time.time(),
        }
        (folder / LINEAGE_FILE).write_text(json.dumps(lineage, indent=1) + "\n")
        self._log_lineage(lineage)
        state = self._state()
        state["versions"].append({"version": version, "status": result.status, "parent": parent})
        if accepted:
            state["active"] = version
            if batches is not None:
                self._mark_replayed(batches)
            else:
                self._mark_replayed_traces(replay)
        self._save_state(state)
        shutil.rmtree(ckpt, ignore_errors=True)
        self.memory.telemetry.observe_consolidation(result.status, result.drift)
        return result

    def _mark_replayed(self, batches: Sequence[Any]) -> None:
        from hei_nw_plugin.replay import ReplayScheduler

        sched = ReplayScheduler(self.memory)
        for b in batches:
            sched.mark_replayed(b)

    def _mark_replayed_traces(self, traces: Sequence[Trace]) -> None:
        seqs = [self.memory.store.seq_of(t.namespace, t.id) for t in traces]
        self.memory.store.mark_replayed([s for s in seqs if s is not None])

    def _log_lineage(self, lineage: dict[str, Any]) -> None:
        """One signed provenance record per namespace the version drew from (its own trace ids only)."""
        for ns in lineage["namespaces"]:
            body = {
                "version": lineage["version"], "status": lineage["status"], "parent": lineage["parent"],
                "folder": str(self.out_dir / lineage["version"]),
                "trace_ids": [tid for n, tid in lineage["traces"] if n == ns],
                "rehearsed_ids": [tid for n, tid in lineage["rehearsed"] if n == ns],
                "config_sha256": hashlib.sha256(json.dumps(lineage["config"], sort_keys=True).encode()).hexdigest(),
                "base_weights_sha256": lineage["base_model"]["weights_sha256"],
                "adapter_sha256": lineage["adapter_sha256"],
                "drift": (lineage["metrics"].get("drift") or {}).get("change_points"),
            }
            self.memory.store.log_event(ns, "consolidation", body)

    # ------------------------------------------------------------------ rollback / status
    def rollback(self) -> str | None:
        """Make the active version's parent active again (None: back to the base model); returns it."""
        state = self._state()
        current = state.get("active")
        if current is None:
            raise ConfigError("no consolidated version is active; nothing to roll back")
        previous = self.lineage(current).get("parent")
        state["active"] = previous
        state.setdefault("rollbacks", []).append({"from": current, "to": previous, "at": time.time()})
        self._save_state(state)
        for ns in self.lineage(current)["namespaces"]:
            self.memory.store.log_event(ns, "consolidation_rollback", {"from": current, "to": previous})
        return previous

    def status(self) -> dict[str, Any]:
        """Active version, every version's status and trace count, and versions holding deleted traces."""
        state = self._state()
        versions = []
        holds_deleted = []
        for v in state["versions"]:
            lin = self.lineage(v["version"]) if (self.out_dir / v["version"] / LINEAGE_FILE).is_file() else {}
            pairs = [tuple(p) for p in lin.get("traces", []) + lin.get("rehearsed", [])]
            live = len(self._traces_by_id(pairs))  # type: ignore[arg-type]
            versions.append({**v, "traces": len(lin.get("traces", [])), "rehearsed": len(lin.get("rehearsed", [])),
                             "drift": (lin.get("metrics", {}).get("drift") or {}).get("change_points")})
            if live < len(pairs):
                holds_deleted.append(v["version"])
        return {"out_dir": str(self.out_dir), "active": state.get("active"), "versions": versions,
                "holds_deleted": holds_deleted, "checkpoint": (self.out_dir / CHECKPOINT_DIR).is_dir(),
                "rollbacks": state.get("rollbacks", [])}


def _load_checkpoint(folder: Path) -> dict[str, Any] | None:
    meta = folder / "meta.json"
    return dict(json.loads(meta.read_text())) if meta.is_file() else None


def _reset_peak_rss() -> None:
    """Reset the process's peak-RSS mark so the next reading is this consolidation's (Linux; best effort)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    """Peak resident memory (MB) since the last reset (Linux VmHWM; else the process's lifetime peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


__all__ = [
    "ConsolidationConfig",
    "ConsolidationResult",
    "ConsolidationWorker",
    "TrainingRow",
    "model_settings_factory",
    "steps_for",
]

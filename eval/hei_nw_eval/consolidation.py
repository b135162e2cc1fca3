"""Modes B2/B3 for real: write through the gate, consolidate in cycles, ask after each cycle.

For each scheduler order (``ca2`` = scheduled, ``shuffled`` = the ablation at
the same budget) a fresh memory receives every unit's episodes through the
live write gate, exactly as B1's does. Then ``cycles`` times: one
:class:`~hei_nw_plugin.consolidate.ConsolidationWorker` step over all the
units' namespaces, the accepted adapter is loaded into the wrapper, and every
question is asked in B3 (adapter, no recall) and, when asked for, B2 (adapter +
recall). B0 and B1 are answered on the same memory once, as the references.

Each (mode, order, cycle) becomes a RunRecord with sidecar (tag
``<order>-c<cycle>``), so the folder's paired comparisons against B0 cover
them; :class:`ConsolidationEval` (``consolidation-<task>-s<seed>-n<n>.json``)
(in ``curves/``) holds the per-cycle curve with CIs, B3/B1 retention, scheduled − shuffled
differences, and each cycle's time, peak memory and base-task drift;
:func:`plot_curve` draws B3 per cycle against B1 and B0 from that JSON alone
(``python -m hei_nw_eval.consolidation plot CURVE.json OUT.png``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hei_nw_eval import metrics as M
from hei_nw_eval.engine_io import GateLog
from hei_nw_eval.runner import EvalRunner, ModeResult, Outcome, Unit, build_record, write_run

ORDER_NAMES = {"ca2": "scheduled", "shuffled": "shuffled"}


@dataclass
class Est:
    """A mean (or difference) with its 95% bootstrap interval."""

    value: float
    low: float | None
    high: float | None
    n: int

    @classmethod
    def of(cls, e: M.Estimate) -> Est:
        return cls(value=round(e.value, 4), low=None if e.low is None else round(e.low, 4),
                   high=None if e.high is None else round(e.high, 4), n=e.n)

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


@dataclass
class CyclePoint:
    """B3 (and B2) after one consolidation cycle of one order."""

    cycle: int
    b3_em: Est
    b3_minus_b0: Est
    b3_minus_b0_excludes_zero: bool
    retention_vs_b1: float | None
    """B3 EM / B1 EM (point estimate)."""
    targets_consolidated: float
    """Share of questions whose evidence trace some accepted version trained on so far."""
    consolidation: dict[str, Any]
    """The ConsolidationResult of this cycle (status, steps, seconds, peak MB, drift, …)."""
    b2_em: Est | None = None
    active_version: str | None = None
    """The adapter version B3 answered with; None means no version was accepted yet and B3 is the base model."""


@dataclass
class ConsolidationEval:
    task: str
    condition: str | None
    n: int
    seed: int
    cycles: int
    config: dict[str, Any]
    b0_em: Est
    b1_em: Est
    orders: dict[str, list[CyclePoint]] = field(default_factory=dict)
    scheduled_minus_shuffled: list[Est] = field(default_factory=list)
    """Paired B3 EM difference per cycle (scheduled − shuffled), when both ran."""
    machine: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: Path) -> Path:
        """Into ``folder/curves/`` (the folder itself holds RunRecords only)."""
        folder = folder / "curves"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"consolidation-{self.task.replace(':', '-')}-{self.condition or 'all'}-s{self.seed}-n{self.n}.json"
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return path


def _em(outs: Sequence[Outcome], n_boot: int, seed: int) -> Est:
    return Est.of(M.bootstrap_ci([o.em for o in outs], n_boot=n_boot, seed=seed))


def _diff(a: Sequence[Outcome], b: Sequence[Outcome], n_boot: int, seed: int) -> Est:
    return Est.of(M.paired_bootstrap_diff([o.em for o in a], [o.em for o in b], n_boot=n_boot, seed=seed))


def run_consolidation_eval(
    runner: EvalRunner, units: Sequence[Unit], *, task: str, condition: str | None, out: Path,
    cycles: int, orders: Sequence[str] = ("ca2", "shuffled"), b2: bool = False, config: dict[str, Any] | None = None,
    settings_model: Any = None, seed: int = 0, n_boot: int = 2000,
) -> tuple[ConsolidationEval, list[Path]]:
    """Play ``cycles`` consolidation cycles per order (see the module docstring); returns the curve and record paths.

    ``config`` overrides :class:`~hei_nw_plugin.consolidate.ConsolidationConfig` fields (its
    ``replay_size``, a few dozen traces, is each cycle's budget: small, frequent cycles).
    """
    from hei_nw_plugin.consolidate import ConsolidationConfig, ConsolidationWorker

    lm = runner.lm
    assert lm is not None, "consolidation needs the language model"
    cfg_over = dict(config or {})
    device = str(lm.base_model.device)
    cfg_over.setdefault("device", device)
    written: list[Path] = []
    result = None
    finals: dict[str, list[list[Outcome]]] = {}
    opts = runner.options
    one_shot = units[0].one_shot if units else None
    for order in orders:
        log = GateLog([], [], [], 0, runner.base_settings.gate.tau)
        with runner._memory() as mem, _tmp_dir(runner) as adapters:
            for unit in units:
                runner._write(mem, unit.writes, unit.namespace, log)
            namespaces = list(dict.fromkeys(u.namespace for u in units))
            queued = sum(len(mem.store.replay_rows(ns)) for ns in namespaces if mem.store.has_namespace(ns))
            over = cfg_over | {"order": order}
            cfg = ConsolidationConfig(**over)
            if result is None:
                refs = {m: [runner._answer(m, u, mem=mem if m == "B1" else None) for u in units] for m in ("B0", "B1")}
                result = ConsolidationEval(task=task, condition=condition, n=len(units), seed=seed, cycles=cycles,
                                           config=cfg.model_dump(mode="json") | {"order": None, "queued_traces": queued},
                                           b0_em=_em(refs["B0"], n_boot, seed), b1_em=_em(refs["B1"], n_boot, seed))
                for mode in ("B0", "B1"):
                    written.append(_record(runner, mode, refs[mode], log, task, condition, "cons", out, settings_model))
            worker = ConsolidationWorker(mem, settings_model, out_dir=adapters, namespaces=namespaces, config=cfg,
                                         one_shot=one_shot, progress=opts.progress)
            evidence = {u.id: set(u.question.evidence) for u in units}
            consolidated: set[str] = set()
            points: list[CyclePoint] = []
            finals[order] = []
            for c in range(1, cycles + 1):
                t = time.perf_counter()
                step = worker.step()
                if step.status == "accepted":
                    for ns, tid in worker.lineage(step.version or "")["traces"]:
                        consolidated.add(str(mem.get(tid, namespace=ns).metadata.get("episode_id", "")))
                active = worker.active
                if active is None:  # nothing accepted yet: B3 is the base model (recorded as such)
                    b3 = [runner._answer("B0", u) for u in units]
                else:
                    lm.load_consolidated(active)
                    b3 = [runner._answer("B3", u) for u in units]
                b2_outs = [runner._answer("B2", u, mem=mem) for u in units] if b2 and active is not None else None
                finals[order].append(b3)
                tag = f"{order}-c{c}"
                version = active.name if active is not None else None
                note = {"active_version": version, "consolidation_status": step.status}
                written.append(_record(runner, "B3", b3, log, task, condition, tag, out, settings_model, note))
                if b2_outs is not None:
                    written.append(_record(runner, "B2", b2_outs, log, task, condition, tag, out, settings_model, note))
                diff = _diff(b3, refs["B0"], n_boot, seed)
                covered = float(np.mean([bool(evidence[u.id] & consolidated) for u in units])) if units else 0.0
                points.append(CyclePoint(
                    cycle=c, b3_em=_em(b3, n_boot, seed), b3_minus_b0=diff, b3_minus_b0_excludes_zero=diff.excludes_zero,
                    retention_vs_b1=round(_em(b3, n_boot, seed).value / result.b1_em.value, 4) if result.b1_em.value else None,
                    targets_consolidated=round(covered, 4),
                    consolidation=step.to_dict() | {"cycle_seconds_with_eval": round(time.perf_counter() - t, 2)},
                    b2_em=_em(b2_outs, n_boot, seed) if b2_outs is not None else None, active_version=version,
                ))
                print(f"[{ORDER_NAMES.get(order, order)} cycle {c}] {step.status} B3 EM {points[-1].b3_em.value:.3f} "
                      f"(B1 {result.b1_em.value:.3f}, B0 {result.b0_em.value:.3f}) train {step.train_seconds:.1f}s "
                      f"peak RSS {step.peak_rss_mb} MB drift {(step.drift or {}).get('change_points')}", flush=True)
            result.orders[ORDER_NAMES.get(order, order)] = points
            lm.unload_consolidated()  # the next order starts from the base model
    assert result is not None
    if "ca2" in finals and "shuffled" in finals:
        result.scheduled_minus_shuffled = [_diff(a, b, n_boot, seed) for a, b in zip(finals["ca2"], finals["shuffled"])]
    result.machine = _machine(device)
    written.append(result.write(out))
    return result, written


def _record(runner: EvalRunner, mode: str, outs: list[Outcome], log: GateLog, task: str, condition: str | None,
            tag: str, out: Path, settings_model: Any, note: dict[str, Any] | None = None) -> Path:
    lm = runner.lm
    assert lm is not None
    result = ModeResult(mode, outs, log, sum(o.latency_ms for o in outs) / 1000)
    rec = build_record(result, task=task, condition=condition, options=runner.options,
                       model_id=getattr(settings_model, "model_id", None),
                       generation=lm.generation_record(),
                       config={"consolidation_eval": True, **(note or {}),
                               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, tag=tag)
    return write_run(rec, result, out)


class _tmp_dir:
    """A temporary folder beside the runner's memories (adapters of one order)."""

    def __init__(self, runner: EvalRunner) -> None:
        import tempfile

        self._td = tempfile.TemporaryDirectory(prefix="hei-cons-", dir=runner.work_dir)

    def __enter__(self) -> Path:
        return Path(self._td.name)

    def __exit__(self, *exc: object) -> None:
        self._td.cleanup()


def _machine(device: str) -> dict[str, Any]:
    import os
    import platform

    import torch

    info: dict[str, Any] = {"device": device, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "platform": platform.platform(), "torch": torch.__version__}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def plot_curve(json_path: Path, png_path: Path) -> Path:
    """B3 EM (95% CI) per cycle for each order, with B1 and B0 as reference lines, from the curve JSON alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(json_path).read_text())
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for order, points in data["orders"].items():
        xs = [p["cycle"] for p in points]
        ys = [p["b3_em"]["value"] for p in points]
        lo = [p["b3_em"]["value"] - (p["b3_em"]["low"] if p["b3_em"]["low"] is not None else p["b3_em"]["value"]) for p in points]
        hi = [(p["b3_em"]["high"] if p["b3_em"]["high"] is not None else p["b3_em"]["value"]) - p["b3_em"]["value"] for p in points]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=f"B3 {order}")
    for name, style in (("b1_em", "--"), ("b0_em", ":")):
        ax.axhline(data[name]["value"], linestyle=style, color="grey", label=name[:2].upper())
    ax.set_xlabel("consolidation cycle")
    ax.set_ylabel("EM")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{data['task']} {data['condition'] or ''} n={data['n']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "plot":
        raise SystemExit("usage: python -m hei_nw_eval.consolidation plot CURVE.json OUT.png")
    print(plot_curve(Path(sys.argv[2]), Path(sys.argv[3])))

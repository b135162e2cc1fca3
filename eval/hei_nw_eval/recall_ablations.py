"""Which recall features pay, on the dev data: HEI-NW's evidence recall with one setting changed at a time.

``hei-nw eval --mode retrieval --suite dev --ablations`` runs HEI-NW alone (no RAG or
BM25) over LoCoMo dev5 and bAbI qa1-qa3 under each variant of :data:`VARIANTS`, and
writes ``ablations.json`` and ``ablations.md`` beside the suite's records. Each row is
paired against the defaults over the same questions. This is how the defaults in
``RecallSettings`` and ``GateSettings.cold_writes`` / ``cold_questions`` were chosen; no scenario or
held-out item takes part.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hei_nw_eval import metrics as M
from hei_nw_eval.recall_eval import headline, per_question, run_systems

if TYPE_CHECKING:
    from hei_nw_eval.runner import Unit
    from hei_nw_plugin import HeiNwSettings
    from hei_nw_plugin.embed import Embedder

VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "defaults": {},
    "no lexical channel": {"recall": {"lexical": False}},
    "lexical weight 1.0": {"recall": {"lexical_weight": 1.0}},
    "no text versions": {"recall": {"versions": False}},
    "versions among long turns too": {"recall": {"version_max_terms": 10_000}},
    "chain off": {"recall": {"chain": "off"}},
    "chain always": {"recall": {"chain": "always"}},
    "no cold tier (gate drops)": {"gate": {"cold_writes": False}},
    "questions kept cold too": {"gate": {"cold_questions": True}},
    "cold penalty 0.2": {"recall": {"cold_penalty": 0.2}},
    "no Hopfield completion": {"hopfield": {"enabled": False}},
}
"""Name → settings overrides (section → field → value) on top of the defaults."""

METRIC_OF = {"locomo": "recall@5", "babi:qa1": "recall@1", "babi:qa2": "all@5", "babi:qa3": "all@10"}
"""The figure each task's target is stated in (the issue's Done means)."""


def run_ablations(tasks: Sequence[tuple[str, str, Sequence[Unit]]], *, embedder: Embedder, base: HeiNwSettings,
                  out: Path, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Evidence recall per (variant, task) with the paired difference to the defaults; writes JSON and Markdown."""
    from hei_nw_plugin import HeiNwSettings

    rows: dict[str, dict[str, Any]] = {}
    baseline: dict[str, np.ndarray] = {}
    for name, over in VARIANTS.items():
        data = base.model_dump()
        for section, fields in over.items():
            data[section].update(fields)
        settings = HeiNwSettings.build(**data)
        rows[name] = {}
        for task, source, units in tasks:
            run = run_systems(units, systems=["hei-nw"], embedder=embedder, settings=settings)["hei-nw"]
            metric = METRIC_OF.get(task, "recall@5")
            vals = per_question(headline(run.ranked, source))[metric]
            cell: dict[str, Any] = {"metric": metric, "value": float(vals.mean()), "n": len(vals)}
            if name == "defaults":
                baseline[task] = vals
            else:
                d = M.paired_bootstrap_diff(vals, baseline[task], n_boot=n_boot, seed=seed)
                cell["diff"] = {"value": d.value, "low": d.low, "high": d.high, "excludes_zero": M.excludes_zero(d)}
            rows[name][task] = cell
            print(f"  {name:<28}{task:<10}{metric:<10}{cell['value']:.3f}", flush=True)
    result = {"variants": VARIANTS, "tasks": [t for t, _s, _u in tasks], "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablations.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "ablations.md").write_text(ablation_table(result) + "\n", encoding="utf-8")
    return result


def ablation_table(result: dict[str, Any]) -> str:
    """Markdown: one row per variant, one column per task (value, and the paired difference to the defaults)."""
    tasks = result["tasks"]
    first = result["rows"]["defaults"]
    head = "| variant | " + " | ".join(f"{t} {first[t]['metric']}" for t in tasks) + " |"
    lines = [head, "|" + "---|" * (len(tasks) + 1)]
    for name, cells in result["rows"].items():
        parts = []
        for t in tasks:
            c = cells[t]
            d = c.get("diff")
            parts.append(f"{c['value']:.3f}" + (f" ({d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}])" if d else ""))
        lines.append(f"| {name} | " + " | ".join(parts) + " |")
    return "\n".join(lines)

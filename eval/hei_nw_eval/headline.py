"""Headline tables across tasks: one figure per task and mode, B1's paired differences, and each mode's cost.

Read from run records alone (nothing recomputed from predictions), so the tables a
README quotes are rebuilt from the committed JSON by ``python eval/real_tables.py``.
The headline figure of a task is LoCoMo's token F1 over categories 1-4 (category 5,
adversarial, is the share of answers that say the memory does not hold it), exact
match elsewhere. Columns are mode labels (:func:`hei_nw_eval.report.mode_label`), so
B1 with and without the memory reader are two columns.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from hei_nw_eval.records import MetricValue, RunRecord

MODE_ORDER: tuple[str, ...] = ("B0", "B1", "B1 (noreader)", "rag", "bm25-rag", "long-context")
"""Columns, in this order, when a task has them; other modes (routes, probes) follow."""
B1_AGAINST: tuple[str, ...] = ("B1 (noreader)", "rag", "bm25-rag", "long-context", "B0")


@dataclass(frozen=True)
class Table:
    """A titled table of text cells."""

    title: str
    header: list[str]
    rows: list[list[str]]


def headline_metric(task: str) -> str:
    """The metric a task is judged by: LoCoMo F1 on categories 1-4, else exact match."""
    return "locomo_f1_cat1-4" if task.startswith("locomo") else "em"


def _cell(m: MetricValue | None, digits: int = 3) -> str:
    if m is None or m.value is None:
        return ""
    text = f"{m.value:.{digits}f}"
    if m.low is not None and m.high is not None:
        text += f" [{m.low:.{digits}f}, {m.high:.{digits}f}]"
    return text + (f" n={m.n}" if m.n is not None else "")


def _by_task(records: list[RunRecord]) -> dict[str, dict[str, RunRecord]]:
    from hei_nw_eval.report import mode_label

    out: dict[str, dict[str, RunRecord]] = defaultdict(dict)
    for r in records:
        if r.task.startswith("recall:"):
            continue
        key = f"{r.task} ({r.condition})" if r.condition else r.task
        out[key][mode_label(r)] = r
    return out


def _columns(runs_by_task: dict[str, dict[str, RunRecord]]) -> list[str]:
    seen = {label for runs in runs_by_task.values() for label in runs}
    return [m for m in MODE_ORDER if m in seen] + sorted(seen - set(MODE_ORDER))


def headline_tables(records: list[RunRecord]) -> list[Table]:
    """Quality per task and mode (95% CI), B1's paired differences, and prompt tokens and latency per mode."""
    tasks = _by_task(records)
    if not tasks:
        return []
    cols = _columns(tasks)
    quality: list[list[str]] = []
    diffs: list[list[str]] = []
    costs: list[list[str]] = []
    for task, runs in sorted(tasks.items()):
        metric = headline_metric(task)
        quality.append([task, metric, *[_cell(runs[c].metrics.get(metric)) if c in runs else "" for c in cols]])
        b1 = runs.get("B1")
        if b1 is not None:
            found = {c.baseline: c for c in b1.comparisons if c.metric == metric}
            for other in B1_AGAINST:
                if other in found:
                    comp = found[other]
                    diffs.append([task, metric, f"B1 − {other}", _cell(comp.diff), "yes" if comp.excludes_zero else "no"])
            if "locomo_f1_cat5" in b1.metrics:
                extra = [f"{c}: {_cell(runs[c].metrics.get('locomo_f1_cat5'))}" for c in cols
                         if c in runs and "locomo_f1_cat5" in runs[c].metrics]
                diffs.append([task, "category 5 abstained", "per mode", "; ".join(extra), ""])
        for c in cols:
            if c not in runs:
                continue
            m = runs[c].metrics
            costs.append([task, c, _cell(m.get("prompt_tokens"), 1), _cell(m.get("latency_p50"), 0),
                          _cell(m.get("latency_p95"), 0), _cell(m.get("new_tokens"), 1)])
    return [
        Table("Headline: quality per task and mode (95% bootstrap CI)", ["task", "metric", *cols], quality),
        Table("Headline: B1 (with the memory reader) minus each other mode, paired over the same questions",
              ["task", "metric", "difference", "value [95% CI]", "CI excludes 0"], diffs),
        Table("Headline: cost per answer", ["task", "mode", "prompt tokens", "latency p50 (ms)", "latency p95 (ms)",
                                            "new tokens"], costs),
    ]


def tables_markdown(tables: list[Table]) -> str:
    """The tables as Markdown, one section each."""
    lines: list[str] = []
    for t in tables:
        if not t.rows:
            continue
        lines += [f"**{t.title}**", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
        lines.append("")
    return "\n".join(lines)

"""Turn a folder of run records into a Markdown report and a self-contained HTML page.

Everything shown is read back from the JSON records (:mod:`hei_nw_eval.records`):
nothing is recomputed from raw predictions, so a report can be rebuilt on any
machine from the committed JSON. A folder holding several tasks opens with the
headline tables of :mod:`hei_nw_eval.headline` (one figure per task and mode, B1's
paired differences, prompt tokens and latency per mode). Per task there is a
metrics table (value and 95% CI), the paired comparisons between modes, any per-group breakdown, and one
plot per curve name with a line per (condition, mode). The HTML embeds its plots
as base64 PNG; the Markdown links the same PNGs, written to ``figures/``.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from hei_nw_eval.records import Curve, CurvePoint, MetricValue, RunRecord, load_records


@dataclass(frozen=True)
class ReportFiles:
    """Where :func:`build_report` wrote its output."""

    markdown: Path
    html: Path
    figures: list[Path]


@dataclass(frozen=True)
class _Figure:
    title: str
    slug: str
    png: bytes


def build_report(folder: str | Path, out_dir: str | Path | None = None, *, title: str = "HEI-NW evaluation") -> ReportFiles:
    """Read every run record in ``folder``; write ``report.md``, ``report.html`` and ``figures/*.png``.

    ``out_dir`` defaults to ``folder``. Raises ValueError when the folder holds no records.
    """
    records = load_records(folder)
    if not records:
        raise ValueError(f"no run records (*.json) in {folder}")
    out = Path(out_dir) if out_dir is not None else Path(folder)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)

    by_task: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        by_task[r.task].append(r)

    md: list[str] = [f"# {title}", "", _sources_md(records), ""]
    body: list[str] = [f"<h1>{html.escape(title)}</h1>", _sources_html(records)]
    if len(by_task) > 1:
        from hei_nw_eval.headline import headline_tables

        for table in headline_tables(records):
            if table.rows:
                md += [f"**{table.title}**", ""] + _md_table(table.header, table.rows) + [""]
                body.append(f"<h3>{html.escape(table.title)}</h3>" + _html_table(table.header, table.rows))
    written: list[Path] = []
    for task, runs in by_task.items():
        md += [f"## {task}", ""]
        body.append(f"<h2>{html.escape(task)}</h2>")
        for kind, (header, rows) in _metric_tables(runs).items():
            md += [f"**{kind}**", ""] + _md_table(header, rows) + [""]
            body.append(f"<h3>{html.escape(kind)}</h3>" + _html_table(header, rows))
        comp_header, comp_rows = _comparison_table(runs)
        if comp_rows:
            md += ["**Paired differences (95% bootstrap CI)**", ""] + _md_table(comp_header, comp_rows) + [""]
            body.append("<h3>Paired differences (95% bootstrap CI)</h3>" + _html_table(comp_header, comp_rows))
        for group_title, (bh, brows) in _breakdown_tables(runs).items():
            md += [f"**{group_title}**", ""] + _md_table(bh, brows) + [""]
            body.append(f"<h3>{html.escape(group_title)}</h3>" + _html_table(bh, brows))
        for fig in [*_curve_figures(task, runs), *_store_size_figures(task, runs)]:
            path = fig_dir / f"{fig.slug}.png"
            path.write_bytes(fig.png)
            written.append(path)
            md += [f"![{fig.title}](figures/{path.name})", ""]
            b64 = base64.b64encode(fig.png).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(fig.title)}" src="data:image/png;base64,{b64}">'
                        f"<figcaption>{html.escape(fig.title)}</figcaption></figure>")
        notes = [(r, r.notes) for r in runs if r.notes.strip()]
        if notes:
            md += ["**Notes**", ""] + [f"- {_label(r)}: {n.strip()}" for r, n in notes] + [""]
            body.append("<h3>Notes</h3><ul>" + "".join(
                f"<li><b>{html.escape(_label(r))}</b>: {html.escape(n.strip())}</li>" for r, n in notes) + "</ul>")

    for fig, (header, rows), cap in _consolidation_curves(Path(folder)):
        path = fig_dir / f"{fig.slug}.png"
        path.write_bytes(fig.png)
        written.append(path)
        md += [f"## {fig.title}", "", cap, ""] + _md_table(header, rows) + ["", f"![{fig.title}](figures/{path.name})", ""]
        b64 = base64.b64encode(fig.png).decode("ascii")
        body.append(f"<h2>{html.escape(fig.title)}</h2><p>{html.escape(cap)}</p>" + _html_table(header, rows)
                    + f'<figure><img alt="{html.escape(fig.title)}" src="data:image/png;base64,{b64}"></figure>')

    md_path = out / "report.md"
    md_path.write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(_page(title, "\n".join(body)), encoding="utf-8")
    return ReportFiles(markdown=md_path, html=html_path, figures=written)


# ---------------------------------------------------------------------------
# Consolidation curves (curves/consolidation-*.json of hei_nw_eval.consolidation)
# ---------------------------------------------------------------------------


def _ci(e: dict | None) -> str:  # type: ignore[type-arg]
    if not e:
        return "-"
    if e.get("low") is None:
        return f"{e['value']:.3f}"
    return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def _consolidation_curves(folder: Path) -> list[tuple[_Figure, tuple[list[str], list[list[str]]], str]]:
    """Per curve JSON: its B3-per-cycle plot, a table of every cycle (status, drift, cost) and a caption."""
    import json
    import tempfile

    from hei_nw_eval.consolidation import plot_curve

    out = []
    for path in sorted((folder / "curves").glob("consolidation-*.json")):
        data = json.loads(path.read_text())
        header = ["order", "cycle", "version", "status", "B3 EM (95% CI)", "B3 - B0", "B3 / B1", "targets trained",
                  "base tasks (points)", "held ppl", "train EM", "steps", "train s", "peak RSS MB"]
        rows = []
        for order, points in data["orders"].items():
            for p in points:
                c = p["consolidation"]
                d = c.get("drift") or {}
                rows.append([order, str(p["cycle"]), c.get("version") or "-", c["status"], _ci(p["b3_em"]),
                             _ci(p["b3_minus_b0"]), "-" if p["retention_vs_b1"] is None else f"{p['retention_vs_b1']:.2f}",
                             f"{p['targets_consolidated']:.2f}",
                             "-" if "change_points" not in d else f"{d['change_points']:+.2f}",
                             "-" if "ppl_change" not in d else f"{100 * d['ppl_change']:+.2f}%",
                             "-" if c.get("train_em") is None else f"{c['train_em']:.2f}", str(c.get("steps", "-")),
                             f"{c.get('train_seconds', 0):.0f}", str(c.get("peak_rss_mb", "-"))])
        diffs = "; ".join(f"cycle {i + 1}: {_ci(d)}" for i, d in enumerate(data.get("scheduled_minus_shuffled") or []))
        cap = (f"{data['task']} {data.get('condition') or ''}, n={data['n']}, seed {data['seed']}: B0 {_ci(data['b0_em'])}, "
               f"B1 {_ci(data['b1_em'])}; {data['config'].get('queued_traces', '?')} traces queued. "
               + (f"Scheduled - shuffled B3 EM (paired): {diffs}." if diffs else ""))
        with tempfile.TemporaryDirectory() as td:
            png = plot_curve(path, Path(td) / "curve.png").read_bytes()
        out.append((_Figure(f"Consolidation: {data['task']} {data.get('condition') or ''}".strip(),
                            _slug(f"consolidation-{path.stem}"), png), (header, rows), cap))
    return out


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def mode_label(r: RunRecord) -> str:
    """The mode plus what distinguishes runs of one mode: route, no reader, no Hopfield ('B1 (noreader)')."""
    cfg = r.config or {}
    parts = []
    route = (cfg.get("options") or {}).get("route")
    if r.mode in ("B1", "B2", "oracle") and route and route != "prefix":
        parts.append(route)
    if r.mode in ("B1", "B2", "retrieval-only") and (cfg.get("engine") or {}).get("hopfield") is False:
        parts.append("nohopfield")
    if r.mode in ("B1", "B2", "oracle") and cfg.get("memory_reader") is False:
        parts.append("noreader")
    return f"{r.mode} ({', '.join(parts)})" if parts else r.mode


def _label(r: RunRecord) -> str:
    return f"{r.condition} / {mode_label(r)}" if r.condition else mode_label(r)


def _fmt(v: float | None, unit: str | None = None) -> str:
    if v is None:
        return "–"
    if unit in ("ms", "MB", "tokens", "per 1k tokens", "GFLOPs"):
        return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
    return f"{v:.3f}"


def format_metric(m: MetricValue) -> str:
    """'0.812 [0.780, 0.843] n=500' style cell text (units after the value)."""
    text = _fmt(m.value, m.unit)
    if m.unit and m.value is not None:
        text += f" {m.unit}"
    if m.low is not None and m.high is not None:
        text += f" [{_fmt(m.low, m.unit)}, {_fmt(m.high, m.unit)}]"
    if m.n is not None:
        text += f" n={m.n}"
    return text


def _metric_tables(runs: list[RunRecord]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Quality metrics (rates, no unit) and cost metrics (with a unit) as two tables."""
    quality: list[str] = []
    cost: list[str] = []
    for r in runs:
        for name, m in r.metrics.items():
            target = cost if m.unit else quality
            if name not in quality and name not in cost:
                target.append(name)
    tables = {}
    for kind, names in (("Quality", quality), ("Cost", cost)):
        if not names:
            continue
        rows = []
        for r in runs:
            cells = [r.condition or "", mode_label(r), r.model_id or "", str(r.n_items)]
            cells += [format_metric(r.metrics[n]) if n in r.metrics else "" for n in names]
            rows.append(cells)
        tables[kind] = (["condition", "mode", "model", "items", *names], rows)
    return tables


def _comparison_table(runs: list[RunRecord]) -> tuple[list[str], list[list[str]]]:
    header = ["condition", "metric", "mode − baseline", "difference", "CI excludes 0"]
    rows = []
    for r in runs:
        for c in r.comparisons:
            rows.append([r.condition or "", c.metric, f"{mode_label(r) if c.mode == r.mode else c.mode} − {c.baseline}",
                         format_metric(c.diff), "yes" if c.excludes_zero else "no"])
    return header, rows


def _breakdown_tables(runs: list[RunRecord]) -> dict[str, tuple[list[str], list[list[str]]]]:
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    for r in runs:
        if not r.breakdown:
            continue
        names: list[str] = []
        for group in r.breakdown.values():
            names += [k for k in group if k not in names]
        rows = [[g, *[format_metric(vals[n]) if n in vals else "" for n in names]] for g, vals in r.breakdown.items()]
        tables[f"Breakdown: {_label(r)}"] = (["group", *names], rows)
    return tables


def _md_escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _sources_md(records: list[RunRecord]) -> str:
    commits = sorted({r.git_commit or "unknown" for r in records})
    models = sorted({r.model_id for r in records if r.model_id})
    text = f"{len(records)} run records; git commit(s): {', '.join(f'`{c}`' for c in commits)}"
    if models:
        text += f"; model(s): {', '.join(f'`{m}`' for m in models)}"
    return text + "."


def _sources_html(records: list[RunRecord]) -> str:
    return "<p>" + html.escape(_sources_md(records).replace("`", "")) + "</p>"


def _page(title: str, body: str) -> str:
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
        "th{background:#f3f3f3}figure{margin:1em 0}img{max-width:100%}"
        "figcaption{font-size:0.85em;color:#555}"
    )
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "figure"


def _curve_figures(task: str, runs: list[RunRecord]) -> list[_Figure]:
    """One figure per (condition, curve name), one line per mode."""
    groups: dict[tuple[str, str], list[tuple[str, Curve]]] = defaultdict(list)
    for r in runs:
        for name, curve in r.curves.items():
            groups[(r.condition or "", name)].append((r.mode, curve))
    figures = []
    for (condition, name), series in groups.items():
        title = " · ".join(x for x in (task, condition, name) if x)
        figures.append(_Figure(title=title, slug=_slug(title), png=_plot(title, series)))
    return figures


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kKmM]?)$")


def store_size(condition: str | None) -> float | None:
    """Store size encoded as a condition's first part ('100k/text-only/…' -> 100000), else None."""
    m = _SIZE.match((condition or "").split("/", 1)[0])
    if m is None:
        return None
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]


def _store_size_figures(task: str, runs: list[RunRecord]) -> list[_Figure]:
    """Interference curves: P@1 (95% CI) vs store size, one line per mode, for runs whose condition names a size.

    Built across records (one record per size and mode), so it needs at least two sizes.
    """
    groups: dict[str, dict[str, list[CurvePoint]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        size = store_size(r.condition)
        m = r.metrics.get("p@1")
        if size is None or m is None or m.value is None:
            continue
        rest = (r.condition or "").split("/", 1)[1] if "/" in (r.condition or "") else ""
        groups[rest][r.mode].append(CurvePoint(x=size, y=m.value, low=m.low, high=m.high, n=m.n))
    figures = []
    for rest, by_mode in groups.items():
        if len({p.x for pts in by_mode.values() for p in pts}) < 2:
            continue
        series = [(mode, Curve(x_label="stories in the store", y_label="P@1", log_x=True,
                               points=sorted(pts, key=lambda p: p.x))) for mode, pts in by_mode.items()]
        title = " · ".join(x for x in (task, rest, "P@1 vs store size") if x)
        figures.append(_Figure(title=title, slug=_slug(title), png=_plot(title, series)))
    return figures


def _plot(title: str, series: list[tuple[str, Curve]]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    first = series[0][1]
    categorical = any(p.label for _, c in series for p in c.points)
    tick_labels: dict[float, str] = {}
    for label, curve in series:
        pts = [p for p in curve.points if p.y is not None]
        if not pts:
            continue
        if categorical:
            xs = [float(i) for i, p in enumerate(curve.points) if p.y is not None]
            for i, p in enumerate(curve.points):
                tick_labels.setdefault(float(i), p.label or f"{p.x:g}")
        else:
            xs = [p.x for p in pts]
        ys = [float(p.y) for p in pts if p.y is not None]
        line = ax.plot(xs, ys, marker="o", label=label)[0]
        if any(p.low is not None and p.high is not None for p in pts):
            lows = [p.low if p.low is not None else y for p, y in zip(pts, ys, strict=True)]
            highs = [p.high if p.high is not None else y for p, y in zip(pts, ys, strict=True)]
            ax.fill_between(xs, lows, highs, alpha=0.15, color=line.get_color())
    if categorical:
        ax.set_xticks(sorted(tick_labels), [tick_labels[k] for k in sorted(tick_labels)])
    elif first.log_x and all(p.x > 0 for _, c in series for p in c.points):
        ax.set_xscale("log")
    ax.set_xlabel(first.x_label)
    ax.set_ylabel(first.y_label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(series) > 4:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    elif len(series) > 1 or series[0][0]:
        ax.legend(fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()

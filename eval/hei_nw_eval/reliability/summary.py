"""The reliability and scale report: one page over the JSON that the checks and benchmarks wrote.

``hei-nw reliability report --dir reports/reliability``

Reads whichever of ``crash``, ``tamper``, ``deletion``, ``fuzz`` and ``soak``
(``hei-nw reliability <check>``), ``scale`` (``hei-nw bench recall --grow``) and
``shards`` (``hei-nw bench shards``) ``.json`` are in the folder. Every figure is
read from those files: a missing file is listed as not run, never filled in, and
the report can be rebuilt from the committed JSON alone. The cost curve (recall
latency, RSS and disk against store size) is drawn here from ``scale.json``;
``soak.png`` is the soak's own plot, embedded as it is. Tables and the page
come from :mod:`hei_nw_eval.report`.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hei_nw_eval.report import ReportFiles, _html_table, _md_table, _page

DEFAULT_DIR = Path("reports/reliability")
TITLE = "HEI-NW reliability and scale"
P95_TARGET_MS = 20.0
"""Target for the recall p95 at the largest store size (ms)."""
STAGES = ("embed", "ann", "fetch", "hopfield", "pack")


@dataclass(frozen=True)
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    """A PNG shown in the report: drawn here (written to ``figures/<slug>.png``) or an existing file."""

    title: str
    slug: str
    png: bytes
    existing: Path | None = None


@dataclass(frozen=True)
class Findings:
    """What one check's JSON says.

    ``status`` is what the summary table shows: 'passed', 'FAILED', 'target met',
    'target missed', 'measured', 'not run' or 'unreadable'.
    """

    status: str
    headline: str
    tables: list[Table] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    """One check's part of the report: its findings, the file they came from and the command that writes it."""

    check: str
    title: str
    source: str
    command: str
    findings: Findings


# ---------------------------------------------------------------------------
# Building and writing
# ---------------------------------------------------------------------------


def build_reliability_report(folder: str | Path = DEFAULT_DIR, out_dir: str | Path | None = None) -> ReportFiles:
    """Read the check and benchmark JSON in ``folder``; write ``report.md``, ``report.html`` and ``figures/*.png``.

    ``out_dir`` defaults to ``folder``. The HTML embeds its images (base64 PNG); the
    Markdown links them.
    """
    return _write(read_sections(folder), Path(folder), Path(out_dir) if out_dir is not None else Path(folder))


def read_sections(folder: str | Path) -> list[Section]:
    """One section per known check, in report order; a missing file gives a 'not run' section."""
    folder = Path(folder)
    sections = []
    for check in _CHECKS:
        path = folder / f"{check.name}.json"
        data: dict[str, Any] | None = None
        if not path.exists():
            findings = Findings("not run", f"not run (no {path.name})")
        else:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                findings = check.build(data, folder)
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                data = None
                findings = Findings("unreadable", f"{path.name} could not be read: {type(err).__name__}: {err}")
        sections.append(Section(check.name, check.title, path.name, check.command(data), findings))
    return sections


def add_to_report(report: ReportFiles, folder: str | Path = DEFAULT_DIR) -> ReportFiles:
    """Rebuild the reliability report in ``folder`` and append a 'Reliability and scale' section to ``report``.

    The section is one line per check (its status and headline figures) and a link to
    the reliability report. Returns where the reliability report was written.
    """
    folder = Path(folder)
    sections = read_sections(folder)
    rel = _write(sections, folder, folder)
    md_link = Path(os.path.relpath(rel.markdown, report.markdown.parent)).as_posix()
    html_link = Path(os.path.relpath(rel.html, report.html.parent)).as_posix()
    md = ["", "## Reliability and scale", "",
          (f"Headline figures from the JSON in `{folder.as_posix()}`; the tables and figures are in "
          f"[the reliability and scale report]({md_link})."), ""]
    md += [f"- **{s.check}** ({s.findings.status}): {s.findings.headline}" for s in sections]
    text = report.markdown.read_text(encoding="utf-8").rstrip("\n") + "\n" + "\n".join(md) + "\n"
    report.markdown.write_text(text, encoding="utf-8")
    block = ("<h2>Reliability and scale</h2>"
             f"<p>Headline figures from the JSON in <code>{html.escape(folder.as_posix())}</code>; the tables and "
             f'figures are in <a href="{html.escape(html_link)}">the reliability and scale report</a>.</p><ul>'
             + "".join(f"<li><b>{html.escape(s.check)}</b> ({html.escape(s.findings.status)}): "
                       f"{html.escape(s.findings.headline)}</li>" for s in sections) + "</ul>\n")
    page = report.html.read_text(encoding="utf-8")
    head, marker, tail = page.rpartition("</body>")
    report.html.write_text(head + block + marker + tail if marker else page + block, encoding="utf-8")
    return rel


def _write(sections: list[Section], folder: Path, out: Path) -> ReportFiles:
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    source = folder.as_posix()
    md = [f"# {TITLE}", "",
          (f"Built from the JSON in `{source}`: every figure below is read from those files, and a check "
          "whose file is missing is listed as not run."), ""]
    body = [f"<h1>{html.escape(TITLE)}</h1>",
            (f"<p>Built from the JSON in <code>{html.escape(source)}</code>: every figure below is read from those "
            "files, and a check whose file is missing is listed as not run.</p>")]
    summary = Table("Summary", ["check", "status", "headline", "source"],
                    [[s.check, s.findings.status, s.findings.headline, s.source] for s in sections])
    md += ["## Summary", ""] + _md_table(summary.header, summary.rows) + [""]
    body.append("<h2>Summary</h2>" + _html_table(summary.header, summary.rows))

    written: list[Path] = []
    for s in sections:
        f = s.findings
        md += [f"## {s.title}", "", f"Status: **{f.status}**. {f.headline}", "", f"Command: `{s.command}`", ""]
        body.append(f"<h2>{html.escape(s.title)}</h2><p>Status: <b>{html.escape(f.status)}</b>. "
                    f"{html.escape(f.headline)}</p><p>Command: <code>{html.escape(s.command)}</code></p>")
        for t in f.tables:
            md += [f"**{t.caption}**", ""] + _md_table(t.header, t.rows) + [""]
            body.append(f"<h3>{html.escape(t.caption)}</h3>" + _html_table(t.header, t.rows))
        for img in f.images:
            if img.existing is not None:
                link = Path(os.path.relpath(img.existing, out)).as_posix()
            else:
                fig_dir.mkdir(exist_ok=True)
                path = fig_dir / f"{img.slug}.png"
                path.write_bytes(img.png)
                written.append(path)
                link = f"figures/{path.name}"
            md += [f"![{img.title}]({link})", ""]
            b64 = base64.b64encode(img.png).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(img.title)}" src="data:image/png;base64,{b64}">'
                        f"<figcaption>{html.escape(img.title)}</figcaption></figure>")
        if f.notes:
            md += ["**Notes**", ""] + [f"- {n}" for n in f.notes] + [""]
            body.append("<h3>Notes</h3><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in f.notes) + "</ul>")

    md_path = out / "report.md"
    md_path.write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(_page(TITLE, "\n".join(body)), encoding="utf-8")
    return ReportFiles(markdown=md_path, html=html_path, figures=written)


# ---------------------------------------------------------------------------
# Cell formatting: '–' for a figure the JSON does not hold
# ---------------------------------------------------------------------------


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _int(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else "–"


def _num(v: Any, digits: int = 1) -> str:
    return f"{v:,.{digits}f}" if isinstance(v, int | float) and not isinstance(v, bool) else "–"


def _rate(v: Any) -> str:
    return _num(v, 3)


def _ints(d: dict[str, Any], *keys: str) -> str:
    return " / ".join(_int(d.get(k)) for k in keys)


def _yes(v: Any) -> str:
    return "–" if v is None else ("yes" if v else "no")


def _status(ok: bool) -> str:
    return "passed" if ok else "FAILED"


def _kv(caption: str, rows: list[tuple[str, str]]) -> Table:
    return Table(caption, ["figure", "value"], [[k, v] for k, v in rows])


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------


def _crash(d: dict[str, Any], folder: Path) -> Findings:
    w, ro, co = d.get("write") or {}, d.get("rotation") or {}, d.get("consolidation") or {}
    wt, rt, ct = w.get("totals") or {}, ro.get("totals") or {}, co.get("totals") or {}
    checked, missed = wt.get("recall_checked"), wt.get("recall_missed")
    found = checked - missed if isinstance(checked, int) and isinstance(missed, int) else None
    table = _kv("Process killed (SIGKILL) mid-operation, then reopened and checked", [
        ("write trials (killed mid-operation)", f"{_int(w.get('trials'))} ({_int(w.get('killed_mid_operation'))})"),
        ("acknowledged write operations", _int(wt.get("acked_ops"))),
        ("lost / resurrected / unexpected", _ints(wt, "lost", "resurrected", "unexpected")),
        ("wrong text / wrong pin", _ints(wt, "wrong_text", "wrong_pin")),
        ("verify() problems / integrity failures", _ints(wt, "verify_problems", "integrity_not_ok")),
        ("recalled after reopen", f"{_int(found)} of {_int(checked)}"),
        ("key rotation trials (killed mid-rotation)", f"{_int(ro.get('trials'))} ({_int(ro.get('killed_mid_operation'))})"),
        ("rotations acknowledged", _int(rt.get("rotations_acked"))),
        ("decrypt failures / missing keys", _ints(rt, "decrypt_failures", "missing_keks")),
        ("consolidation trials (killed mid-run)", f"{_int(co.get('trials'))} ({_int(co.get('killed_mid_operation'))})"),
        ("served an unfinished adapter / unloadable / hash mismatch",
         _ints(ct, "served_changed_to_unfinished", "unloadable", "hash_mismatch")),
        ("failed trials", _int(d.get("failures"))),
        ("seconds (writes + rotations + consolidations)",
         f"{_num(w.get('seconds'))} + {_num(ro.get('seconds'))} + {_num(co.get('seconds'))}"),
    ])
    ok = d.get("failures") == 0 and wt.get("lost") == 0
    headline = (f"{_int(w.get('trials'))} killed writers, {_int(wt.get('acked_ops'))} acknowledged writes, "
                f"{_int(wt.get('lost'))} lost; {_int(rt.get('rotations_acked'))} key rotations over "
                f"{_int(ro.get('trials'))} trials, {_int(rt.get('decrypt_failures'))} decrypt failures; "
                f"{_int(co.get('trials'))} consolidation trials, {_int(ct.get('served_changed_to_unfinished'))} "
                f"served unfinished; {_int(d.get('failures'))} failed trials")
    notes = [f"{part}: {n}" for part, sec in (("writes", w), ("rotation", ro), ("consolidation", co))
             for n in sec.get("notes") or []]
    return Findings(_status(ok), headline, [table], notes=notes)


def _tamper(d: dict[str, Any], folder: Path) -> Findings:
    kinds = d.get("kinds") or []
    table = _kv("Store edited behind the engine's back, one edit per instance", [
        ("store (live traces / provenance records)",
         f"{_int(_get(d, 'store', 'live_traces'))} / {_int(_get(d, 'store', 'provenance_records'))}"),
        ("edit kinds", _int(len(kinds))),
        ("instances", _int(d.get("instances"))),
        ("detected by verify()", _int(d.get("detected"))),
        ("detection rate", _rate(d.get("detection_rate"))),
        ("tampered traces returned by recall", _int(d.get("recall_returned_tampered"))),
        ("tampered traces returned by get", _int(d.get("get_returned_tampered"))),
        ("recall hit rate on the untouched store (control)", _rate(d.get("pristine_recall_hit_rate"))),
    ])
    per_kind = Table("Per edit kind", ["kind", "what", "instances", "detected", "rate", "recall / get returned it"],
                     [[str(k.get("kind", "")), str(k.get("what", "")), _int(k.get("instances")), _int(k.get("detected")),
                       _rate(k.get("detection_rate")),
                       f"{_int(k.get('recall_returned_tampered'))} / {_int(k.get('get_returned_tampered'))}"]
                      for k in kinds])
    ok = (d.get("instances") == d.get("detected") and d.get("recall_returned_tampered") == 0
          and d.get("get_returned_tampered") == 0)
    headline = (f"{_int(d.get('detected'))} of {_int(d.get('instances'))} edits over {len(kinds)} kinds detected "
                f"(rate {_rate(d.get('detection_rate'))}); recall returned a tampered trace "
                f"{_int(d.get('recall_returned_tampered'))} times, get {_int(d.get('get_returned_tampered'))}")
    notes = [f"not covered: {n}" for n in d.get("not_covered") or []]
    return Findings(_status(ok), headline, [table, per_kind], notes=notes)


def _deletion(d: dict[str, Any], folder: Path) -> Findings:
    deleted = d.get("deleted")
    after = d.get("after") or {}
    held = sum(1 for v in after.values() if v == deleted)
    table = _kv("Traces deleted, then searched for everywhere", [
        ("traces written / deleted", f"{_int(d.get('traces_written'))} / {_int(deleted)}"),
        ("checks after deletion holding for every deleted trace", f"{held} of {len(after)}"),
        ("key unwrap attempts after deletion (raw database, index and backup bytes)", _int(d.get("unwrap_attempts"))),
        ("unwrap successes after deletion", _int(d.get("unwrap_successes_after"))),
        ("unwrap successes before deletion (control)", _int(d.get("unwrap_successes_before_control"))),
        ("verify() ok after / backup taken after verifies",
         f"{_yes(d.get('verify_ok_after'))} / {_yes(d.get('backup_after_verify_ok'))}"),
        ("failures", _int(len(d.get("failures") or []))),
    ])
    failed = [k for k, v in after.items() if v != deleted]
    ok = not d.get("failures") and d.get("unwrap_successes_after") == 0 and not failed
    headline = (f"{_int(deleted)} of {_int(d.get('traces_written'))} traces deleted; {held} of {len(after)} checks hold; "
                f"{_int(d.get('unwrap_successes_after'))} of {_int(d.get('unwrap_attempts'))} key unwrap attempts "
                f"succeeded after deletion ({_int(d.get('unwrap_successes_before_control'))} before, control)")
    notes = [f"check not holding for every deleted trace: {k}" for k in failed]
    notes += ([f"provenance kept: {d['provenance_keeps']}"] if d.get("provenance_keeps") else []) + list(d.get("notes") or [])
    return Findings(_status(ok), headline, [table], notes=notes)


def _fuzz(d: dict[str, Any], folder: Path) -> Findings:
    suites = d.get("suites") or []
    rows = [[str(s.get("suite", "")), _int(s.get("cases")), _int(s.get("accepted")), _int(s.get("rejected")),
             _int(s.get("failures")), _num(s.get("seconds"))] for s in suites]
    rows.append(["all", _int(d.get("cases_total")), _int(sum(s.get("accepted", 0) for s in suites)),
                 _int(sum(s.get("rejected", 0) for s in suites)), _int(d.get("failures_total")), _num(d.get("seconds"))])
    table = Table("Generated bad input per door", ["suite", "cases", "accepted", "rejected", "failures", "seconds"], rows)
    ok = bool(d.get("ok")) and d.get("failures_total") == 0
    headline = (f"{_int(d.get('cases_total'))} cases over {len(suites)} suites "
                f"({', '.join(str(s.get('suite')) + ' ' + _int(s.get('cases')) for s in suites)}), "
                f"{_int(d.get('failures_total'))} failures")
    notes = [f"{s.get('suite')}: first failure of each kind: {f}" for s in suites for f in s.get("distinct_failures") or []]
    if d.get("versions"):
        notes.append("versions: " + ", ".join(f"{k} {v}" for k, v in d["versions"].items()))
    return Findings(_status(ok), headline, [table], notes=notes)


def _soak(d: dict[str, Any], folder: Path) -> Findings:
    checks, fig, ops = d.get("checks") or {}, d.get("figures") or {}, d.get("ops") or {}
    loss, spikes = checks.get("zero_data_loss") or {}, checks.get("one_alert_per_spike") or {}
    mem = checks.get("memory_bounded") or {}
    cons = d.get("consolidations") or []
    table = _kv("Mixed workload with its invariants checked as it ran", [
        ("duration (min)", _num(fig.get("duration_min"))),
        ("events offered / writes stored", f"{_int(fig.get('events_offered'))} / {_int(fig.get('writes_stored'))}"),
        ("recalls / deletes / pins / evict calls", (f"{_int(ops.get('recalls'))} / {_int(ops.get('deletes'))} / "
                                                   f"{_int(ops.get('pins'))} / {_int(ops.get('evict_calls'))}")),
        ("acknowledged writes lost or corrupt",
         f"{_int(loss.get('lost_or_corrupt'))} of {_int(loss.get('acknowledged_writes'))}"),
        ("clutter spikes / alerts (outside spikes)",
         f"{_int(spikes.get('spikes'))} / {_int(spikes.get('alerts_total'))} ({_int(spikes.get('alerts_outside_spikes'))})"),
        ("RSS first / last / max (MB)", " / ".join(_num(fig.get(k)) for k in ("rss_mb_first", "rss_mb_last", "rss_mb_max"))),
        ("RSS growth after the baseline (MB, bound)", f"{_num(mem.get('growth_mb'))} (≤ {_num(mem.get('bound_mb'))})"),
        ("recall p50 / p95 (ms)", f"{_num(fig.get('recall_p50_ms'))} / {_num(fig.get('recall_p95_ms'))}"),
        ("recall hit@5 / after restart", (f"{_rate(fig.get('recall_hit_at_5'))} / "
                                          f"{_rate(_get(checks, 'restart_keeps_everything', 'recall_hit_at_5_after_restart'))}")),
        ("consolidations (outcome)", f"{_int(len(cons))} ({', '.join(str(c.get('status')) for c in cons) or 'none'})"),
    ])
    check_table = Table("Checks", ["check", "passed"], [[name, _yes(c.get("ok"))] for name, c in checks.items()])
    images = []
    png = folder / "soak.png"
    if png.exists():
        images.append(Image("Soak time series (soak.png)", "soak", png.read_bytes(), existing=png))
    headline = (f"{_num(fig.get('duration_min'))} min, {_int(fig.get('events_offered'))} events, "
                f"{_int(fig.get('writes_stored'))} writes stored, {_int(loss.get('lost_or_corrupt'))} lost; "
                f"{_int(spikes.get('spikes'))} spikes, {_int(spikes.get('alerts_total'))} alerts; "
                f"RSS {_num(fig.get('rss_mb_first'))} → {_num(fig.get('rss_mb_last'))} MB; "
                f"recall p50 {_num(fig.get('recall_p50_ms'))} ms, p95 {_num(fig.get('recall_p95_ms'))} ms")
    notes = [f"failed check: {name}" for name, c in checks.items() if not c.get("ok")]
    base_t = mem.get("baseline_t_s")
    if isinstance(base_t, int | float):
        notes.append(f"RSS growth is measured from the baseline at {_num(base_t / 60)} min ({_num(mem.get('baseline_mb'))} "
                     "MB; the first sample after 10% of the run or after the last consolidation ended, whichever is "
                     f"later) to the end at {_num(fig.get('duration_min'))} min")
    return Findings(_status(bool(d.get("ok"))), headline, [table, check_table],
                   images, notes)


def _scale(d: dict[str, Any], folder: Path) -> Findings:
    rows = sorted(d.get("results") or [], key=lambda r: r["n"])
    if not rows:
        raise ValueError("no results")
    header = ["n", "recall p50 (ms)", "recall p95 (ms)", *[f"{s} p95 (ms)" for s in STAGES], "dominant stage",
              "hit@1", "writes/s", "RSS (MB)", "disk (MB)", "cache hit rate"]
    cells = [[_int(r.get("n")), _num(_get(r, "latency_ms", "total", "p50"), 2), _num(_get(r, "latency_ms", "total", "p95"), 2),
              *[_num(_get(r, "latency_ms", s, "p95"), 2) for s in STAGES], str(r.get("dominant_stage") or "–"),
              _rate(r.get("hit_at_1")), _num(r.get("writes_per_s"), 0), _num(r.get("rss_mb"), 0), _num(r.get("disk_mb"), 1),
              _rate(_get(r, "feature_cache", "hit_rate"))] for r in rows]
    last = rows[-1]
    p95 = _get(last, "latency_ms", "total", "p95")
    met = isinstance(p95, int | float) and p95 <= P95_TARGET_MS
    flag = (f"recall p95 at n = {_int(last.get('n'))}: {_num(p95, 2)} ms, "
            f"{'within' if met else 'over'} the {P95_TARGET_MS:g} ms target")
    machine = d.get("machine") or {}
    notes = [(f"machine: {machine.get('cpus', '–')} CPUs, Python {machine.get('python', '–')}, {machine.get('platform', '–')}; "
             f"embedder {d.get('embedder', '–')}; sizes {'grown in one store' if last.get('grow') else 'filled separately'}; "
             f"{_int(last.get('queries'))} queries per size, k = {_int(last.get('k'))}")]
    image = Image("Recall cost vs store size", "scale-cost-curve", _cost_curve(rows))
    sizes = _int(last.get("n")) if len(rows) == 1 else f"{_int(rows[0].get('n'))} … {_int(last.get('n'))}"
    headline = (f"n = {sizes}; {flag}; at the largest n RSS "
                f"{_num(last.get('rss_mb'), 0)} MB, disk {_num(last.get('disk_mb'), 0)} MB")
    return Findings("target met" if met else "target missed",
                   headline, [Table("Per store size", header, cells)], [image], notes)


def _shards(d: dict[str, Any], folder: Path) -> Findings:
    variants, cache = d.get("shards") or [], d.get("cache") or []

    def sizes(v: list[int]) -> str:
        return ", ".join(_int(x) for x in v) if len(v) <= 5 else f"{_int(min(v))}–{_int(max(v))}"

    shard_table = Table(f"Shard layouts on one store of {_int(d.get('n'))} traces",
                        ["variant", "shards", "shard sizes", "open + build (s)", "hit@1", "routed share",
                         "recall p50 (ms)", "recall p95 (ms)"],
                        [[str(v.get("variant", "")), _int(v.get("shards")), sizes(v.get("shard_sizes") or []),
                          _num(v.get("open_and_build_s"), 2), _rate(v.get("hit_at_1")), _rate(v.get("routed_share")),
                          _num(_get(v, "latency_ms", "total", "p50"), 2), _num(_get(v, "latency_ms", "total", "p95"), 2)]
                         for v in variants])
    cache_table = Table("Warm-key cache and prefetch (conversations: a partial cue, then a follow-up)",
                        ["prefetch", "cache entries", "hit rate (all)", "hit rate (follow-ups)", "prefetched",
                         "prefetch use rate", "first p50 / p95 (ms)", "follow-up p50 / p95 (ms)"],
                        [[_yes(c.get("prefetch")), _int(c.get("feature_cache")), _rate(c.get("hit_rate_all")),
                          _rate(c.get("hit_rate_follow_up")), _int(c.get("prefetched")), _rate(c.get("prefetch_use_rate")),
                          f"{_num(_get(c, 'first_ms', 'p50'))} / {_num(_get(c, 'first_ms', 'p95'))}",
                          f"{_num(_get(c, 'follow_up_ms', 'p50'))} / {_num(_get(c, 'follow_up_ms', 'p95'))}"]
                         for c in cache])
    parts = [f"{v.get('variant')} p95 {_num(_get(v, 'latency_ms', 'total', 'p95'))} ms" for v in variants]
    if cache:
        parts.append("follow-up cache hit rate " + ", ".join(
            f"{_rate(c.get('hit_rate_follow_up'))} {'with' if c.get('prefetch') else 'without'} prefetch" for c in cache))
    headline = f"n = {_int(d.get('n'))}: " + "; ".join(parts)
    return Findings("measured", headline, [shard_table, cache_table])


def _cost_curve(rows: list[dict[str, Any]]) -> bytes:
    """Left: recall p50/p95 (ms) with the target; right: RSS and disk (MB); x: store size, log scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), dpi=100)
    FigureCanvasAgg(fig)
    lat, mem = fig.subplots(1, 2)

    def series(ax: Any, label: str, value: Callable[[dict[str, Any]], Any]) -> None:
        pts = [(r["n"], value(r)) for r in rows if isinstance(value(r), int | float)]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)

    series(lat, "p50", lambda r: _get(r, "latency_ms", "total", "p50"))
    series(lat, "p95", lambda r: _get(r, "latency_ms", "total", "p95"))
    lat.axhline(P95_TARGET_MS, color="red", linestyle="--", label=f"{P95_TARGET_MS:g} ms target")
    lat.set_ylabel("recall latency (ms)")
    lat.set_title("Recall latency")
    series(mem, "RSS", lambda r: r.get("rss_mb"))
    series(mem, "disk", lambda r: r.get("disk_mb"))
    mem.set_ylabel("MB")
    mem.set_title("Memory and disk")
    for ax in (lat, mem):
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("traces in the store")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Recall cost vs store size")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Which checks, and the commands that write their JSON
# ---------------------------------------------------------------------------


def _crash_cmd(d: dict[str, Any] | None) -> str:
    t = [_get(d, part, "trials") for part in ("write", "rotation", "consolidation")] if d else [200, 20, 3]
    return (f"hei-nw reliability crash --trials {t[0]} --rotation-trials {t[1]} --consolidation-trials {t[2]} "
            "--out reports/reliability/crash.json")


def _tamper_cmd(d: dict[str, Any] | None) -> str:
    kinds = (d or {}).get("kinds") or [{"instances": 20}]
    return f"hei-nw reliability tamper --per-kind {kinds[0].get('instances')} --out reports/reliability/tamper.json"


def _deletion_cmd(d: dict[str, Any] | None) -> str:
    d = d or {"traces_written": 40, "deleted": 5}
    return (f"hei-nw reliability deletion --traces {d.get('traces_written')} --delete {d.get('deleted')} "
            "--out reports/reliability/deletion.json")


def _fuzz_cmd(d: dict[str, Any] | None) -> str:
    d = d or {"cases_requested": 10_000, "seed": 0}
    return (f"hei-nw reliability fuzz --cases {d.get('cases_requested')} --seed {d.get('seed')} "
            "--out reports/reliability/fuzz.json")


def _soak_cmd(d: dict[str, Any] | None) -> str:
    cfg = (d or {}).get("config") or {"minutes": 60, "consolidations": 1}
    return (f"hei-nw reliability soak --minutes {cfg.get('minutes'):g} --consolidations {cfg.get('consolidations')} "
            "--out reports/reliability/soak.json")


def _scale_cmd(d: dict[str, Any] | None) -> str:
    rows = sorted((d or {}).get("results") or [], key=lambda r: r["n"])
    ns = " ".join(str(r["n"]) for r in rows) or "1000 10000 100000 1000000"
    return f"hei-nw reliability scale --n {ns} --shards-n 0   (writes scale.json; stores kept in ~/.cache/hei-nw/bench)"


def _shards_cmd(d: dict[str, Any] | None) -> str:
    d = d or {"n": 100_000}
    return f"hei-nw bench shards --n {d.get('n')} --keep ~/.cache/hei-nw/bench --out reports/reliability/shards.json"


@dataclass(frozen=True)
class _Check:
    name: str
    title: str
    build: Callable[[dict[str, Any], Path], Findings]
    command: Callable[[dict[str, Any] | None], str]


_CHECKS = (
    _Check("crash", "Crash recovery", _crash, _crash_cmd),
    _Check("tamper", "Tamper evidence", _tamper, _tamper_cmd),
    _Check("deletion", "Deletion", _deletion, _deletion_cmd),
    _Check("fuzz", "Fuzzing", _fuzz, _fuzz_cmd),
    _Check("soak", "Soak", _soak, _soak_cmd),
    _Check("scale", "Scale: recall cost vs store size", _scale, _scale_cmd),
    _Check("shards", "Shards and warm-key cache", _shards, _shards_cmd),
)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``report`` under ``hei-nw reliability``."""
    p = subparsers.add_parser("report", help="build report.md / report.html from the reliability and scale JSON")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="folder of crash/tamper/deletion/fuzz/soak/scale/shards .json")
    p.add_argument("--out", type=Path, default=None, help="folder for the report (default: --dir)")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> None:
    sections = read_sections(args.dir)
    files = _write(sections, args.dir, args.out if args.out is not None else args.dir)
    for s in sections:
        print(f"{s.check:<9} {s.findings.status:<13} {s.findings.headline}")
    print(f"wrote {files.markdown}, {files.html} and {len(files.figures)} figures")

"""The reliability and scale report: one page over the JSON that the checks and benchmarks wrote.

``hei-nw reliability report --dir reports/reliability``

Reads whichever of ``crash``, ``tamper``, ``deletion``, ``fuzz``, ``soak``, ``pgfaults``,
``diskfull``, ``concurrency`` and ``tenants`` (``hei-nw reliability <check>``), ``scale`` (``hei-nw bench recall --grow``) and
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hei_nw_eval.reliability import summary_faults
from hei_nw_eval.reliability.findings import (
    Findings,
    Image,
    Section,
    Table,
    at,
    fmt_int,
    fmt_ints,
    fmt_num,
    fmt_rate,
    fmt_yes,
    kv_table,
    status_word,
)
from hei_nw_eval.report import ReportFiles, _html_table, _md_table, _page

DEFAULT_DIR = Path("reports/reliability")
TITLE = "HEI-NW reliability and scale"
P95_TARGET_MS = 20.0
"""Target for the recall p95 at the largest store size (ms)."""
STAGES = ("embed", "ann", "fetch", "hopfield", "pack")


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
# The checks
# ---------------------------------------------------------------------------


def _crash(d: dict[str, Any], folder: Path) -> Findings:
    w, ro, co = d.get("write") or {}, d.get("rotation") or {}, d.get("consolidation") or {}
    wt, rt, ct = w.get("totals") or {}, ro.get("totals") or {}, co.get("totals") or {}
    checked, missed = wt.get("recall_checked"), wt.get("recall_missed")
    found = checked - missed if isinstance(checked, int) and isinstance(missed, int) else None
    table = kv_table("Process killed (SIGKILL) mid-operation, then reopened and checked", [
        ("write trials (killed mid-operation)", f"{fmt_int(w.get('trials'))} ({fmt_int(w.get('killed_mid_operation'))})"),
        ("acknowledged write operations", fmt_int(wt.get("acked_ops"))),
        ("lost / resurrected / unexpected", fmt_ints(wt, "lost", "resurrected", "unexpected")),
        ("wrong text / wrong pin", fmt_ints(wt, "wrong_text", "wrong_pin")),
        ("verify() problems / integrity failures", fmt_ints(wt, "verify_problems", "integrity_not_ok")),
        ("recalled after reopen", f"{fmt_int(found)} of {fmt_int(checked)}"),
        ("key rotation trials (killed mid-rotation)", f"{fmt_int(ro.get('trials'))} ({fmt_int(ro.get('killed_mid_operation'))})"),
        ("rotations acknowledged", fmt_int(rt.get("rotations_acked"))),
        ("decrypt failures / missing keys", fmt_ints(rt, "decrypt_failures", "missing_keks")),
        ("consolidation trials (killed mid-run)", f"{fmt_int(co.get('trials'))} ({fmt_int(co.get('killed_mid_operation'))})"),
        ("served an unfinished adapter / unloadable / hash mismatch",
         fmt_ints(ct, "served_changed_to_unfinished", "unloadable", "hash_mismatch")),
        ("failed trials", fmt_int(d.get("failures"))),
        ("seconds (writes + rotations + consolidations)",
         f"{fmt_num(w.get('seconds'))} + {fmt_num(ro.get('seconds'))} + {fmt_num(co.get('seconds'))}"),
    ])
    ok = d.get("failures") == 0 and wt.get("lost") == 0
    headline = (f"{fmt_int(w.get('trials'))} killed writers, {fmt_int(wt.get('acked_ops'))} acknowledged writes, "
                f"{fmt_int(wt.get('lost'))} lost; {fmt_int(rt.get('rotations_acked'))} key rotations over "
                f"{fmt_int(ro.get('trials'))} trials, {fmt_int(rt.get('decrypt_failures'))} decrypt failures; "
                f"{fmt_int(co.get('trials'))} consolidation trials, {fmt_int(ct.get('served_changed_to_unfinished'))} "
                f"served unfinished; {fmt_int(d.get('failures'))} failed trials")
    notes = [f"{part}: {n}" for part, sec in (("writes", w), ("rotation", ro), ("consolidation", co))
             for n in sec.get("notes") or []]
    return Findings(status_word(ok), headline, [table], notes=notes)


def _tamper(d: dict[str, Any], folder: Path) -> Findings:
    kinds = d.get("kinds") or []
    table = kv_table("Store edited behind the engine's back, one edit per instance", [
        ("store (live traces / provenance records)",
         f"{fmt_int(at(d, 'store', 'live_traces'))} / {fmt_int(at(d, 'store', 'provenance_records'))}"),
        ("edit kinds", fmt_int(len(kinds))),
        ("instances", fmt_int(d.get("instances"))),
        ("detected by verify()", fmt_int(d.get("detected"))),
        ("detection rate", fmt_rate(d.get("detection_rate"))),
        ("tampered traces returned by recall", fmt_int(d.get("recall_returned_tampered"))),
        ("tampered traces returned by get", fmt_int(d.get("get_returned_tampered"))),
        ("recall hit rate on the untouched store (control)", fmt_rate(d.get("pristine_recall_hit_rate"))),
    ])
    per_kind = Table("Per edit kind", ["kind", "what", "instances", "detected", "rate", "recall / get returned it"],
                     [[str(k.get("kind", "")), str(k.get("what", "")), fmt_int(k.get("instances")), fmt_int(k.get("detected")),
                       fmt_rate(k.get("detection_rate")),
                       f"{fmt_int(k.get('recall_returned_tampered'))} / {fmt_int(k.get('get_returned_tampered'))}"]
                      for k in kinds])
    ok = (d.get("instances") == d.get("detected") and d.get("recall_returned_tampered") == 0
          and d.get("get_returned_tampered") == 0)
    headline = (f"{fmt_int(d.get('detected'))} of {fmt_int(d.get('instances'))} edits over {len(kinds)} kinds detected "
                f"(rate {fmt_rate(d.get('detection_rate'))}); recall returned a tampered trace "
                f"{fmt_int(d.get('recall_returned_tampered'))} times, get {fmt_int(d.get('get_returned_tampered'))}")
    notes = [f"not covered: {n}" for n in d.get("not_covered") or []]
    return Findings(status_word(ok), headline, [table, per_kind], notes=notes)


def _deletion(d: dict[str, Any], folder: Path) -> Findings:
    deleted = d.get("deleted")
    after = d.get("after") or {}
    held = sum(1 for v in after.values() if v == deleted)
    table = kv_table("Traces deleted, then searched for everywhere", [
        ("traces written / deleted", f"{fmt_int(d.get('traces_written'))} / {fmt_int(deleted)}"),
        ("checks after deletion holding for every deleted trace", f"{held} of {len(after)}"),
        ("key unwrap attempts after deletion (raw database, index and backup bytes)", fmt_int(d.get("unwrap_attempts"))),
        ("unwrap successes after deletion", fmt_int(d.get("unwrap_successes_after"))),
        ("unwrap successes before deletion (control)", fmt_int(d.get("unwrap_successes_before_control"))),
        ("verify() ok after / backup taken after verifies",
         f"{fmt_yes(d.get('verify_ok_after'))} / {fmt_yes(d.get('backup_after_verify_ok'))}"),
        ("failures", fmt_int(len(d.get("failures") or []))),
    ])
    failed = [k for k, v in after.items() if v != deleted]
    ok = not d.get("failures") and d.get("unwrap_successes_after") == 0 and not failed
    headline = (f"{fmt_int(deleted)} of {fmt_int(d.get('traces_written'))} traces deleted; {held} of {len(after)} checks hold; "
                f"{fmt_int(d.get('unwrap_successes_after'))} of {fmt_int(d.get('unwrap_attempts'))} key unwrap attempts "
                f"succeeded after deletion ({fmt_int(d.get('unwrap_successes_before_control'))} before, control)")
    notes = [f"check not holding for every deleted trace: {k}" for k in failed]
    notes += ([f"provenance kept: {d['provenance_keeps']}"] if d.get("provenance_keeps") else []) + list(d.get("notes") or [])
    return Findings(status_word(ok), headline, [table], notes=notes)


def _fuzz(d: dict[str, Any], folder: Path) -> Findings:
    suites = d.get("suites") or []
    rows = [[str(s.get("suite", "")), fmt_int(s.get("cases")), fmt_int(s.get("accepted")), fmt_int(s.get("rejected")),
             fmt_int(s.get("failures")), fmt_num(s.get("seconds"))] for s in suites]
    rows.append(["all", fmt_int(d.get("cases_total")), fmt_int(sum(s.get("accepted", 0) for s in suites)),
                 fmt_int(sum(s.get("rejected", 0) for s in suites)), fmt_int(d.get("failures_total")), fmt_num(d.get("seconds"))])
    table = Table("Generated bad input per door", ["suite", "cases", "accepted", "rejected", "failures", "seconds"], rows)
    ok = bool(d.get("ok")) and d.get("failures_total") == 0
    headline = (f"{fmt_int(d.get('cases_total'))} cases over {len(suites)} suites "
                f"({', '.join(str(s.get('suite')) + ' ' + fmt_int(s.get('cases')) for s in suites)}), "
                f"{fmt_int(d.get('failures_total'))} failures")
    notes = [f"{s.get('suite')}: first failure of each kind: {f}" for s in suites for f in s.get("distinct_failures") or []]
    if d.get("versions"):
        notes.append("versions: " + ", ".join(f"{k} {v}" for k, v in d["versions"].items()))
    return Findings(status_word(ok), headline, [table], notes=notes)


def _soak(d: dict[str, Any], folder: Path) -> Findings:
    checks, fig, ops = d.get("checks") or {}, d.get("figures") or {}, d.get("ops") or {}
    loss, spikes = checks.get("zero_data_loss") or {}, checks.get("one_alert_per_spike") or {}
    mem = checks.get("memory_bounded") or {}
    cons = d.get("consolidations") or []
    table = kv_table("Mixed workload with its invariants checked as it ran", [
        ("duration (min)", fmt_num(fig.get("duration_min"))),
        ("events offered / writes stored", f"{fmt_int(fig.get('events_offered'))} / {fmt_int(fig.get('writes_stored'))}"),
        ("recalls / deletes / pins / evict calls", (f"{fmt_int(ops.get('recalls'))} / {fmt_int(ops.get('deletes'))} / "
                                                   f"{fmt_int(ops.get('pins'))} / {fmt_int(ops.get('evict_calls'))}")),
        ("acknowledged writes lost or corrupt",
         f"{fmt_int(loss.get('lost_or_corrupt'))} of {fmt_int(loss.get('acknowledged_writes'))}"),
        ("clutter spikes / alerts (outside spikes)",
         f"{fmt_int(spikes.get('spikes'))} / {fmt_int(spikes.get('alerts_total'))} ({fmt_int(spikes.get('alerts_outside_spikes'))})"),
        ("RSS first / last / max (MB)", " / ".join(fmt_num(fig.get(k)) for k in ("rss_mb_first", "rss_mb_last", "rss_mb_max"))),
        ("RSS growth after the baseline (MB, bound)", f"{fmt_num(mem.get('growth_mb'))} (≤ {fmt_num(mem.get('bound_mb'))})"),
        ("recall p50 / p95 (ms)", f"{fmt_num(fig.get('recall_p50_ms'))} / {fmt_num(fig.get('recall_p95_ms'))}"),
        ("recall hit@5 / after restart", (f"{fmt_rate(fig.get('recall_hit_at_5'))} / "
                                          f"{fmt_rate(at(checks, 'restart_keeps_everything', 'recall_hit_at_5_after_restart'))}")),
        ("consolidations (outcome)", f"{fmt_int(len(cons))} ({', '.join(str(c.get('status')) for c in cons) or 'none'})"),
    ])
    check_table = Table("Checks", ["check", "passed"], [[name, fmt_yes(c.get("ok"))] for name, c in checks.items()])
    images = []
    png = folder / "soak.png"
    if png.exists():
        images.append(Image("Soak time series (soak.png)", "soak", png.read_bytes(), existing=png))
    headline = (f"{fmt_num(fig.get('duration_min'))} min, {fmt_int(fig.get('events_offered'))} events, "
                f"{fmt_int(fig.get('writes_stored'))} writes stored, {fmt_int(loss.get('lost_or_corrupt'))} lost; "
                f"{fmt_int(spikes.get('spikes'))} spikes, {fmt_int(spikes.get('alerts_total'))} alerts; "
                f"RSS {fmt_num(fig.get('rss_mb_first'))} → {fmt_num(fig.get('rss_mb_last'))} MB; "
                f"recall p50 {fmt_num(fig.get('recall_p50_ms'))} ms, p95 {fmt_num(fig.get('recall_p95_ms'))} ms")
    notes = [f"failed check: {name}" for name, c in checks.items() if not c.get("ok")]
    base_t = mem.get("baseline_t_s")
    if isinstance(base_t, int | float):
        notes.append(f"RSS growth is measured from the baseline at {fmt_num(base_t / 60)} min ({fmt_num(mem.get('baseline_mb'))} "
                     "MB; the first sample after 10% of the run or after the last consolidation ended, whichever is "
                     f"later) to the end at {fmt_num(fig.get('duration_min'))} min")
    return Findings(status_word(bool(d.get("ok"))), headline, [table, check_table],
                   images, notes)


def _scale(d: dict[str, Any], folder: Path) -> Findings:
    rows = sorted(d.get("results") or [], key=lambda r: r["n"])
    if not rows:
        raise ValueError("no results")
    header = ["n", "recall p50 (ms)", "recall p95 (ms)", *[f"{s} p95 (ms)" for s in STAGES], "dominant stage",
              "hit@1", "writes/s", "RSS (MB)", "disk (MB)", "cache hit rate"]
    cells = [[fmt_int(r.get("n")), fmt_num(at(r, "latency_ms", "total", "p50"), 2), fmt_num(at(r, "latency_ms", "total", "p95"), 2),
              *[fmt_num(at(r, "latency_ms", s, "p95"), 2) for s in STAGES], str(r.get("dominant_stage") or "–"),
              fmt_rate(r.get("hit_at_1")), fmt_num(r.get("writes_per_s"), 0), fmt_num(r.get("rss_mb"), 0), fmt_num(r.get("disk_mb"), 1),
              fmt_rate(at(r, "feature_cache", "hit_rate"))] for r in rows]
    last = rows[-1]
    p95 = at(last, "latency_ms", "total", "p95")
    met = isinstance(p95, int | float) and p95 <= P95_TARGET_MS
    flag = (f"recall p95 at n = {fmt_int(last.get('n'))}: {fmt_num(p95, 2)} ms, "
            f"{'within' if met else 'over'} the {P95_TARGET_MS:g} ms target")
    machine = d.get("machine") or {}
    notes = [(f"machine: {machine.get('cpus', '–')} CPUs, Python {machine.get('python', '–')}, {machine.get('platform', '–')}; "
             f"embedder {d.get('embedder', '–')}; sizes {'grown in one store' if last.get('grow') else 'filled separately'}; "
             f"{fmt_int(last.get('queries'))} queries per size, k = {fmt_int(last.get('k'))}")]
    image = Image("Recall cost vs store size", "scale-cost-curve", _cost_curve(rows))
    sizes = fmt_int(last.get("n")) if len(rows) == 1 else f"{fmt_int(rows[0].get('n'))} … {fmt_int(last.get('n'))}"
    headline = (f"n = {sizes}; {flag}; at the largest n RSS "
                f"{fmt_num(last.get('rss_mb'), 0)} MB, disk {fmt_num(last.get('disk_mb'), 0)} MB")
    return Findings("target met" if met else "target missed",
                   headline, [Table("Per store size", header, cells)], [image], notes)


def _shards(d: dict[str, Any], folder: Path) -> Findings:
    variants, cache = d.get("shards") or [], d.get("cache") or []

    def sizes(v: list[int]) -> str:
        return ", ".join(fmt_int(x) for x in v) if len(v) <= 5 else f"{fmt_int(min(v))}–{fmt_int(max(v))}"

    shard_table = Table(f"Shard layouts on one store of {fmt_int(d.get('n'))} traces",
                        ["variant", "shards", "shard sizes", "open + build (s)", "hit@1", "routed share",
                         "recall p50 (ms)", "recall p95 (ms)"],
                        [[str(v.get("variant", "")), fmt_int(v.get("shards")), sizes(v.get("shard_sizes") or []),
                          fmt_num(v.get("open_and_build_s"), 2), fmt_rate(v.get("hit_at_1")), fmt_rate(v.get("routed_share")),
                          fmt_num(at(v, "latency_ms", "total", "p50"), 2), fmt_num(at(v, "latency_ms", "total", "p95"), 2)]
                         for v in variants])
    cache_table = Table("Warm-key cache and prefetch (conversations: a partial cue, then a follow-up)",
                        ["prefetch", "cache entries", "hit rate (all)", "hit rate (follow-ups)", "prefetched",
                         "prefetch use rate", "first p50 / p95 (ms)", "follow-up p50 / p95 (ms)"],
                        [[fmt_yes(c.get("prefetch")), fmt_int(c.get("feature_cache")), fmt_rate(c.get("hit_rate_all")),
                          fmt_rate(c.get("hit_rate_follow_up")), fmt_int(c.get("prefetched")), fmt_rate(c.get("prefetch_use_rate")),
                          f"{fmt_num(at(c, 'first_ms', 'p50'))} / {fmt_num(at(c, 'first_ms', 'p95'))}",
                          f"{fmt_num(at(c, 'follow_up_ms', 'p50'))} / {fmt_num(at(c, 'follow_up_ms', 'p95'))}"]
                         for c in cache])
    parts = [f"{v.get('variant')} p95 {fmt_num(at(v, 'latency_ms', 'total', 'p95'))} ms" for v in variants]
    if cache:
        parts.append("follow-up cache hit rate " + ", ".join(
            f"{fmt_rate(c.get('hit_rate_follow_up'))} {'with' if c.get('prefetch') else 'without'} prefetch" for c in cache))
    headline = f"n = {fmt_int(d.get('n'))}: " + "; ".join(parts)
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

    series(lat, "p50", lambda r: at(r, "latency_ms", "total", "p50"))
    series(lat, "p95", lambda r: at(r, "latency_ms", "total", "p95"))
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
    t = [at(d, part, "trials") for part in ("write", "rotation", "consolidation")] if d else [200, 20, 3]
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
    _Check("pgfaults", "PostgreSQL faults: restarts and terminated backends under load", summary_faults.pgfaults,
           summary_faults.pgfaults_cmd),
    _Check("diskfull", "Disk full: the store and the index on a full file system", summary_faults.diskfull,
           summary_faults.diskfull_cmd),
    _Check("concurrency", "Concurrency: many writer and recall processes on one store", summary_faults.concurrency,
           summary_faults.concurrency_cmd),
    _Check("tenants", "Tenant isolation under attack (HTTP API and MCP)", summary_faults.tenants, summary_faults.tenants_cmd),
)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``report`` under ``hei-nw reliability``."""
    p = subparsers.add_parser("report", help="build report.md / report.html from the reliability and scale JSON")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="folder of the checks' and benchmarks' .json")
    p.add_argument("--out", type=Path, default=None, help="folder for the report (default: --dir)")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> None:
    sections = read_sections(args.dir)
    files = _write(sections, args.dir, args.out if args.out is not None else args.dir)
    for s in sections:
        print(f"{s.check:<9} {s.findings.status:<13} {s.findings.headline}")
    print(f"wrote {files.markdown}, {files.html} and {len(files.figures)} figures")

"""Report sections of the production-fault checks: PostgreSQL faults, disk full, concurrency, tenant isolation.

Each builder reads one check's JSON (``pgfaults``, ``diskfull``, ``concurrency``, ``tenants``) into
:class:`~.findings.Findings`; each command function gives the command that wrote it. :mod:`.summary`
lists them after the earlier checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hei_nw_eval.reliability.findings import Findings, Table, at, fmt_int, fmt_num, kv_table, status_word


def _ms(d: dict[str, Any] | None, what: str) -> str:
    return f"{fmt_num(at(d, what, 'p50'))} / {fmt_num(at(d, what, 'p95'))}"


def _counts(d: dict[str, Any] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (d or {}).items()) or "none"


def pgfaults(d: dict[str, Any], folder: Path) -> Findings:
    s, faults = d.get("store") or {}, d.get("faults") or []
    kinds: dict[str, int] = {}
    for f in faults:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    fault_table = Table("Faults done to the server while the workers ran",
                        ["fault", "at (s)", "down (s)", "backends terminated", "calls failed", "every worker served again after (s)"],
                        [[str(f.get("kind")), fmt_num(f.get("at_s")), fmt_num(f.get("down_s"), 2), fmt_int(f.get("terminated")),
                          fmt_int(f.get("failed_calls")),
                          fmt_num(f.get("recovered_s"), 2) if f.get("recovered_s") is not None else "NOT"] for f in faults])
    table = kv_table("Store after the faults, read by a fresh process", [
        ("server", str(d.get("server", "–"))),
        ("writers + recallers (s)", f"{fmt_int(d.get('writers'))} + {fmt_int(d.get('recallers'))} ({fmt_num(d.get('seconds'))} s)"),
        ("store.reconnect_s / connect_timeout_s", f"{fmt_num(d.get('reconnect_s'))} / {fmt_int(d.get('connect_timeout_s'))}"),
        ("events acknowledged / deletes acknowledged", f"{fmt_int(s.get('acked_events'))} / {fmt_int(s.get('acked_deletes'))}"),
        ("lost / wrong text / resurrected", f"{fmt_int(s.get('lost'))} / {fmt_int(s.get('wrong_text'))} / {fmt_int(s.get('resurrected'))}"),
        ("unacknowledged batches: whole / absent / partial",
         f"{fmt_int(s.get('failed_writes_present'))} / {fmt_int(s.get('failed_writes_absent'))} / {fmt_int(s.get('partial_batches'))}"),
        ("duplicated keys / newest-wins violations", f"{fmt_int(s.get('duplicated_keys'))} / {fmt_int(s.get('newest_wins_violations'))}"),
        ("verify() problems / undecryptable rows", f"{fmt_int(s.get('verify_problems'))} / {fmt_int(s.get('undecryptable'))}"),
        ("failed calls (by error)", f"{fmt_int(at(d, 'ops', 'failed_calls'))} ({_counts(d.get('errors'))})"),
        ("failed calls not a RuntimeFault / not naming the server",
         f"{fmt_int(d.get('non_runtime_faults'))} / {fmt_int(d.get('unnamed_errors'))}"),
        ("longest call (s, bound)", f"{fmt_num(d.get('longest_call_s'), 2)} ({fmt_num(d.get('call_bound_s'))})"),
        ("index entries differing from the store after refresh", fmt_int(at(d, "index", "mismatch"))),
        ("write / recall p50 / p95 (ms)", f"{_ms(d.get('latency_ms'), 'write')}; {_ms(d.get('latency_ms'), 'recall')}"),
    ])
    nouns = {"restart": ("restart", "restarts"), "terminate": ("termination of every backend", "terminations of every backend"),
             "outage": ("outage longer than reconnect_s", "outages longer than reconnect_s")}
    done = [f"{v} {nouns[k][v != 1] if k in nouns else k}" for k, v in kinds.items()]
    headline = (f"{', '.join(done) or 'no faults'} under {fmt_int(d.get('writers'))} writers + "
                f"{fmt_int(d.get('recallers'))} recallers: {fmt_int(s.get('acked_events'))} events acknowledged, "
                f"{fmt_int(s.get('lost'))} lost, {fmt_int(s.get('partial_batches'))} partial; {fmt_int(at(d, 'ops', 'failed_calls'))} "
                f"calls failed, {fmt_int(d.get('non_runtime_faults'))} not a RuntimeFault; longest call "
                f"{fmt_num(d.get('longest_call_s'), 2)} s")
    notes = [f"failed: {f}" for f in d.get("failures") or []]
    notes += [f"{k}: {v}" for k, v in (d.get("error_examples") or {}).items()]
    return Findings(status_word(bool(d.get("ok"))), headline, [fault_table, table], notes=notes)


def diskfull(d: dict[str, Any], folder: Path) -> Findings:
    if d.get("skipped"):
        return Findings("not run", f"not run: {d['skipped']}")
    scenarios = d.get("scenarios") or []
    rows = [
        ("on the full file system", lambda s: str(s.get("what_is_full", "–"))),
        ("file system (bytes)", lambda s: fmt_int(s.get("fs_bytes"))),
        ("fill-and-free rounds", lambda s: fmt_int(s.get("rounds"))),
        ("events acknowledged / writes failed", lambda s: f"{fmt_int(s.get('acked_events'))} / {fmt_int(s.get('failed_writes'))}"),
        ("errors (not DiskFullError)", lambda s: f"{_counts(s.get('errors'))} ({fmt_int(s.get('unclear_errors'))})"),
        ("index saves failed (logged)", lambda s: fmt_int(s.get("index_saves_failed"))),
        ("writes after space returned: ok / failed",
         lambda s: f"{fmt_int(s.get('writes_after_space_returned'))} / {fmt_int(s.get('writes_failed_after_space_returned'))}"),
        ("lost / wrong text / resurrected", lambda s: f"{fmt_int(s.get('lost'))} / {fmt_int(s.get('wrong_text'))} / {fmt_int(s.get('resurrected'))}"),
        ("failed writes found stored", lambda s: fmt_int(s.get("failed_writes_present"))),
        ("integrity_check / verify() problems", lambda s: f"{s.get('integrity', '–')} / {fmt_int(s.get('verify_problems'))}"),
        ("index entries differing from the store / temp files left",
         lambda s: f"{fmt_int(s.get('index_mismatch'))} / {fmt_int(s.get('leftover_temp_files'))}"),
        ("recalled after reopening", lambda s: f"{fmt_int((s.get('recall_checked') or 0) - (s.get('recall_missed') or 0))} of "
                                               f"{fmt_int(s.get('recall_checked'))}"),
    ]
    table = Table(f"A tmpfs of {fmt_int(d.get('size_mb'))} MB filled, then freed", ["figure", *[str(s.get("name")) for s in scenarios]],
                  [[label, *[cell(s) for s in scenarios]] for label, cell in rows])
    calls = Table("Calls while the disk filled, by outcome", ["scenario", "call", "outcomes"],
                  [[str(s.get("name")), k, _counts(v)] for s in scenarios for k, v in sorted((s.get("calls") or {}).items())])
    headline = "; ".join(f"{s.get('name')}: {fmt_int(s.get('acked_events'))} events acknowledged, {fmt_int(s.get('failed_writes'))} "
                         f"writes refused, errors over all calls: {_counts(s.get('errors'))}; {fmt_int(s.get('index_saves_failed'))} "
                         f"index saves failed; {fmt_int(s.get('lost'))} lost, verify problems {fmt_int(s.get('verify_problems'))}"
                         for s in scenarios)
    notes = [f"{s.get('name')}: {k}: {v}" for s in scenarios for k, v in (s.get("error_examples") or {}).items()]
    return Findings(status_word(bool(d.get("ok"))), headline, [table, calls], notes=notes)


def concurrency(d: dict[str, Any], folder: Path) -> Findings:
    results = d.get("results") or []

    def per(label: str, cell: Any) -> list[str]:
        return [label, *[cell(r) for r in results]]

    def st(r: dict[str, Any], k: str) -> str:
        return fmt_int(at(r, "store", k))

    table = Table("Many processes on one store (all processes together; ms per call)", ["figure", *[str(r.get("backend")) for r in results]], [
        per("run (s) / writers + recallers + maintenance", lambda r: f"{fmt_num(r.get('seconds'))} / {fmt_int(r.get('writers'))} + "
                                                                   f"{fmt_int(r.get('recallers'))} + 1"),
        per("events acknowledged (per s)", lambda r: f"{st(r, 'acked_events')} ({fmt_num(at(r, 'throughput', 'events_per_s'))})"),
        per("write calls / recalls per s", lambda r: f"{fmt_num(at(r, 'throughput', 'write_calls_per_s'))} / "
                                                   f"{fmt_num(at(r, 'throughput', 'recalls_per_s'))}"),
        per("write p50 / p95", lambda r: _ms(r.get("latency_ms"), "write")),
        per("recall, with the refresh before it, p50 / p95", lambda r: _ms(r.get("latency_ms"), "recall")),
        per("delete p50 / p95", lambda r: _ms(r.get("latency_ms"), "delete")),
        per("lost / resurrected / unexpected / partial batches",
            lambda r: " / ".join(st(r, k) for k in ("lost", "resurrected", "unexpected", "partial_batches"))),
        per("keys (written by several processes)", lambda r: f"{st(r, 'keys')} ({fmt_int(r.get('keys_written_by_several_processes'))})"),
        per("duplicated keys / newest-wins violations", lambda r: f"{st(r, 'duplicated_keys')} / {st(r, 'newest_wins_violations')}"),
        per("undecryptable rows / verify() problems", lambda r: f"{st(r, 'undecryptable')} / {st(r, 'verify_problems')}"),
        per("key rotations (rows re-wrapped)", lambda r: ", ".join(fmt_int(x.get("rewrapped")) for x in r.get("rotations") or []) or "none"),
        per("evictions (traces evicted)", lambda r: ", ".join(fmt_int(x.get("evicted")) for x in r.get("evictions") or []) or "none"),
        per("index entries differing from the store after refresh", lambda r: fmt_int(at(r, "index", "mismatch"))),
        per("a worker's final catch-up of its indexes, p50 / max (s)",
            lambda r: f"{fmt_num(at(r, 'index_catch_up_s', 'p50'))} / {fmt_num(at(r, 'index_catch_up_s', 'max'))}"),
        per("failed calls", lambda r: _counts(r.get("errors"))),
        per("recall hit@5 of acknowledged texts", lambda r: fmt_num(r.get("recall_hit_rate"), 3)),
    ])
    headline = "; ".join(f"{r.get('backend')}: {fmt_int(r.get('writers'))} writers + {fmt_int(r.get('recallers'))} recallers for "
                         f"{fmt_num((r.get('seconds') or 0) / 60)} min, {st(r, 'acked_events')} events "
                         f"({fmt_num(at(r, 'throughput', 'events_per_s'))}/s), {st(r, 'lost')} lost, "
                         f"{st(r, 'duplicated_keys')} duplicated keys, recall p95 {fmt_num(at(r, 'latency_ms', 'recall', 'p95'))} ms"
                         for r in results)
    notes = [f"{r.get('backend')} failed: {f}" for r in results for f in r.get("failures") or []]
    notes += [f"{r.get('backend')}: {k}: {v}" for r in results for k, v in (r.get("error_examples") or {}).items()]
    notes.append(f"embedder {d.get('embedder')}; 1-minute load average at the end {fmt_num(d.get('load_avg_1min_end'), 2)} "
                 "(2 cores shared by every process)")
    return Findings(status_word(bool(d.get("ok"))), headline, [table], notes=notes)


def tenants(d: dict[str, Any], folder: Path) -> Findings:
    turns = d.get("turns") or []
    keys = ["http_cases", "mcp_calls", "leaks", "cross_tenant_success", "server_errors", "victim_rows_changed",
            "victim_records_changed", "backend_leaks", "backend_victim_adapter", "consolidation_foreign_namespaces"]
    table = Table("Each tenant's key against the other tenant's memory",
                  ["attacker → victim", "HTTP cases", "MCP calls", "leaks", "cross-tenant successes", "5xx", "victim rows changed",
                   "victim records changed", "backend got a victim secret", "victim adapter used", "consolidation outside tenant",
                   "foreign namespaces"],
                  [[f"{t.get('attacker')} → {t.get('victim')}", *[fmt_int(t.get(k)) for k in keys],
                    fmt_int(len(t.get("foreign_namespaces") or []))] for t in turns])
    rl, pl = d.get("rate_limits") or {}, d.get("payload_limits") or {}
    rate = kv_table("Rate limits (one key over its burst, then wrong keys from one address)", [
        ("limits", _counts(rl.get("limits"))),
        ("burst requests allowed (bound)",
         f"{fmt_int(rl.get('allowed'))} of {fmt_int(rl.get('burst_requests'))} ({fmt_int(rl.get('allowed_bound'))})"),
        ("MCP request of the same key after the burst", fmt_int(rl.get("mcp_status_after_burst"))),
        ("the other tenant meanwhile", ", ".join(map(str, rl.get("other_tenant_statuses") or []))),
        ("wrong keys", _counts(rl.get("wrong_key_statuses"))),
        ("a valid key after them", fmt_int(rl.get("valid_key_after_wrong_keys"))),
    ])
    payload = Table(f"Payload limits (max body {fmt_int(pl.get('max_body_bytes'))} bytes)", ["request", "status", "expected"],
                    [[k, fmt_int(v), fmt_int((pl.get("expected") or {}).get(k))] for k, v in (pl.get("statuses") or {}).items()])
    def total(k: str) -> int:
        return sum(t.get(k) or 0 for t in turns)

    headline = (f"{fmt_int(total('http_cases'))} HTTP cases over {len(d.get('routes_covered') or [])} routes and "
                f"{fmt_int(total('mcp_calls'))} MCP calls with the other tenant's ids, users and words: {fmt_int(total('leaks'))} "
                f"leaks, {fmt_int(total('cross_tenant_success'))} cross-tenant reads/writes/deletes, "
                f"{fmt_int(total('victim_rows_changed'))} victim rows changed; rate limits "
                f"{'held' if rl.get('ok') else 'FAILED'}, payload limits {'held' if pl.get('ok') else 'FAILED'}")
    notes = [f"MCP: {d.get('mcp')}"] + [f"failed: {f}" for f in d.get("failures") or []]
    notes += [f"route not fuzzed: {r}" for r in d.get("routes_uncovered") or []]
    notes += [f"{t.get('attacker')} → {t.get('victim')}: {e}" for t in turns for e in (t.get("examples") or [])[:5]]
    return Findings(status_word(bool(d.get("ok"))), headline, [table, rate, payload], notes=notes)


def pgfaults_cmd(d: dict[str, Any] | None) -> str:
    faults = (d or {}).get("faults") or []
    n = {k: sum(f.get("kind") == k for f in faults) for k in ("restart", "terminate", "outage")} if d else \
        {"restart": 4, "terminate": 4, "outage": 1}
    # The run's measured length overshoots the asked one by the workers' last calls: the command asks whole seconds.
    return (f"hei-nw reliability pgfaults --seconds {int((d or {}).get('seconds', 180))} --restarts {n['restart']} "
            f"--terminations {n['terminate']} --outages {n['outage']} --out reports/reliability/pgfaults.json")


def diskfull_cmd(d: dict[str, Any] | None) -> str:
    rounds = max((s.get("rounds") or 0 for s in (d or {}).get("scenarios") or []), default=3)
    return f"hei-nw reliability diskfull --size-mb {(d or {}).get('size_mb', 8)} --rounds {rounds} --out reports/reliability/diskfull.json"


def concurrency_cmd(d: dict[str, Any] | None) -> str:
    r = ((d or {}).get("results") or [{}])[0]
    return (f"hei-nw reliability concurrency --minutes {(d or {}).get('minutes', 10):g} --writers {r.get('writers', 8)} "
            f"--recallers {r.get('recallers', 4)} --out reports/reliability/concurrency.json")


def tenants_cmd(d: dict[str, Any] | None) -> str:
    t = ((d or {}).get("turns") or [{}])[0]
    return (f"hei-nw reliability tenants --cases {t.get('http_cases', 3000)} --mcp-calls {t.get('mcp_calls', 400)} "
            "--out reports/reliability/tenants.json")

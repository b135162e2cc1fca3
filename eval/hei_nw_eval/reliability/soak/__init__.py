"""``hei-nw reliability soak``: a long mixed workload with its invariants checked as it runs (issue 8, part 5).

Traffic (:mod:`.workload`), paced to ``events_per_s`` in bursts: facts from four
domains and chit-chat over several tenants and users (namespaces
``<tenant>/<user>``), recalls of known facts, deletes, pins, writes with a TTL and
a per-namespace capacity (so expiry and eviction happen), keyed updates (newest
wins), replay batches, periodic clutter spikes in one tenant, and optionally a
few real consolidations in a background thread (rare: one costs minutes on a
CPU; they start in the first half of the run; ``--no-consolidate`` for CI).

Ground truth is the soak's :class:`~.workload.Ledger` of acknowledged writes. A
trace may leave the store only with a reason in the signed provenance log that
the ledger agrees with: ``delete`` (the soak asked), ``expired`` (its TTL had
passed, never a pinned one), ``evicted`` (capacity; never a pinned one),
``replaced`` (a later write with its key). Every ``check_every_s`` seconds, after
an ``evict()``, every ledger entry is read back from the store and compared with
a hash of what was written. The report's checks: zero data loss, pins never
evicted or expired, TTL enforced, nothing resurrected and no phantom traces, the
store verifies (signatures and hash chain), bounded clutter, one alert per
clutter spike and none outside, bounded RSS growth, and the same data after a
restart. Samples (every ``sample_every_s``) are the time series of the plot
(:mod:`.plot`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hei_nw_eval.reliability.soak.report import SoakReport, attribute_alerts, build_report, summary
from hei_nw_eval.reliability.soak.workload import Entry, Fact, Ledger, Workload, fingerprint
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.errors import TraceNotFoundError
from hei_nw_plugin.memory import HEIMemory

log = logging.getLogger("hei_nw.soak")
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark")


@dataclass
class SoakConfig:
    """Knobs of one soak (durations in seconds unless named otherwise)."""

    minutes: float = 60.0
    min_events: int = 0  # keep going past `minutes` until this many events were offered (CI on a starved machine)
    seed: int = 0
    tenants: int = 3
    users: int = 2
    events_per_s: float = 25.0
    fact_share: float = 0.35
    pin_share: float = 0.03
    ttl_share: float = 0.25
    ttl_min_s: float = 30.0
    ttl_max_s: float = 300.0
    capacity: int = 500
    recalls_per_event: float = 0.3
    deletes_per_event: float = 0.04
    pins_per_event: float = 0.01
    spike_every_s: float = 300.0
    spike_events: int = 200
    check_every_s: float = 60.0
    verify_every_s: float = 600.0
    sample_every_s: float = 5.0
    evict_every_s: float = 5.0
    replay_every_s: float = 30.0
    consolidations: int = 1
    consolidate_steps: int = 2
    consolidate_max_s: float = 900.0
    clutter_window_tokens: int = 4000
    clutter_alert_per_1k: float = 20.0
    rss_growth_bound_mb: float = 150.0
    max_probes: int = 300
    embedder: str = "minilm"


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Soak:
    """One soak over ``memory``: call :meth:`run`, or drive the steps yourself (tests)."""

    def __init__(self, memory: HEIMemory, cfg: SoakConfig, *, data_dir: Path) -> None:
        self.mem = memory
        self.cfg = cfg
        self.data_dir = data_dir
        self.work = Workload(cfg.seed, ttl_share=cfg.ttl_share, ttl_s=(cfg.ttl_min_s, cfg.ttl_max_s), pin_share=cfg.pin_share)
        self.rng = np.random.default_rng(cfg.seed + 1)
        self.ledger = Ledger()
        self.tenants = list(TENANTS[: cfg.tenants])
        self.namespaces = [f"{t}/u{u + 1}" for t in self.tenants for u in range(cfg.users)]
        self._ids: dict[str, list[str]] = {ns: [] for ns in self.namespaces}  # for random picks; stale ids pruned lazily
        self.ops: Counter[str] = Counter()
        self.removed_by: Counter[str] = Counter()
        self.violations: list[dict[str, Any]] = []
        self.violation_counts: Counter[str] = Counter()
        self.spikes: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.consolidation_log: list[dict[str, Any]] = []
        self.check_rows: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.tokens = {"normal": 0, "spike": 0}
        self.writes = {"normal": 0, "spike": 0}
        self.offered = 0
        self.recall_ms: list[float] = []
        self.recall_hits: list[int] = []
        self._interval_ms: list[float] = []
        self._interval_hits: list[int] = []
        self._prov_seq = 0
        self._t0 = time.time()
        self._probe_every = 10
        self._consolidating: threading.Thread | None = None
        self._worker: Any = None
        self.last_consolidation_end: float | None = None
        self.last_probe: dict[str, float] = {}
        memory.telemetry.on_alert.append(lambda a: self.alerts.append(
            {"t_s": round(a.at - self._t0, 3), "group": a.group, "rate_per_1k": round(a.value, 2), "bound": a.bound}))

    # ------------------------------------------------------------------ helpers
    def t(self) -> float:
        """Seconds since the soak started."""
        return time.time() - self._t0

    def violate(self, kind: str, **detail: Any) -> None:
        self.violation_counts[kind] += 1
        if len(self.violations) < 200:
            self.violations.append({"kind": kind, "t_s": round(self.t(), 2), **detail})

    def _pick(self, ns: str, *, unpinned: bool = False, with_cue: bool = False) -> str | None:
        ids = self._ids[ns]
        for _ in range(20):
            if not ids:
                return None
            i = int(self.rng.integers(0, len(ids)))
            tid = ids[i]
            e = self.ledger.live.get(tid)
            if e is None:
                ids[i] = ids[-1]
                ids.pop()
                continue
            if (unpinned and e.pinned) or (with_cue and e.cue is None):
                continue
            return tid
        return None

    def _ns(self) -> str:
        return self.namespaces[int(self.rng.integers(0, len(self.namespaces)))]

    # --------------------------------------------------------------------- ops
    def write(self, ns: str, facts: list[Fact], *, kind: str = "normal") -> int:
        """write_many the batch; every acknowledged write goes into the ledger. Returns how many were stored."""
        t_call = time.time()
        decisions = self.mem.write_many([f.event for f in facts], namespace=ns)
        t_ack = time.time()
        stored = 0
        self.offered += len(facts)
        for f, d in zip(facts, decisions, strict=True):
            self.tokens[kind] += int(f.event["context_tokens"])
            if not d.accepted or d.trace_id is None:
                continue
            stored += 1
            self.writes[kind] += 1
            ev = f.event
            pinned = bool(ev.get("pin"))
            ttl = ev.get("ttl_s") or self.mem.settings.decay.ttl_s
            self.ledger.add(d.trace_id, Entry(
                ns=ns, fp=fingerprint(ev["text"], ev.get("slots", {})), pinned=pinned,
                expires_at=None if pinned or ttl is None else t_call + float(ttl),
                expires_by=None if pinned or ttl is None else t_ack + float(ttl), key=ev.get("key"), cue=f.cue, soak_id=int(ev.get("metadata", {}).get("soak", -1))))
            self._ids[ns].append(d.trace_id)
            if f.cue is not None and len(self.mem.telemetry.probes) < self.cfg.max_probes and \
                    int(ev["metadata"]["soak"]) % self._probe_every == 0:
                self.mem.telemetry.probes.add(f.cue, d.trace_id, namespace=ns)
        self.ops["write_batches"] += 1
        self.ops["events_offered"] += len(facts)
        self.ops["writes_stored"] += stored
        return stored

    def burst(self) -> int:
        size = int(min(40, self.rng.geometric(0.12)))
        ns = self._ns()
        self.write(ns, self.work.burst(ns, size, self.cfg.fact_share))
        return size

    def recall(self) -> None:
        ns = self._ns()
        tid = self._pick(ns, with_cue=True)
        if tid is None:
            return
        e = self.ledger.live[tid]
        r = self.mem.recall(e.cue or "", 5, namespace=ns)
        hit = int(tid in [x.trace.id for x in r.traces])
        self.recall_ms.append(r.timings_ms["total"])
        self.recall_hits.append(hit)
        self._interval_ms.append(r.timings_ms["total"])
        self._interval_hits.append(hit)
        self.ops["recalls"] += 1

    def delete(self) -> None:
        ns = self._ns()
        tid = self._pick(ns)
        if tid is None:
            return
        try:
            self.mem.delete(tid, namespace=ns)
        except TraceNotFoundError:
            return  # evicted or expired meanwhile; the provenance scan accounts for it
        self.ledger.requested_deletes.add(tid)
        self.ops["deletes"] += 1

    def pin(self) -> None:
        ns = self._ns()
        tid = self._pick(ns, unpinned=True)
        if tid is None:
            return
        try:
            self.mem.pin(tid, namespace=ns)
        except TraceNotFoundError:
            return
        self.ledger.live[tid].pinned = True
        self.ops["pins"] += 1

    def spike(self) -> None:
        """One clutter spike: ``spike_events`` clutter events in one tenant, in batches of 50."""
        tenant = self.tenants[len(self.spikes) % len(self.tenants)]
        ns = f"{tenant}/u1"
        start = self.t()
        firing_before = self.mem.telemetry.alarm_firing(ns)
        stored = 0
        left = self.cfg.spike_events
        while left > 0:
            n = min(50, left)
            stored += self.write(ns, [self.work.clutter() for _ in range(n)], kind="spike")
            left -= n
        self.spikes.append({"index": len(self.spikes), "group": self.mem.telemetry.group(ns), "namespace": ns,
                            "start_s": round(start, 3), "end_s": round(self.t(), 3), "events": self.cfg.spike_events,
                            "stored": stored, "alarm_firing_before": firing_before})
        self.ops["spikes"] += 1

    def replay(self) -> None:
        from hei_nw_plugin.replay import ReplayScheduler

        ns = self._ns()
        if self.mem.store.has_namespace(ns):
            ReplayScheduler(self.mem).next_batch(16, namespace=ns)
            self.ops["replay_batches"] += 1

    def evict(self) -> None:
        self.mem.evict()
        self.ops["evict_calls"] += 1

    # ----------------------------------------------------------- consolidation
    def start_consolidation(self) -> None:
        self._consolidating = threading.Thread(target=self._consolidate, name="soak-consolidate", daemon=True)
        self._consolidating.start()

    def _consolidate(self) -> None:
        t0 = self.t()
        row: dict[str, Any] = {"start_s": round(t0, 2)}
        try:
            import torch

            torch.set_num_threads(1)
            from hei_nw_plugin.consolidate import ConsolidationConfig, ConsolidationWorker

            if self._worker is None:
                cfg = ConsolidationConfig(replay_size=8, rehearse=8, max_steps=self.cfg.consolidate_steps, batch_size=4,
                                          warmup_steps=0, kl_weight=0.0, max_seconds=self.cfg.consolidate_max_s,
                                          checkpoint_every=max(1, self.cfg.consolidate_steps))
                self._worker = ConsolidationWorker(self.mem, self.mem.settings.model, out_dir=self.data_dir / "consolidated",
                                                   namespaces=self.namespaces, config=cfg, progress=False)
            res = self._worker.step()
            row |= {"status": res.status, "version": res.version, "rows": res.rows, "steps": res.steps,
                    "train_seconds": round(res.train_seconds, 1), "peak_rss_mb": round(res.peak_rss_mb, 1),
                    "drift": {k: v for k, v in (res.drift or {}).items() if k in ("accepted", "change_points", "ppl_change")}}
        except Exception as err:  # recorded and failed in the report, never fatal to the soak
            log.exception("consolidation failed")
            row |= {"status": "error", "error": f"{type(err).__name__}: {err}"[:500]}
        row["end_s"] = round(self.t(), 2)
        self.last_consolidation_end = self.t()
        self.consolidation_log.append(row)

    # ------------------------------------------------------------------ checks
    def scan_provenance(self) -> None:
        """Account for every trace the signed log says left the store since the last scan."""
        from sqlalchemy import select

        from hei_nw_plugin.store.schema import provenance

        with self.mem.store.engine.connect() as conn:
            rows = conn.execute(select(provenance.c.seq, provenance.c.event, provenance.c.trace_id, provenance.c.record)
                                .where(provenance.c.seq > self._prov_seq).order_by(provenance.c.seq)).all()
        for r in rows:
            self._prov_seq = max(self._prov_seq, int(r.seq))
            if r.event != "delete" or r.trace_id is None:
                continue
            rec = json.loads(r.record)
            reason, at, tid = rec.get("reason"), float(rec.get("at", time.time())), r.trace_id
            self.removed_by[str(reason)] += 1
            e = self.ledger.live.get(tid)
            if e is None:
                self.violate("unknown_delete", trace_id=tid, reason=reason)
                continue
            if reason == "delete":
                if tid not in self.ledger.requested_deletes:
                    self.violate("unrequested_delete", trace_id=tid)
            elif reason == "expired":
                if e.pinned:
                    self.violate("pinned_expired", trace_id=tid)
                elif e.expires_at is None or e.expires_at > at + 1.0:
                    self.violate("expired_early", trace_id=tid, expires_at=e.expires_at, at=at)
            elif reason == "evicted":
                if e.pinned:
                    self.violate("pinned_evicted", trace_id=tid)
            elif reason == "replaced":
                if tid not in self.ledger.superseded:
                    self.violate("unexpected_replace", trace_id=tid)
            else:
                self.violate("unknown_reason", trace_id=tid, reason=reason)
            self.ledger.drop(tid)

    def check(self, *, label: str = "periodic", evict: bool = True) -> dict[str, Any]:
        """evict(), scan the provenance log, then read every ledger entry back from the store."""
        t_check = time.perf_counter()
        now = time.time()
        if evict:
            self.mem.evict(now=now)
        self.scan_provenance()
        found = {t.id: t for ns in self.namespaces for t in self.mem.list_traces(namespace=ns, limit=10_000_000)}
        counts: Counter[str] = Counter()
        for tid, e in list(self.ledger.live.items()):
            got = found.get(tid)
            if got is None:
                if e.expires_at is not None and not e.pinned and e.expires_at <= time.time():
                    counts["expired_pending"] += 1  # past its TTL after the evict above; the next evict removes it
                    continue
                counts["missing"] += 1
                self.violate("missing", trace_id=tid, namespace=e.ns, pinned=e.pinned)
                if e.pinned:
                    self.violate("pin_lost", trace_id=tid)
                continue
            if fingerprint(got.text, got.slots) != e.fp or int(got.metadata.get("soak", -1)) != e.soak_id:
                counts["corrupt"] += 1
                self.violate("corrupt", trace_id=tid)
            if e.pinned and not got.pinned:
                self.violate("pin_lost", trace_id=tid)
            if evict and e.expires_by is not None and not e.pinned and e.expires_by <= now:
                self.violate("expired_not_evicted", trace_id=tid)
        for tid in found.keys() - self.ledger.live.keys():
            counts["phantom"] += 1
            self.violate("phantom", trace_id=tid)
        for ns, tid in self.ledger.removed:
            if tid in found:
                counts["resurrected"] += 1
                self.violate("resurrected", trace_id=tid, namespace=ns)
        probes = self.mem.telemetry.evaluate_probes(self.mem)
        self.last_probe = {f"hit@{k}": v for k, v in probes.hit_at_k.items()} | {"probes": probes.evaluated}
        row = {"label": label, "t_s": round(self.t(), 2), "ledger_live": len(self.ledger.live), "store_live": len(found),
               "pinned": sum(e.pinned for e in self.ledger.live.values()), "seconds": round(time.perf_counter() - t_check, 2),
               **{k: counts[k] for k in ("missing", "corrupt", "phantom", "resurrected", "expired_pending")},
               "probe": self.last_probe}
        self.check_rows.append(row)
        self.ops["checks"] += 1
        return row

    def verify(self, label: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        rep = self.mem.verify(deep=True)
        row = {"label": label, "t_s": round(self.t(), 2), "ok": rep.ok, "records_checked": rep.records_checked,
               "problems": len(rep.problems), "first_problems": rep.problems[:3], "seconds": round(time.perf_counter() - t0, 2)}
        if not rep.ok:
            self.violate("verify_failed", problems=rep.problems[:3])
        self.check_rows.append(row)
        return row

    def sample(self) -> None:
        ms = np.array(self._interval_ms) if self._interval_ms else None
        tel = self.mem.telemetry
        self.samples.append({
            "t_s": round(self.t(), 2), "rss_mb": round(rss_mb(), 1), "ledger_live": len(self.ledger.live),
            "store_live": self.mem.store.count(), "events_offered": self.offered,
            "writes": self.writes["normal"] + self.writes["spike"], "tokens": self.tokens["normal"] + self.tokens["spike"],
            "clutter_per_1k": {t: round(tel.clutter_rate(f"{t}/u1"), 2) for t in self.tenants},
            "alerts": len(self.alerts), "firing": [t for t in self.tenants if tel.alarm_firing(f"{t}/u1")],
            "recalls": len(self._interval_ms),
            "recall_p50_ms": round(float(np.percentile(ms, 50)), 2) if ms is not None else None,
            "recall_p95_ms": round(float(np.percentile(ms, 95)), 2) if ms is not None else None,
            "hit_at_5": round(float(np.mean(self._interval_hits)), 3) if self._interval_hits else None,
            "probe_hit_at_5": self.last_probe.get("hit@5"),
            "consolidating": bool(self._consolidating and self._consolidating.is_alive()),
            "removed": dict(self.removed_by),
        })
        self._interval_ms, self._interval_hits = [], []

    # --------------------------------------------------------------------- run
    def run(self) -> None:
        """The timed loop: paced bursts, Poisson-ish recalls/deletes/pins, timers for everything else."""
        cfg = self.cfg
        end = self._t0 + cfg.minutes * 60.0
        rate = cfg.events_per_s
        now = time.time()
        nxt = {"burst": now, "recall": now, "delete": now + 1, "pin": now + 1, "sample": now, "evict": now + cfg.evict_every_s,
               "check": now + cfg.check_every_s, "verify": now + cfg.verify_every_s, "replay": now + cfg.replay_every_s,
               "spike": now + min(cfg.spike_every_s, cfg.minutes * 60.0 / 4)}
        # Consolidations start in the first half, so the second half measures memory growth after them.
        starts = [self._t0 + cfg.minutes * 30.0 * (i + 1) / (cfg.consolidations + 1) for i in range(cfg.consolidations)]
        while (now := time.time()) < end or self.offered < cfg.min_events:
            if starts and now >= starts[0] and not (self._consolidating and self._consolidating.is_alive()):
                starts.pop(0)
                self.start_consolidation()
            if now >= nxt["sample"]:
                self.sample()
                nxt["sample"] = now + cfg.sample_every_s
            if now >= nxt["evict"]:
                self.evict()
                nxt["evict"] = now + cfg.evict_every_s
            if now >= nxt["check"]:
                self.check()
                nxt["check"] = time.time() + cfg.check_every_s
            if now >= nxt["verify"]:
                self.verify("periodic")
                nxt["verify"] = time.time() + cfg.verify_every_s
            if now >= nxt["replay"]:
                self.replay()
                nxt["replay"] = now + cfg.replay_every_s
            if now >= nxt["spike"] and now + min(10.0, 0.2 * cfg.minutes * 60.0) < end:
                self.spike()
                nxt["spike"] = time.time() + cfg.spike_every_s
            if now >= nxt["burst"]:
                n = self.burst()
                nxt["burst"] = max(nxt["burst"], now - 5.0) + n / rate  # bursty, average `rate`; a lag of 5 s at most
            for op, per_event in (("recall", cfg.recalls_per_event), ("delete", cfg.deletes_per_event), ("pin", cfg.pins_per_event)):
                if now >= nxt[op]:
                    getattr(self, op)()
                    nxt[op] = max(nxt[op], now - 5.0) + float(self.rng.exponential(1.0 / (rate * per_event)))
            wait = min(nxt.values()) - time.time()
            if wait > 0:
                time.sleep(min(wait, 0.2))
        self.sample()

    def finish(self, memory_factory: Any) -> None:
        """Wait for a running consolidation, check, verify, reopen the store (restart) and check again."""
        if self._consolidating is not None:
            self._consolidating.join(timeout=self.cfg.consolidate_max_s + 600)
            if self._consolidating.is_alive():
                self.violate("consolidation_hung")
        self.check(label="final")
        self.verify("final")
        self.telemetry_snapshot = self.mem.telemetry.snapshot(self.mem)
        self.mem.close()
        self.mem = memory_factory()
        self.check(label="after_restart", evict=False)
        self.verify("after_restart")
        hits = []
        for tid, e in list(self.ledger.live.items())[:200]:
            if e.cue is not None:
                hits.append(int(tid in [x.trace.id for x in self.mem.recall(e.cue, 5, namespace=e.ns).traces]))
        self.after_restart_hit5 = float(np.mean(hits)) if hits else None
        self.sample()

    # ------------------------------------------------------------------ report
    def report(self, started_at: str) -> SoakReport:
        return build_report(self, started_at)

    def attribute_alerts(self) -> tuple[list[int], int]:
        return attribute_alerts(self)


def _settings(cfg: SoakConfig, data_dir: Path) -> HeiNwSettings:
    return HeiNwSettings.build(
        store={"data_dir": data_dir}, decay={"capacity": cfg.capacity},
        embedder={"name": "minilm"},
        telemetry={"namespace_label": "prefix", "clutter_window_tokens": cfg.clutter_window_tokens,
                   "clutter_alert_per_1k": cfg.clutter_alert_per_1k})


def _embedder(name: str) -> Any:
    if name == "hashing":
        from hei_nw_plugin.embed import HashingEmbedder

        return HashingEmbedder(dim=128)
    return None  # HEIMemory builds the configured one (MiniLM)


def run(cfg: SoakConfig, *, out: Path, data_dir: Path, plot: bool = True) -> SoakReport:
    """Run a soak in ``data_dir`` (must be empty or absent) and write ``out`` (JSON) and, with ``plot``, ``out`` as .png."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()):
        raise SystemExit(f"error: {data_dir} is not empty; a soak starts from an empty store")
    settings = _settings(cfg, data_dir)
    emb = _embedder(cfg.embedder)
    mem = HEIMemory(settings, embedder=emb)
    if emb is None:
        emb = mem.embedder  # reused after the restart: the check is the store, not model loading
    started = datetime.now(UTC).isoformat(timespec="seconds")
    soak = Soak(mem, cfg, data_dir=data_dir)
    soak.run()
    soak.finish(lambda: HEIMemory(settings, embedder=emb))
    report = soak.report(started)
    soak.mem.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(report), indent=1, default=str) + "\n")
    if plot:
        from hei_nw_eval.reliability.soak.plot import plot_soak

        plot_soak(out, out.with_suffix(".png"))
    return report


from hei_nw_eval.reliability.soak.cli import register

__all__ = ["Soak", "SoakConfig", "SoakReport", "register", "run", "summary"]

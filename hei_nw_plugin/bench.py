"""Recall latency and write throughput benchmark: ``hei-nw bench recall``.

Fills a fresh store with N synthetic episodes (who/what/where/when slots and a
sentence), then recalls Q of them from partial cues (text plus half the
slots) and reports p50/p95 latency per stage and in total (cue embedding
included), write throughput, and hit@1 of the benchmark's own cues. Figures
are printed and written as JSON; nothing is asserted.
"""

from __future__ import annotations

import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.types import MemoryEvent

_WHO = ["Ava", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena", "Milo", "Nia",
        "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tess", "Uma", "Vik", "Wren", "Xia", "Yara", "Zeno"]
_WHAT = ["lost a wallet", "bought a lamp", "fixed a bike", "signed a lease", "met a client", "booked a flight",
         "returned a book", "painted a fence", "found a ring", "sold a guitar", "baked a cake", "planted a tree",
         "rented a boat", "repaired a clock", "ordered a desk", "adopted a cat"]
_WHERE = ["the harbour", "the library", "the market", "the station", "the museum", "the garden", "the bakery",
          "the clinic", "the stadium", "the office", "the pier", "the gallery", "the hotel", "the school"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def synthetic_event(rng: random.Random, i: int) -> MemoryEvent:
    who, what, where, day = rng.choice(_WHO), rng.choice(_WHAT), rng.choice(_WHERE), rng.choice(_DAYS)
    ref = f"R{i:06d}"
    # pin=True: every event passes the gate, so the store holds exactly N traces
    # (the gate still scores each one, so its cost is part of the write figure).
    return MemoryEvent(
        text=f"On {day} {who} {what} at {where} (ref {ref}).",
        slots={"who": who, "what": what, "where": where, "when": day, "ref": ref}, pin=True,
    )


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean())}


def bench_recall(sizes: list[int], *, queries: int = 200, k: int = 5, seed: int = 0, out: Path | None = None,
                 settings: HeiNwSettings | None = None, batch: int = 512, progress: bool = True,
                 keep: Path | None = None, grow: bool = False) -> dict[str, Any]:
    """Run the benchmark for each store size; returns the JSON-able result.

    ``keep`` keeps each filled store in ``keep/bench-<n>-s<seed>`` and reuses it on a later
    run (recall is measured again; the write figures are those of the run that filled it).
    ``grow`` uses one store for all sizes instead: it is filled up to each size in turn and
    measured there (``keep/bench-grow-s<seed>``), so a 1M run writes 1M traces, not 1.11M.
    Each row also gives the process RSS, the store's size on disk and warm-key cache figures.
    """
    results: list[dict[str, Any]] = []
    embedder = None
    sizes = sorted(sizes) if grow else list(sizes)
    events: list[MemoryEvent] = []
    rng = random.Random(seed)

    def events_upto(n: int) -> list[MemoryEvent]:
        while len(events) < n:
            events.append(synthetic_event(rng, len(events)))
        return events[:n] if len(events) > n else events

    earlier: dict[int, dict[str, Any]] = {}  # rows of an earlier grown run, for sizes the kept store is past
    if grow and out is not None and out.exists():
        try:
            prior = json.loads(out.read_text())
            earlier = {int(r["n"]): r for r in prior.get("results", []) if r.get("grow") and prior.get("seed") == seed}
        except (ValueError, KeyError, TypeError):
            earlier = {}
    warmed: list[HEIMemory] = []
    with tempfile.TemporaryDirectory(prefix="hei-bench-") as tmp:
        mem: HEIMemory | None = None
        for n in sizes:
            if grow:
                folder = keep / f"bench-grow-s{seed}" if keep is not None else Path(tmp) / "grow"
            else:
                folder = keep / f"bench-{n}-s{seed}" if keep is not None else Path(tmp) / f"bench-{n}"
            fill_file = folder / "fill.json"
            if mem is None or not grow:
                s = (settings or HeiNwSettings()).model_copy(deep=True)
                s.store.data_dir = folder
                s.store.url = None
                mem = HEIMemory(s, embedder=embedder)
                embedder = mem.embedder  # load the model once for all sizes
            fills = json.loads(fill_file.read_text()) if fill_file.exists() else {}
            fills = {"0": {"accepted": 0, "write_seconds": 0.0}} if not fills else fills
            if "accepted" in fills:  # a file from a run before grow existed: {accepted, write_seconds, filled_at}
                fills = {str(n): fills}
            have = mem.store.count("bench")
            evs = events_upto(n)
            if grow and have > n:
                row = earlier.get(n)
                if row is not None:  # measured when the grown store passed this size
                    results.append({**row, "carried_over": True})
                    print(f"N={n:>7}  kept from the run of {row.get('measured_at', '?')} (the grown store is past this size)")
                else:
                    print(f"N={n:>7}  skipped: the kept store already holds {have} traces (a grown store is measured at its size or beyond)")
                continue
            if str(n) in fills and have == n:
                if mem not in warmed:  # a store opened here, not filled here: decrypt its features once
                    mem.warm_features(namespace="bench")
                    warmed.append(mem)
            else:
                base = max((int(x) for x in fills if int(x) <= have), default=0)
                if have != base or (not grow and have):
                    raise SystemExit(f"error: {folder} holds {have} bench traces, not a size this benchmark wrote; delete it to refill")
                t0 = time.perf_counter()
                accepted = 0
                bar = _bar(n - have, f"write {have}->{n}") if progress else None
                for ds in mem.write_stream(evs[have:], namespace="bench", batch=batch):
                    accepted += sum(d.accepted for d in ds)
                    if bar:
                        bar.update(len(ds))
                if bar:
                    bar.close()
                prev = fills[str(base)]
                fills[str(n)] = {"accepted": prev["accepted"] + accepted,
                                 "write_seconds": prev["write_seconds"] + time.perf_counter() - t0,
                                 "step_writes_per_s": (n - have) / (time.perf_counter() - t0),
                                 "filled_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
                if keep is not None:
                    mem.flush()
                    mem.index.save_all()
                    fill_file.parent.mkdir(parents=True, exist_ok=True)
                    fill_file.write_text(json.dumps(fills))
            fill = fills[str(n)]
            row = _measure(mem, evs, n, queries=queries, k=k, seed=seed)
            row.update({"accepted": fill["accepted"], "write_seconds": fill["write_seconds"],
                        "writes_per_s": n / fill["write_seconds"], "filled_at": fill["filled_at"],
                        "disk_mb": _folder_mb(folder), "rss_mb": _rss_mb(), "grow": grow,
                        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
            if "step_writes_per_s" in fill:
                row["step_writes_per_s"] = fill["step_writes_per_s"]
            if not grow:
                mem.close()
                mem = None
            lat = row["latency_ms"]
            dominant = max((kk for kk in lat if kk != "total"), key=lambda kk: lat[kk]["p50"])
            row["dominant_stage"] = dominant
            row["load_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # was the machine quiet?
            cache = row["feature_cache"]
            print(f"N={n:>7}  write {row['writes_per_s']:.0f}/s  recall total p50 {lat['total']['p50']:.2f} ms "
                  f"p95 {lat['total']['p95']:.2f} ms  (embed p95 {lat['embed']['p95']:.2f}, ann p95 {lat['ann']['p95']:.2f}, "
                  f"fetch p95 {lat['fetch']['p95']:.2f}, hopfield p95 {lat['hopfield']['p95']:.2f}, pack p95 {lat['pack']['p95']:.2f})  "
                  f"dominant: {dominant}  hit@1 {row['hit_at_1']:.3f}  cache hit {cache['hit_rate']:.3f}  "
                  f"rss {row['rss_mb']:.0f} MB  disk {row['disk_mb']:.0f} MB", flush=True)
            results.append(row)
        if mem is not None:
            mem.close()
    report = {"benchmark": "recall", "machine": {"cpus": _cpus(), "python": platform.python_version(), "platform": platform.platform()},
              "embedder": type(embedder).__name__ if embedder is not None else None,
              "embedder_model": getattr(embedder, "name", None),  # "-int8" when embedder.quantize is int8
              "settings": (settings or HeiNwSettings()).model_dump(mode="json"), "seed": seed, "results": results}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
    return report


def _measure(mem: HEIMemory, events: list[MemoryEvent], n: int, *, queries: int, k: int, seed: int) -> dict[str, Any]:
    """Recall ``queries`` random events of the first ``n`` from partial cues; latency per stage and hit@1."""
    qrng = random.Random(seed + 1)
    picks = [qrng.randrange(n) for _ in range(queries)]
    for i in picks[:10]:  # warm caches and the allocator; not measured
        mem.recall(_cue(events[i], qrng), k, namespace="bench")
    _clear_cue_cache(mem)
    mem.reset_cache_stats()
    stages: dict[str, list[float]] = {}
    hits = 0
    for i in picks:
        cue = _cue(events[i], qrng)
        r = mem.recall(cue, k, namespace="bench")
        for name, ms in r.timings_ms.items():
            stages.setdefault(name, []).append(ms)
        hits += bool(r.traces) and r.traces[0].trace.slots.get("ref") == events[i].slots["ref"]
    return {"n": n, "queries": queries, "k": k, "hit_at_1": hits / queries,
            "latency_ms": {name: _pct(v) for name, v in stages.items()}, "feature_cache": mem.cache_stats()}


def _clear_cue_cache(mem: HEIMemory) -> None:
    """Measured cues must pay for their embedding: an earlier pass over the same cues left them cached."""
    clear = getattr(mem.embedder, "clear_cache", None)
    if clear is not None:
        clear()


def _folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20 if folder.exists() else 0.0


def _rss_mb() -> float:
    """Resident set size of this process now (Linux), else its peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cue(ev: MemoryEvent, rng: random.Random) -> dict[str, Any]:
    """Half the slots (always including the ref) and a question built from them."""
    names = [k for k in ev.slots if k != "ref"]
    keep = rng.sample(names, len(names) // 2) + ["ref"]
    slots = {k: ev.slots[k] for k in keep}
    return {"text": "What happened with " + ", ".join(str(v) for v in slots.values()) + "?", "slots": slots}


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def _bar(total: int, desc: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="ev", leave=False)


def bench_shards(n: int, *, keep: Path, grow: bool = False, queries: int = 200, k: int = 5, seed: int = 0,
                 settings: HeiNwSettings | None = None, out: Path | None = None, think_ms: float = 50.0,
                 progress: bool = True) -> dict[str, Any]:
    """Shard fan-out and warm-key cache on one filled benchmark store (``hei-nw bench shards``).

    The store is the one ``bench recall --keep`` fills (``keep/bench-<n>-s<seed>``, or the grown one).
    Part 1 opens it with one graph, with time shards (four runs of n/4 writes) and with slot shards
    by ``where`` (14 values), and measures build time, shard sizes, recall latency and hit@1 on the
    same partial cues; a cue naming ``where`` searches its slot shard only. Part 2 opens it with a
    feature cache of n/5 entries, cold, and runs short conversations (a partial cue, then
    ``think_ms`` later a follow-up with the other slots), without and with prefetch, and reports cache
    hit rates and the follow-ups' latency.
    """
    folder = keep / (f"bench-grow-s{seed}" if grow else f"bench-{n}-s{seed}")
    if not (folder / "fill.json").exists():
        if grow:
            raise SystemExit(f"error: no grown store in {folder}; run bench recall --grow --keep {keep} first")
        bench_recall([n], queries=20, k=k, seed=seed, settings=settings, keep=keep, progress=progress)
    rng = random.Random(seed)
    events = [synthetic_event(rng, i) for i in range(n)]
    base = (settings or HeiNwSettings()).model_copy(deep=True)
    base.store.data_dir = folder
    base.store.url = None
    qrng = random.Random(seed + 1)
    picks = [qrng.randrange(n) for _ in range(queries)]
    cues = [_cue(events[i], qrng) for i in picks]
    variants: list[tuple[str, dict[str, Any]]] = [
        ("one graph", {"shard_by": "none"}),
        ("time shards", {"shard_by": "time", "shard_capacity": max(1, -(-n // 4))}),
        ("slot shards (where)", {"shard_by": "slot", "shard_slot": "where"}),
    ]
    embedder = None
    shard_rows: list[dict[str, Any]] = []
    for label, over in variants:
        s = base.model_copy(deep=True)
        s.index = s.index.model_copy(update=over)
        s.index.feature_cache = max(s.index.feature_cache, n + 1000)
        t0 = time.perf_counter()
        mem = HEIMemory(s, embedder=embedder)
        embedder = mem.embedder
        graph = mem._graph("bench")
        build_s = time.perf_counter() - t0
        mem.warm_features(namespace="bench")
        shards = getattr(graph, "shards", None)
        sizes = sorted((len(g) for g in shards.values()), reverse=True) if shards is not None else [len(graph)]
        for i in picks[:10]:  # warm-up on other cues; the measured cues are embedded afresh in every variant
            mem.recall(_cue(events[i], random.Random(i)), k, namespace="bench")
        _clear_cue_cache(mem)
        stages: dict[str, list[float]] = {}
        by_route: dict[str, list[float]] = {"routed": [], "fan_out": []}
        hits = routed = 0
        for i, c in zip(picks, cues, strict=True):
            r = mem.recall(c, k, namespace="bench")
            for name, ms in r.timings_ms.items():
                stages.setdefault(name, []).append(ms)
            hits += bool(r.traces) and r.traces[0].trace.slots.get("ref") == events[i].slots["ref"]
            is_routed = over["shard_by"] == "slot" and "where" in c["slots"]
            routed += is_routed
            by_route["routed" if is_routed else "fan_out"].append(r.timings_ms["total"])
        mem.close()
        row: dict[str, Any] = {"variant": label, "index": over, "n": n, "shards": len(sizes), "shard_sizes": sizes,
               "open_and_build_s": build_s, "queries": queries, "hit_at_1": hits / queries,
               "routed_share": routed / queries, "latency_ms": {name: _pct(v) for name, v in stages.items()},
               "total_ms_by_route": {kk: _pct(v) for kk, v in by_route.items() if v}}
        lat = row["latency_ms"]
        print(f"{label:<22} shards {len(sizes):>2}  open/build {build_s:7.1f} s  recall p50 {lat['total']['p50']:.2f} ms "
              f"p95 {lat['total']['p95']:.2f} ms  ann p95 {lat['ann']['p95']:.2f} ms  hit@1 {row['hit_at_1']:.3f}  "
              f"routed {row['routed_share']:.2f}" + (f" (routed p50 {row['total_ms_by_route']['routed']['p50']:.2f} ms, "
                                                     f"fan-out p50 {row['total_ms_by_route']['fan_out']['p50']:.2f} ms)"
                                                     if 0 < routed < queries else ""), flush=True)
        shard_rows.append(row)

    cache_rows: list[dict[str, Any]] = []
    convo = [(events[i], qrng) for i in picks]
    for prefetch in (False, True):
        s = base.model_copy(deep=True)
        s.index.feature_cache = max(1, n // 5)
        s.index.prefetch = prefetch
        mem = HEIMemory(s, embedder=embedder)
        mem._graph("bench")
        _clear_cue_cache(mem)
        mem.reset_cache_stats()
        first_ms: list[float] = []
        follow_ms: list[float] = []
        follow_hits = follow_looked = 0
        crng = random.Random(seed + 2)
        for ev, _r in convo:
            names = [x for x in ev.slots if x != "ref"]
            half = crng.sample(names, len(names) // 2)
            rest = [x for x in names if x not in half]
            a = {x: ev.slots[x] for x in half}
            b = {x: ev.slots[x] for x in rest}
            first_ms.append(mem.recall({"text": "What happened with " + ", ".join(map(str, a.values())) + "?", "slots": a},
                                       k, namespace="bench").timings_ms["total"])
            time.sleep(think_ms / 1000)
            before = mem.cache_stats()
            follow_ms.append(mem.recall({"text": "And what about " + ", ".join(map(str, b.values())) + "?", "slots": b},
                                        k, namespace="bench").timings_ms["total"])
            after = mem.cache_stats()
            follow_hits += int(after["hits"] - before["hits"])
            follow_looked += int(after["hits"] + after["misses"] - before["hits"] - before["misses"])
        stats = mem.cache_stats()
        mem.close()
        row = {"prefetch": prefetch, "feature_cache": s.index.feature_cache, "conversations": len(convo),
               "think_ms": think_ms, "hit_rate_all": stats["hit_rate"],
               "hit_rate_follow_up": follow_hits / follow_looked if follow_looked else 0.0,
               "prefetched": stats["prefetched"], "prefetch_use_rate": stats["prefetch_use_rate"],
               "first_ms": _pct(first_ms), "follow_up_ms": _pct(follow_ms)}
        print(f"cache {s.index.feature_cache} prefetch {'on ' if prefetch else 'off'}  hit rate all {row['hit_rate_all']:.3f}  "
              f"follow-up {row['hit_rate_follow_up']:.3f}  prefetched {stats['prefetched']:.0f} (used {row['prefetch_use_rate']:.2f})  "
              f"follow-up p50 {row['follow_up_ms']['p50']:.2f} ms p95 {row['follow_up_ms']['p95']:.2f} ms", flush=True)
        cache_rows.append(row)
    report = {"benchmark": "shards", "n": n, "store": folder.name, "seed": seed,
              "machine": {"cpus": _cpus(), "python": platform.python_version(), "platform": platform.platform()},
              "shards": shard_rows, "cache": cache_rows}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
    return report

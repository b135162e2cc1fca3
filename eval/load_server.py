"""Load test of the HEI-NW server: requests/s and p50/p95 latency at 1, 4 and 16 concurrent clients.

Run: ``python eval/load_server.py [--out reports/server_load.json]``.

Two workloads, each at every concurrency level, with a fixed number of requests
(so a run is bounded in time and load): memory recall (``POST /v1/memory/recall``
over a namespace seeded with ``--seed-events`` episodes) and chat completions
(``POST /v1/chat/completions`` in mode B1, ``--max-tokens`` tokens each, so the
time includes recall, the memory prefix and generation on vLLM). By default the
script starts its own server (SQLite store, embedded model, vLLM from
.venv-vllm) in a temporary folder; ``--base-url`` attaches to one instead, which
must be on loopback. Latencies are wall-clock ms per request as a client sees
them; the JSON records the CPU count and load average so noisy runs are visible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
FACTS = [
    "{who} keeps the spare key for locker {n} in the blue toolbox.",
    "{who} moved meeting number {n} to Thursday afternoon.",
    "{who} ordered {n} boxes of printer paper for the studio.",
    "{who}'s parcel number {n} is waiting at the front desk.",
]
NAMES = ["Priya", "Marco", "Lena", "Ines", "Tomas", "Yuki", "Amara", "Oskar"]


@dataclass
class LevelResult:
    """One workload at one concurrency level."""

    workload: str
    concurrency: int
    requests: int
    errors: int
    wall_s: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    mean_ms: float
    status_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class LoadReport:
    base_url: str
    started_server: bool
    model: str
    chat_max_tokens: int
    seed_events: int
    cpu_count: int
    loadavg_before: list[float]
    loadavg_after: list[float]
    results: list[LevelResult]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


async def run_level(client: httpx.AsyncClient, workload: str, concurrency: int, total: int,
                    make_request: Any) -> LevelResult:
    """``total`` requests spread over ``concurrency`` workers; each worker sends one at a time."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < total:
            i = next_i
            next_i += 1
            method, path, body = make_request(i)
            t = time.perf_counter()
            try:
                r = await client.request(method, path, json=body)
                code = str(r.status_code)
            except httpx.HTTPError as err:
                code = type(err).__name__
            if code == "200":
                latencies.append((time.perf_counter() - t) * 1000)
            statuses[code] = statuses.get(code, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    ok = statuses.get("200", 0)
    return LevelResult(workload=workload, concurrency=concurrency, requests=total, errors=total - ok, wall_s=round(wall, 3),
                       requests_per_s=round(ok / wall, 3) if wall else 0.0, p50_ms=round(_pct(latencies, 0.5), 2),
                       p95_ms=round(_pct(latencies, 0.95), 2),
                       mean_ms=round(statistics.fmean(latencies), 2) if latencies else float("nan"), status_counts=statuses)


async def run(base_url: str, api_key: str, model: str, *, levels: list[int], recall_requests: int, chat_requests: int,
              max_tokens: int, seed_events: int) -> list[LevelResult]:
    headers = {"Authorization": f"Bearer {api_key}", "X-HEI-User": "load"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600.0,
                                 limits=httpx.Limits(max_connections=max(levels) + 4)) as client:
        events = [{"text": FACTS[i % len(FACTS)].format(who=NAMES[i % len(NAMES)], n=i), "slots": {"who": NAMES[i % len(NAMES)]},
                   "pin": True} for i in range(seed_events)]
        for start in range(0, len(events), 100):
            r = await client.post("/v1/memory/write", json={"events": events[start:start + 100]})
            r.raise_for_status()

        def recall(i: int) -> tuple[str, str, dict[str, Any]]:
            who = NAMES[i % len(NAMES)]
            return "POST", "/v1/memory/recall", {"cue": f"Where does {who} keep the spare key for locker {i % 50}?", "k": 5}

        def chat(i: int) -> tuple[str, str, dict[str, Any]]:
            who = NAMES[i % len(NAMES)]
            return "POST", "/v1/chat/completions", {
                "model": model, "max_tokens": max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": f"Where is {who}'s parcel number {i % 50}?"}],
                "hei_mode": "B1"}

        await client.post("/v1/chat/completions", json=chat(0)[2])  # warm-up: first request pays one-off costs
        results = []
        for c in levels:
            results.append(await run_level(client, "memory_recall", c, recall_requests, recall))
            print(_line(results[-1]), flush=True)
        for c in levels:
            results.append(await run_level(client, "chat_completions", c, max(chat_requests, c), chat))
            print(_line(results[-1]), flush=True)
        return results


def _line(r: LevelResult) -> str:
    return (f"{r.workload:17s} c={r.concurrency:<3d} n={r.requests:<4d} err={r.errors:<3d} "
            f"{r.requests_per_s:8.2f} req/s  p50 {r.p50_ms:9.1f} ms  p95 {r.p95_ms:9.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", help="attach to a running server (loopback only), e.g. http://127.0.0.1:8000")
    ap.add_argument("--api-key", default=os.environ.get("HEI_NW_API_KEY"), help="key for --base-url (or HEI_NW_API_KEY)")
    ap.add_argument("--model", default="hei-nw-smollm2-135m")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--recall-requests", type=int, default=200, help="recall requests per level")
    ap.add_argument("--chat-requests", type=int, default=32, help="chat requests per level (at least the level)")
    ap.add_argument("--max-tokens", type=int, default=16, help="tokens generated per chat request")
    ap.add_argument("--seed-events", type=int, default=200, help="episodes written before the recall load")
    ap.add_argument("--vllm-python", help="python of the vLLM venv when starting a server")
    ap.add_argument("--out", default="reports/server_load.json")
    args = ap.parse_args()
    if max(args.levels) > 64 or args.recall_requests > 5000 or args.chat_requests > 1000:
        raise SystemExit("refusing an unbounded run: levels <= 64, recall requests <= 5000, chat requests <= 1000")

    started = None
    base_url, api_key = args.base_url, args.api_key
    if base_url:
        if urlparse(base_url).hostname not in LOOPBACK:
            raise SystemExit(f"--base-url must be a loopback address ({', '.join(sorted(LOOPBACK))})")
        if not api_key:
            raise SystemExit("--api-key (or HEI_NW_API_KEY) is needed with --base-url")
    else:
        from server.auth import hash_key, new_api_key
        from server.launch import ServerProcess

        api_key = new_api_key()
        work = Path(tempfile.mkdtemp(prefix="hei-load-"))
        vllm: dict[str, Any] = {"served_model_name": args.model}
        if args.vllm_python:
            vllm["python"] = args.vllm_python
        started = ServerProcess(work, {"api_keys": [{"tenant": "load", "hash": hash_key(api_key)}], "vllm": vllm,
                                       "limits": {"requests_per_s": 100000, "burst": 100000}}, name="load-server")
        print(f"starting a server in {work} (vLLM takes a minute or two) ...", flush=True)
        started.start()
        base_url = started.base_url
    before = list(os.getloadavg())
    try:
        results = asyncio.run(run(base_url, api_key, args.model, levels=args.levels, recall_requests=args.recall_requests,
                                  chat_requests=args.chat_requests, max_tokens=args.max_tokens, seed_events=args.seed_events))
    finally:
        if started is not None:
            started.stop()
    report = LoadReport(base_url=base_url, started_server=started is not None, model=args.model, chat_max_tokens=args.max_tokens,
                        seed_events=args.seed_events, cpu_count=os.cpu_count() or 0, loadavg_before=before,
                        loadavg_after=list(os.getloadavg()), results=results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

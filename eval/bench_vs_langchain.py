"""Recall latency of HEI-NW beside a plain LangChain in-memory vector store, in one run.

Run: ``python eval/bench_vs_langchain.py --n 100000 [--config FILE] [--out reports/bench_vs_langchain.json]``.

Both sides hold the same N synthetic episodes of ``hei-nw bench recall`` and answer the same
partial cues, embedded by the same MiniLM (HEI-NW's embedder behind LangChain's ``Embeddings``):

* **HEI-NW**: :func:`hei_nw_plugin.bench.bench_recall` itself (fill through the gate, then every
  recall feature on; latency from the cue's text to the packed memory).
* **LangChain**: ``langchain_core.vectorstores.InMemoryVectorStore`` with the episodes' sentences
  (slots in the metadata), ``similarity_search(cue text, k)``; latency from the cue's text to the
  k documents. Its search is exact (cosine against every stored vector), so it is slow at scale
  and its hit@1 is an upper bound for a dense-only retriever on these cues; fewer queries are
  timed on it (``--lc-queries``) because each one costs seconds at 100k.

Prints both p95s and their ratio (HEI-NW / LangChain) and writes the JSON. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from hei_nw_eval.baselines import RagStore

from hei_nw_plugin.bench import _cue, _pct, bench_recall, synthetic_event
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import embedder_from_settings


def _cues(events: list[Any], n: int, queries: int, seed: int) -> list[tuple[int, dict[str, Any]]]:
    """The measured (event index, cue) pairs of bench_recall's ``_measure``, drawn in its order."""
    qrng = random.Random(seed + 1)
    picks = [qrng.randrange(n) for _ in range(queries)]
    for i in picks[:10]:  # its warm-up cues use the generator first
        _cue(events[i], qrng)
    return [(i, _cue(events[i], qrng)) for i in picks]


def langchain_side(settings: HeiNwSettings, events: list[Any], cues: list[tuple[int, dict[str, Any]]], *, k: int,
                   progress: bool = True) -> dict[str, Any]:
    # The RAG baseline's store: LangChain's InMemoryVectorStore over the same embedder.
    store = RagStore(embedder_from_settings(settings.embedder, cache=False)).store
    t0 = time.perf_counter()
    step = 4096
    for start in range(0, len(events), step):
        part = events[start:start + step]
        store.add_texts([e.text for e in part], metadatas=[{"ref": e.slots["ref"]} for e in part])
        if progress:
            print(f"  langchain: {start + len(part)}/{len(events)} added", flush=True)
    fill_s = time.perf_counter() - t0
    for _, cue in cues[:3]:  # warm-up, not measured
        store.similarity_search(cue["text"], k=k)
    lat, hits = [], 0
    for i, cue in cues:
        t = time.perf_counter()
        docs = store.similarity_search(cue["text"], k=k)
        lat.append((time.perf_counter() - t) * 1000)
        hits += bool(docs) and docs[0].metadata.get("ref") == events[i].slots["ref"]
    return {"store": "langchain_core InMemoryVectorStore", "queries": len(cues), "k": k,
            "latency_ms": _pct(lat), "hit_at_1": hits / len(cues), "fill_seconds": fill_s,
            "writes_per_s": len(events) / fill_s}


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100000)
    p.add_argument("--queries", type=int, default=200, help="HEI-NW recalls timed (as bench recall)")
    p.add_argument("--lc-queries", type=int, default=50, help="LangChain searches timed (the first of the same cues)")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, help="HEI-NW settings file (both sides use its embedder)")
    p.add_argument("--out", default="reports/bench_vs_langchain.json")
    args = p.parse_args(argv)
    settings = HeiNwSettings.from_file(args.config) if args.config else HeiNwSettings.build()
    ours = bench_recall([args.n], queries=args.queries, k=args.k, seed=args.seed, settings=settings)["results"][0]
    rng = random.Random(args.seed)
    events = [synthetic_event(rng, i) for i in range(args.n)]
    cues = _cues(events, args.n, args.queries, args.seed)[: args.lc_queries]
    theirs = langchain_side(settings, events, cues, k=args.k)
    ratio = ours["latency_ms"]["total"]["p95"] / theirs["latency_ms"]["p95"]
    print(f"N={args.n}: HEI-NW recall p95 {ours['latency_ms']['total']['p95']:.2f} ms (hit@1 {ours['hit_at_1']:.3f}, "
          f"{args.queries} cues) / LangChain InMemoryVectorStore p95 {theirs['latency_ms']['p95']:.2f} ms "
          f"(hit@1 {theirs['hit_at_1']:.3f}, {len(cues)} cues) = {ratio:.4f}", flush=True)
    report = {"benchmark": "recall vs LangChain InMemoryVectorStore", "n": args.n, "seed": args.seed,
              "embedder": settings.embedder.model_dump(mode="json"), "hei_nw": ours, "langchain": theirs,
              "p95_ratio_hei_nw_over_langchain": ratio, "cpus": len(os.sched_getaffinity(0)),
              "load_1min": os.getloadavg()[0], "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

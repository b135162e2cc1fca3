"""Benchmark: added decode latency of the Episodic Adapter, and end-to-end B1 answer latency.

Run: ``python eval/bench_adapter.py [--out reports/bench_adapter.json]``.

* Per generated token: decode time per token (prefill excluded: the time of a
  1-token generation is subtracted from an N-token one) with the adapter reading
  0, 32 and 128 memory tokens, minus the same without the adapter. At 0 memory
  tokens the adapter is skipped, so its added latency should be ~0. The one-off
  cost of encoding the memory (the base model up to the adapter's layer) is
  reported separately.
* End to end: ``generate_answer`` in B0 and in B1 on every memory route, with
  real recall from an ``HEIMemory`` holding 50 episodes (the gate decides writes).

Timings are wall-clock medians in ms on whatever CPU runs this; the JSON records
the thread count and load average so noisy runs are visible.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.model.prompting import answer_messages
from hei_nw_plugin.model.train_data import generate_rows
from hei_nw_plugin.wrapper import HeiNwForCausalLM


@dataclass
class TokenLatency:
    """Decode latency per generated token at one memory size (ms)."""

    mem_tokens: int
    base_ms_per_token: float
    adapter_ms_per_token: float
    added_ms_per_token: float
    encode_memory_ms: float


@dataclass
class AnswerLatency:
    """End-to-end latency of one answer (median ms over the questions)."""

    mode: str
    route: str | None
    total_ms: float
    recall_ms: float
    generate_ms: float
    new_tokens: float


@dataclass
class BenchReport:
    per_token: list[TokenLatency] = field(default_factory=list)
    answers: list[AnswerLatency] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)


def _memory_text(lm: HeiNwForCausalLM, n_tokens: int) -> str:
    rows = generate_rows(40, seed=7, max_facts=6)
    text = "\n".join(r.memory for r in rows)
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens]
    return str(lm.tokenizer.decode(ids))


def _decode_ms(lm: HeiNwForCausalLM, enc: dict[str, torch.Tensor], state: Any, n: int, repeats: int) -> float:
    """Median ms per decoded token: (t(n tokens) − t(1 token)) / (n − 1)."""

    def run(k: int) -> float:
        t = time.perf_counter()
        with torch.inference_mode(), lm.base_only(), lm.hook.memory(state):  # type: ignore[union-attr]
            lm.model.generate(**enc, max_new_tokens=k, min_new_tokens=k, do_sample=False,
                              pad_token_id=lm.tokenizer.pad_token_id)
        return (time.perf_counter() - t) * 1000

    per = []
    for _ in range(repeats):
        per.append((run(n) - run(1)) / (n - 1))
    return statistics.median(per)


def bench_per_token(lm: HeiNwForCausalLM, *, n: int, repeats: int) -> list[TokenLatency]:
    assert lm.hook is not None, "the adapter must be loaded"
    enc = dict(lm.tokenizer.apply_chat_template(
        answer_messages("Where does Nadia keep the spare key?", "(attached)"),
        add_generation_prompt=True, return_tensors="pt", return_dict=True))
    out = []
    base = _decode_ms(lm, enc, None, n, repeats)
    for m in (0, 32, 128):
        text = _memory_text(lm, m) if m else ""
        t = time.perf_counter()
        state = lm.hook.encode_memory(lm.tokenizer, [text])
        enc_ms = (time.perf_counter() - t) * 1000
        got = int(state.mask.sum())
        with_adapter = _decode_ms(lm, enc, state, n, repeats)
        out.append(TokenLatency(got, round(base, 3), round(with_adapter, 3), round(with_adapter - base, 3), round(enc_ms, 2)))
        print(f"mem {got:4d} tokens: base {base:.2f} ms/token, adapter {with_adapter:.2f} ms/token, "
              f"added {with_adapter - base:+.2f} ms/token, memory encoding {enc_ms:.1f} ms", flush=True)
    return out


def bench_answers(lm: HeiNwForCausalLM, *, questions: int) -> list[AnswerLatency]:
    rows = generate_rows(50 + questions, seed=11, max_facts=1)
    out = []
    with tempfile.TemporaryDirectory() as tmp, HEIMemory(HeiNwSettings.build(store={"data_dir": tmp})) as mem:
        lm.memory = mem
        for r in rows[:50]:
            mem.write(r.memory.split("] ", 1)[1], namespace="bench")
        asked = [r.question for r in rows[:questions]]
        for mode, route in (("B0", None), ("B1", "prefix"), ("B1", "adapter"), ("B1", "both")):
            lm.mode = mode
            if route:
                lm.route = route
            got = [lm.generate_answer(q, namespace="bench") for q in asked]
            res = AnswerLatency(
                mode=mode, route=route,
                total_ms=round(statistics.median(a.timings_ms["total"] for a in got), 1),
                recall_ms=round(statistics.median(a.timings_ms.get("recall", 0.0) for a in got), 1),
                generate_ms=round(statistics.median(a.timings_ms["generate"] for a in got), 1),
                new_tokens=statistics.mean(a.new_tokens for a in got),
            )
            out.append(res)
            print(f"{mode} {route or '-':8s} total {res.total_ms:.0f} ms (recall {res.recall_ms:.0f}, "
                  f"generate {res.generate_ms:.0f}) {res.new_tokens:.1f} new tokens", flush=True)
        lm.memory = None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench_adapter.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32, help="Decoded tokens per timing run.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--questions", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lm = HeiNwForCausalLM.from_settings(HeiNwSettings(), mode="B1")
    report = BenchReport(settings={**vars(args), "out": str(args.out), "cpu_count": os.cpu_count(),
                                   "loadavg_start": os.getloadavg()})
    report.per_token = bench_per_token(lm, n=args.tokens, repeats=args.repeats)
    report.answers = bench_answers(lm, questions=args.questions)
    report.settings["loadavg_end"] = os.getloadavg()
    report.generation = lm.generation_record()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

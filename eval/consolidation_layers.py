"""Which decoder layers the consolidation LoRA should touch: the same stories trained with LoRA from
different depths, side by side in one run.

    python eval/consolidation_layers.py --depths 0,0.2667,0.5,0.7333 --out reports/consolidation/layers.json

Eight invented stories (who / action / what / where / when, names that no eval split uses), their
Cue→Answer rows in the three wordings of a consolidation, the shipped KL to the base model, and a
fixed 30 steps per depth (no early stop), so every depth gets the same optimizer budget. Printed
and written per depth: training seconds, the share of plain and of paraphrased questions answered
exactly afterwards (teacher forcing = greedy), and the drift guard's base-task points and held-text
perplexity. One model load; each depth starts from the base model again.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WHO = ["Talia", "Orrin", "Mireth", "Quill", "Bexley", "Sorrel", "Jovan", "Ysolde"]
ACTION = ["hid", "painted", "repaired", "sold", "buried", "found", "carried", "dropped"]
WHAT = ["copper kettle", "silk map", "glass owl", "brass compass", "linen scroll", "clay flute", "iron key", "jade comb"]
WHERE = ["boathouse", "orchard", "bell tower", "cellar", "greenhouse", "ferry dock", "quarry", "attic"]
WHEN = ["Tuesday morning", "Friday night", "Sunday noon", "Monday evening", "Thursday dawn", "Saturday afternoon",
        "Wednesday night", "Sunday morning"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", default="0,0.2667,0.5,0.7333", help="lora_from_depth values, comma-separated")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("reports/consolidation/layers.json"))
    args = p.parse_args()

    import torch

    from hei_nw_plugin import consolidation_train as ct
    from hei_nw_plugin.config import ModelSettings
    from hei_nw_plugin.consolidation_config import ConsolidationConfig
    from hei_nw_plugin.consolidation_rows import build_rows, kl_rows
    from hei_nw_plugin.drift import DriftGuard, base_answer, general_prompts
    from hei_nw_plugin.model.loading import load_base_model
    from hei_nw_plugin.model.prompting import DEFAULT_ONE_SHOT
    from hei_nw_plugin.types import SourcePointer, Trace

    torch.set_num_threads(args.threads)
    lm = load_base_model(ModelSettings())
    model, tok = lm.model, lm.tokenizer
    for prm in model.parameters():
        prm.requires_grad_(False)
    now = datetime.now(UTC)
    traces = [Trace(id=f"t{i}", namespace="default", text="", source=SourcePointer(), created_at=now, pinned=False,
                    gate_score=1.0, slots={"who": WHO[i], "action": ACTION[i], "what": WHAT[i], "where": WHERE[i],
                                           "when": WHEN[i]}) for i in range(len(WHO))]
    rows = build_rows(traces, one_shot=DEFAULT_ONE_SHOT, lm_rows=False)
    questions, texts = general_prompts()
    distill = kl_rows([(q, base_answer(model, tok, q)) for q in questions], texts, one_shots=[DEFAULT_ONE_SHOT, None])
    guard = DriftGuard()
    base = guard.score(model, tok)
    plain = [ct.encode_row(tok, r) for r in rows if r.checked]
    para = [ct.encode_row(tok, r) for r in rows if not r.checked]
    results = []
    for depth in (float(d) for d in args.depths.split(",")):
        cfg = ConsolidationConfig(lora_from_depth=depth, max_steps=args.steps, epochs=1000, stop_train_em=1.01)
        t = time.perf_counter()
        run = ct.train_lora(model, tok, rows, cfg, init_from=None, checkpoint=args.out.parent / ".layers-checkpoint",
                            plan={}, resume=None, kl_rows=distill, progress=False)
        seconds = time.perf_counter() - t
        score = guard.score(run.model, tok)
        layers = model.config.num_hidden_layers
        point = {
            "lora_from_depth": depth, "first_layer": min(layers - 1, round(depth * layers)), "layers": layers,
            "steps": run.steps_done, "train_seconds": round(seconds, 1),
            "plain_em": round(sum(ct.exact_rows(run.model, tok, plain, "cpu")) / len(plain), 3),
            "paraphrase_em": round(sum(ct.exact_rows(run.model, tok, para, "cpu")) / len(para), 3),
            "base_task_points": round(score.accuracy, 3), "points_change": round(score.accuracy - base.accuracy, 3),
            "perplexity": round(score.perplexity, 3),
            "perplexity_change": round(score.perplexity / base.perplexity - 1, 4),
        }
        print(json.dumps(point), flush=True)
        results.append(point)
        run.model.unload()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"stories": len(traces), "rows": len(rows), "plain_questions": len(plain),
                                    "base": {"points": round(base.accuracy, 3), "perplexity": round(base.perplexity, 3)},
                                    "threads": args.threads, "results": results}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

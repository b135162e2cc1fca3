"""The reader's abstention rule re-scored at other thresholds, from one run's per-question records.

    HEI_NW_MODEL__READER_ABSTAIN_MIN=1 hei-nw eval --dataset locomo:../shared/datasets/locomo/locomo_dev5.json \\
        --n 1000 --mode B1 --max-new-tokens 24 --out /tmp/never
    python eval/abstain_sweep.py /tmp/never/*B1*.items.jsonl --out reports/full/abstention/threshold_sweep.json

At ``model.reader_abstain_min`` = 1 the abstention reply is always forbidden, so each record holds
the reader's best other answer, the abstention reply's probability at the first answer token and
whether it was the top choice there. Greedy decoding makes the rest exact: at threshold t the reader
abstains on a question exactly when that probability is >= t and the reply was the top choice;
otherwise it gives the recorded answer. Printed per threshold and file: LoCoMo F1 on categories 1-4,
the share of category 5 abstained on and of categories 1-4 abstained on, or bAbI EM, each with a
95% bootstrap CI; for LoCoMo also the AUC of that probability as a detector of category 5 (0.5: no
better than chance).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hei_nw_eval import metrics as M

from hei_nw_plugin.model.prompting import ABSTAIN


def rescore(items: list[dict], threshold: float) -> dict[str, list[float]]:
    """Per-question scores at ``threshold``: 'f1' (categories 1-4), 'cat5' and 'abstain14' for LoCoMo, 'em' otherwise."""
    out: dict[str, list[float]] = {"f1": [], "cat5": [], "abstain14": [], "em": []}
    for it in items:
        if it.get("abstain_p") is None:
            raise SystemExit(f"{it['id']}: no abstain_p; run the eval with this version and the reader on")
        abstains = it["abstain_p"] >= threshold and bool(it["abstain_top"])
        prediction = ABSTAIN if abstains else it["prediction"]
        cat = it.get("category")
        if cat is not None and str(cat).isdigit():
            if int(cat) == 5:
                out["cat5"].append(float(M.is_abstention(prediction)))
            else:
                out["f1"].append(M.locomo_score(prediction, it["golds"][0], int(cat)))
                out["abstain14"].append(float(M.is_abstention(prediction)))
        else:
            out["em"].append(M.exact_match(prediction, it["golds"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", nargs="+", type=Path, help="<run>.items.jsonl measured with reader_abstain_min = 1")
    p.add_argument("--thresholds", default="0.05,0.1,0.2,0.3,0.35,0.4,0.45,0.5,0.6,0.7,1.0")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    table: dict[str, dict[str, dict[str, list[float | None]]]] = {}
    for path in args.items:
        items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        table[path.name] = {}
        print(f"{path.name} ({len(items)} questions)")
        pos = [it["abstain_p"] for it in items if str(it.get("category")) == "5"]
        neg = [it["abstain_p"] for it in items if str(it.get("category")) in ("1", "2", "3", "4")]
        if pos and neg:
            auc = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))
            table[path.name]["auc_category5"] = {"value": [auc]}
            print(f"  AUC of the abstention probability for category 5 vs 1-4: {auc:.3f}")
        for t in thresholds:
            scores = rescore(items, t)
            row = {k: [e.value, e.low, e.high] for k, v in scores.items() if v for e in [M.bootstrap_ci(v, seed=0)]}
            table[path.name][str(t)] = row
            shown = "  ".join(f"{k} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for k, v in row.items())
            print(f"  t={t:<5} {shown}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "sources": [str(p) for p in args.items],
                  "command": " ".join(sys.argv), "columns": "value, CI low, CI high", "thresholds": table}
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

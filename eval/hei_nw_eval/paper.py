"""``paper/hei_nw_results.md``: a research-style write-up generated from the run records alone.

Method and datasets are fixed text (they describe the code); every number comes from the JSON
records in the report folders given (evidence recall, ablations, answers with a model,
consolidation, scale), each table citing the folder it was read from. A folder that is missing
or empty is named as not run rather than filled with old figures.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from hei_nw_eval.records import MetricValue, RunRecord
from hei_nw_eval.report import mode_label

RECALL_COLUMNS = ("recall@1", "recall@5", "recall@10", "all@5", "mrr")
ANSWER_COLUMNS = ("em", "f1", "locomo_f1_cat1-4", "locomo_f1_cat5", "prompt_tokens", "latency_p50")

METHOD = """## Method

HEI-NW is an episodic memory for LLM agents. A **write gate** scores each event,
S = α·surprise + β·novelty + γ·reward + δ·pin (surprise: the language model's token NLL, or a
unigram proxy without one); events at or above τ are kept *salient*, the others *cold* (ranked a
little lower, evicted first, never consolidated). Each kept event is stored encrypted (AES-256-GCM,
a data key per trace) with a signed, hash-chained provenance record. Its **dentate-gyrus key** is
a k-winners-take-all code (k = 64 of D = 2048) of a fixed random expansion of its sentence
embedding (all-MiniLM-L6-v2) and hashed slots, indexed per namespace in a USearch HNSW graph;
its stemmed terms go into a per-namespace BM25 index.

**Recall** from a partial cue takes candidates from both indexes, ranks them in dense feature space
with one step of modern Hopfield completion (β = 16), adds the cue's BM25 score normalised by the
best one (weight 0.5), lets the newest of several *versions* win (traces sharing a term the cue asks
about and saying the same kind of thing about it, feature cosine ≥ 0.6, or ≥ 0.45 with a second
shared term, each with at most 12 distinct terms), and, when the cue names no entity but its best
trace does, makes a second hop from that entity. The best k traces are packed into numbered, dated
memory lines for the model (SmolLM2-135M-Instruct, in the prompt and/or through a cross-attention
Episodic Adapter, with a small memory-reader LoRA). Consolidation replays salient traces into a
LoRA under a drift guard (modes B2/B3).

All recall parameters were chosen on the dev data only (LoCoMo's 5 dev conversations and bAbI
tasks 1-3, test split) and are the shipped defaults; generated scenarios A-E are a regression check.
"""

DATASETS = """## Data and metrics

- **LoCoMo** (5 conversations, 999 questions; CC BY-NC 4.0): one episode per dialogue turn, dated by
  its session. Evidence: the questions' `evidence` dialogue ids. Categories 1 multi-hop, 2 temporal,
  3 open-domain, 4 single-hop are reported together; 5 (adversarial) apart. Answers: token F1 with
  LoCoMo's own normalisation.
- **bAbI** tasks 1-3 (1,000 questions each; CC BY 3.0): one episode per story line, questions asked
  mid-story over the lines before them. Evidence: the supporting-fact lines. Answers: exact match.
- **Scenarios A-E**: generated (full-cue facts, updates, preference lag, a 1k-episode shared store,
  long chatty transcripts), with gold evidence traces.
- **Evidence recall@k**: the share of a question's evidence ids among the top k returned;
  **all@k**: 1 when every evidence id is in the top k (bAbI's two- and three-fact questions); MRR.
  Intervals are 95% percentile bootstraps over questions; differences are paired bootstraps over
  the same questions.
- Baselines, same embedder, same process: **RAG**, a LangChain `InMemoryVectorStore` with one
  document per turn; **BM25**, `bm25s` over the turns seen so far (English stopwords, Porter stems);
  **long context**, the whole transcript in the model's window.
"""

LIMITATIONS = """## Limitations

- The language model is a 135M-parameter model on CPU; answer quality is bounded by it far more
  than by recall (compare evidence recall with answer F1 above).
- The dev data is also the only real data tuned on; the defaults are fixed, and held-out
  conversations and bAbI tasks are checked by others, not reported here.
- The gate's surprise in the retrieval runs is the unigram proxy (no model attached); with a model
  attached salient/cold decisions differ, but both tiers are stored and searched.
- Text versions rely on a similarity threshold of one embedder (MiniLM); another embedder needs the
  thresholds re-chosen on its own dev data.
"""


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies under it (the write-up names repository paths)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _cell(m: MetricValue | None) -> str:
    if m is None or m.value is None:
        return "–"
    if m.unit in ("ms", "tokens"):
        return f"{m.value:.0f}"
    ci = f" [{m.low:.3f}, {m.high:.3f}]" if m.low is not None and m.high is not None else ""
    return f"{m.value:.3f}{ci}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *["| " + " | ".join(r) + " |" for r in rows]]


def _records(folder: Path) -> list[RunRecord]:
    """Run records found anywhere under ``folder`` (other JSON files, such as curves or guard data, are skipped)."""
    out = []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        try:
            out.append(RunRecord.model_validate_json(path.read_text(encoding="utf-8")))
        except ValueError:
            continue
    return sorted(out, key=lambda r: (r.task, r.condition or "", r.mode, r.run_id))


def recall_section(folder: Path) -> list[str]:
    """Evidence recall per task and system, HEI-NW's paired differences, and the ablations."""
    runs = [r for r in _records(folder) if r.task.startswith("recall:")]
    out = ["## Results: evidence recall", ""]
    if not runs:
        return out + [f"Not run: no records in `{_shown(folder)}`.", ""]
    out += [f"Records: `{_shown(folder)}` (`hei-nw eval --mode retrieval --suite dev --out {_shown(folder)}`).", ""]
    by_task: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        by_task[r.task.removeprefix("recall:")].append(r)
    rows, diffs = [], []
    for task, recs in by_task.items():
        for r in sorted(recs, key=lambda x: ("hei-nw", "rag", "bm25").index(x.mode) if x.mode in ("hei-nw", "rag", "bm25") else 9):
            rows.append([task, r.mode, str(r.n_items), *[_cell(r.metrics.get(c)) for c in RECALL_COLUMNS]])
            for c in r.comparisons:
                if c.metric in ("recall@1", "recall@5"):
                    d = c.diff
                    diffs.append([task, f"{c.metric}: {c.mode} − {c.baseline}",
                                  f"{d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}]" if d.value is not None and d.low is not None
                                  and d.high is not None else "–", "yes" if c.excludes_zero else "no"])
    out += _table(["task", "system", "questions", *RECALL_COLUMNS], rows) + [""]
    out += ["Paired differences (95% bootstrap CI):", ""]
    out += _table(["task", "difference", "value [CI]", "CI excludes 0"], diffs) + [""]
    ablations = folder / "ablations.json"
    if ablations.is_file():
        result = json.loads(ablations.read_text(encoding="utf-8"))
        from hei_nw_eval.recall_ablations import ablation_table

        out += ["### Ablations (HEI-NW alone, one setting changed; difference to the defaults, paired)", "",
                f"`{_shown(ablations)}` (`hei-nw eval --mode retrieval --suite dev --ablations --out {_shown(folder)}`):", "",
                ablation_table(result), ""]
    return out


def answers_section(folder: Path, title: str) -> list[str]:
    """Answer quality per task and mode (EM/F1, LoCoMo F1 by category, cost)."""
    runs = [r for r in _records(folder) if not r.task.startswith("recall:")]
    out = [f"## Results: {title}", ""]
    if not runs:
        return out + [f"Not run: no records in `{_shown(folder)}`.", ""]
    out += [f"Records: `{_shown(folder)}`; each record names its command options in its `config`.", ""]
    rows = []
    for r in runs:
        cols = [_cell(r.metrics.get(c)) for c in ANSWER_COLUMNS]
        rows.append([r.task, r.condition or "", mode_label(r), str(r.n_items), *cols])
    out += _table(["task", "condition", "mode", "n", *ANSWER_COLUMNS], rows) + [""]
    diffs = [[r.task, f"{c.metric}: {mode_label(r) if c.mode == r.mode else c.mode} − {c.baseline}",
              f"{c.diff.value:+.3f} [{c.diff.low:+.3f}, {c.diff.high:+.3f}]" if c.diff.value is not None and
              c.diff.low is not None and c.diff.high is not None else "–", "yes" if c.excludes_zero else "no"]
             for r in runs for c in r.comparisons]
    if diffs:
        out += ["Paired differences:", ""] + _table(["task", "difference", "value [CI]", "CI excludes 0"], diffs) + [""]
    return out


def bench_section(path: Path, title: str) -> list[str]:
    """Recall latency per store size from a ``bench recall`` / ``reliability scale`` JSON, or 'not run'."""
    out = [f"## {title}", ""]
    if not path.is_file():
        return out + [f"Not run: `{_shown(path)}` is missing.", ""]
    data: Any = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for r in data.get("results", []):
        lat = r.get("latency_ms", {})
        rows.append([f"{r['n']:,}", *[f"{lat.get(s, {}).get('p95', float('nan')):.2f}"
                                      for s in ("total", "embed", "ann", "fetch", "hopfield")], f"{r.get('hit_at_1', 0):.3f}"])
    return out + [f"`{_shown(path)}` (p95, ms):", ""] + _table(["traces", "total", "embed", "ann", "fetch", "hopfield", "hit@1"], rows) + [""]


def build_paper(*, retrieval: Path, answers: Path, consolidation: Path, reliability: Path, out: Path,
                routes: Path | None = None, latency: Path | None = None) -> Path:
    """Write the write-up to ``out`` from the given report folders; returns the path.

    ``routes``: a folder of scenario A runs per memory route and reader (its own section);
    ``latency``: a ``bench recall`` JSON (default ``reliability/scale.json``)."""
    parts = ["# HEI-NW: hippocampus-inspired episodic memory for LLM agents — results", "",
             "Generated by `hei-nw reproduce` from the JSON records under `reports/`; do not edit by hand.", "",
             METHOD, DATASETS]
    parts += recall_section(retrieval)
    parts += answers_section(answers, "answers with the embedded 135M model")
    if routes is not None:
        parts += answers_section(routes, "scenario A by memory route and reader")
    parts += answers_section(consolidation, "consolidation (B2/B3)")
    parts += bench_section(latency or reliability / "scale.json", "Recall latency by store size")
    parts.append(LIMITATIONS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts).rstrip() + "\n", encoding="utf-8")
    return out

"""Drift guard: a fixed set of general questions the base model answers, scored before and after consolidation.

The set (``data/base_tasks.json``) was built offline, never from memory: the
239 candidates in ``data/base_task_candidates.json`` (capitals, colours,
counts, opposites, languages …) were asked once to the base model
(SmolLM2-135M-Instruct, greedy, the eval's one-shot answer template with empty
memory) by :func:`select_base_tasks` (``python -m hei_nw_plugin.drift``), and
those it answered exactly right were kept: 25 of 239 on the H100 run that made
the committed file (the template makes the 135M model copy spans of the
question, e.g. "capital of france", so most candidates fail). The file records
the model hash, device and command. The guard always re-scores the base model
on the machine in use as its reference, so a greedy answer that flips between
CPU and GPU numerics cannot show up as drift.

EM here is a count of questions (exact match after SQuAD-style normalisation:
lower case, no punctuation or articles). The issue's "drops by more than 1 EM"
is read as more than 1 question: :class:`DriftGuard` rejects a new adapter
that answers more than ``max_drop`` (default 1) questions fewer than the base
model; at n=25 one question is 4 EM points on a 0-100 scale.

The candidates outside the drift set are the pool for the worker's anchor
(prior-preservation) rows, with their reference answers, see :func:`anchor_pairs`.
(The base model's own answers were used first; since the drift set already holds
every candidate it answers right, those were all wrong answers, "capital of
france" or the one-shot's "cold cellar", and rehearsing them taught the very
question-copying that broke the drift set: 25/25 -> 11/25 with 128 such anchors,
-> 4/25 with all 214, on this CPU, `reports/consolidation/README.md`.)
"""

from __future__ import annotations

import json
import re
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
BASE_TASKS = DATA_DIR / "base_tasks.json"
CANDIDATES = DATA_DIR / "base_task_candidates.json"

Answerer = Callable[[str], str]
"""question -> short answer (already cleaned), e.g. :func:`model_answerer`."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize(text: str) -> str:
    """Lower case, no punctuation or articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> bool:
    pred = normalize(prediction)
    return any(pred == normalize(a) for a in answers)


@dataclass(frozen=True)
class BaseTask:
    question: str
    answers: list[str]


def load_base_tasks(path: Path = BASE_TASKS) -> list[BaseTask]:
    """The committed base-task set (see the module docstring)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = data["tasks"] if isinstance(data, dict) else data
    return [BaseTask(question=r["question"], answers=list(r["answers"])) for r in rows]


def anchor_pairs(n: int, *, exclude: Sequence[BaseTask] | None = None) -> list[tuple[str, str]]:
    """Up to ``n`` (question, reference answer) candidates that are not in the drift set (prior-preservation rows)."""
    held_out = {normalize(t.question) for t in (exclude if exclude is not None else load_base_tasks())}
    return [(t.question, t.answers[0]) for t in load_base_tasks(CANDIDATES)
            if normalize(t.question) not in held_out and t.answers][:n]


@dataclass
class DriftScore:
    """Base-task result of one model state: correct answers out of ``n``."""

    correct: int
    n: int
    seconds: float
    wrong: list[str] = field(default_factory=list)
    """Questions answered wrongly (for the lineage record)."""

    @property
    def em(self) -> float:
        """EM on a 0-100 scale."""
        return 100.0 * self.correct / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"em": round(self.em, 2)}


def score(answer: Answerer, tasks: Sequence[BaseTask]) -> DriftScore:
    """Ask every task once; count exact matches."""
    t0 = time.perf_counter()
    wrong = [t.question for t in tasks if not exact_match(answer(t.question), t.answers)]
    return DriftScore(correct=len(tasks) - len(wrong), n=len(tasks), seconds=round(time.perf_counter() - t0, 2), wrong=wrong)


@dataclass(frozen=True)
class DriftVerdict:
    accepted: bool
    reference: DriftScore
    candidate: DriftScore
    max_drop: int

    @property
    def change(self) -> int:
        """Candidate minus reference, in questions."""
        return self.candidate.correct - self.reference.correct

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "change_questions": self.change,
                "change_em": round(self.candidate.em - self.reference.em, 2), "max_drop_questions": self.max_drop,
                "reference": self.reference.to_dict(), "candidate": self.candidate.to_dict()}


class DriftGuard:
    """Scores a model state on the base tasks and judges a candidate against a reference."""

    def __init__(self, tasks: Sequence[BaseTask] | None = None, *, max_drop: int = 1) -> None:
        self.tasks = list(tasks) if tasks is not None else load_base_tasks()
        if max_drop < 0:
            raise ValueError("max_drop must be >= 0 (questions)")
        self.max_drop = max_drop

    def score(self, answer: Answerer) -> DriftScore:
        return score(answer, self.tasks)

    def judge(self, reference: DriftScore, candidate: DriftScore) -> DriftVerdict:
        """Accept unless the candidate answers more than ``max_drop`` questions fewer."""
        ok = reference.correct - candidate.correct <= self.max_drop
        return DriftVerdict(accepted=ok, reference=reference, candidate=candidate, max_drop=self.max_drop)


def model_answerer(model: Any, tokenizer: Any, *, max_new_tokens: int = 12) -> Answerer:
    """Greedy short answers from ``model`` (whatever LoRA is active) with the eval's one-shot template, empty memory."""
    import torch

    from hei_nw_plugin.model.prompting import answer_messages, clean_answer

    def answer(question: str) -> str:
        enc = tokenizer.apply_chat_template(answer_messages(question, ""), add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                                 top_k=None, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                 stop_strings=["\n"], tokenizer=tokenizer)
        return clean_answer(tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))

    return answer


def select_base_tasks(answer: Answerer, candidates: Sequence[BaseTask], *, n: int = 50) -> tuple[list[BaseTask], int]:
    """The first ``n`` candidates ``answer`` gets exactly right, and how many candidates were asked."""
    kept: list[BaseTask] = []
    asked = 0
    for task in candidates:
        asked += 1
        if exact_match(answer(task.question), task.answers):
            kept.append(task)
            if len(kept) == n:
                break
    return kept, asked


def main(argv: list[str] | None = None) -> None:
    """Rebuild ``data/base_tasks.json`` from the candidates with the base model (offline, once)."""
    import argparse

    import torch

    from hei_nw_plugin.config import ModelSettings
    from hei_nw_plugin.model.loading import generation_record, load_base_model

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=BASE_TASKS)
    p.add_argument("--device", default="cpu", help="torch device")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lm = load_base_model(ModelSettings())
    lm.model.to(args.device)
    candidates = load_base_tasks(CANDIDATES)
    kept, asked = select_base_tasks(model_answerer(lm.model, lm.tokenizer), candidates, n=args.n)
    rec = generation_record(lm)
    doc = {
        "about": "General questions the base model answers exactly right with the one-shot answer template "
                 "(empty memory, greedy). Built offline by `python -m hei_nw_plugin.drift` from "
                 "base_task_candidates.json; never from memory.",
        "model_id": rec["model_id"],
        "weights_sha256": rec.get("conversion", {}).get("weights_sha256"),
        "candidates_asked": asked,
        "device": args.device,
        "kept": len(kept),
        "tasks": [asdict(t) for t in kept],
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"kept {len(kept)} of {asked} candidates -> {args.out}")


if __name__ == "__main__":
    main()

"""Drift guard: does a consolidated version still behave like the base model on general tasks?

Two measurements of one model state (:meth:`DriftGuard.score`), both from
log-likelihoods, so they are deterministic and cheap (one forward pass per
option, no generation):

* **Base-task accuracy** (points, 0-100): each of the 239 general questions of
  ``data/base_task_candidates.json`` (capitals, colours, counts, opposites,
  languages …) becomes a four-way choice between its reference answer and the
  answers of three neighbouring questions of the file (same kind of question,
  so the distractors are plausible: "Rome", "Berlin", "Madrid" for the capital
  of France). The question is put in the one-shot answer template with empty
  memory, exactly as B0/B3 are asked, and the option with the highest total
  log-likelihood (answer tokens and the closing end-of-turn token) is the
  model's choice. Also recorded: the mean log-likelihood of the right answer.
* **Held-text perplexity**: general prose (``data/held_text.json``) that no
  consolidation trains on or distils from.

A candidate version is rejected when it loses more than ``max_drop`` points of
accuracy (default 1: at 239 items that is more than two questions) or its
perplexity rises by more than ``max_ppl_rise`` (default +2%). The reference is
always the base model scored on the machine in use.

None of these texts comes from memory, and none of them is in the distillation
prompts (``data/general_prompts.json``) the training loop uses.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
CANDIDATES = DATA_DIR / "base_task_candidates.json"
HELD_TEXT = DATA_DIR / "held_text.json"
GENERAL_PROMPTS = DATA_DIR / "general_prompts.json"

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
OPTIONS = 4


def normalize(text: str) -> str:
    """Lower case, no punctuation or articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


@dataclass(frozen=True)
class BaseTask:
    question: str
    answers: list[str]


@dataclass(frozen=True)
class ProbeItem:
    """One multiple-choice item: ``options[right]`` is the reference answer."""

    question: str
    options: list[str]
    right: int


def load_base_tasks(path: Path = CANDIDATES) -> list[BaseTask]:
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = data["tasks"] if isinstance(data, dict) else data
    return [BaseTask(question=r["question"], answers=list(r["answers"])) for r in rows if r["answers"]]


def probe_items(tasks: Sequence[BaseTask], *, options: int = OPTIONS) -> list[ProbeItem]:
    """Each task with the first answers of its nearest neighbours in the list as distractors (see the module docstring)."""
    items = []
    for i, task in enumerate(tasks):
        taken = {normalize(a) for a in task.answers}
        picks: list[str] = []
        for d in range(1, len(tasks)):
            for j in (i - d, i + d):
                if 0 <= j < len(tasks) and len(picks) < options - 1:
                    cand = tasks[j].answers[0]
                    if normalize(cand) not in taken:
                        taken.add(normalize(cand))
                        picks.append(cand)
            if len(picks) == options - 1:
                break
        opts = [task.answers[0], *picks]
        random.Random(i).shuffle(opts)
        items.append(ProbeItem(task.question, opts, opts.index(task.answers[0])))
    return items


def held_texts(path: Path = HELD_TEXT) -> list[str]:
    return list(json.loads(path.read_text(encoding="utf-8"))["texts"])


def general_prompts(path: Path = GENERAL_PROMPTS) -> tuple[list[str], list[str]]:
    """(questions, texts) for the training loop's distillation to the base model."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return list(data["questions"]), list(data["texts"])


@dataclass
class DriftScore:
    """Base-task accuracy (points), mean log-likelihood of the right answers and held-text perplexity of one model state."""

    accuracy: float
    n: int
    mean_ll: float
    perplexity: float
    seconds: float
    wrong: list[str] = field(default_factory=list)
    """Questions whose right answer was not the most likely option (for the lineage record)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftScore:
        return cls(**{k: d[k] for k in ("accuracy", "n", "mean_ll", "perplexity", "seconds", "wrong")})


@dataclass(frozen=True)
class DriftVerdict:
    accepted: bool
    reference: DriftScore
    candidate: DriftScore
    max_drop: float
    max_ppl_rise: float

    @property
    def change(self) -> float:
        """Candidate minus reference accuracy, in points."""
        return round(self.candidate.accuracy - self.reference.accuracy, 3)

    @property
    def ppl_change(self) -> float:
        """Relative perplexity change (0.01 = +1%)."""
        return round(self.candidate.perplexity / self.reference.perplexity - 1, 5)

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "change_points": self.change, "ppl_change": self.ppl_change,
                "change_ll": round(self.candidate.mean_ll - self.reference.mean_ll, 4),
                "max_drop_points": self.max_drop, "max_ppl_rise": self.max_ppl_rise,
                "reference": self.reference.to_dict(), "candidate": self.candidate.to_dict()}


class DriftGuard:
    """Scores a model state (:meth:`score`) and judges a candidate against a reference (:meth:`judge`)."""

    def __init__(self, items: Sequence[ProbeItem] | None = None, texts: Sequence[str] | None = None, *,
                 max_drop: float = 1.0, max_ppl_rise: float = 0.02, batch: int = 64) -> None:
        if max_drop < 0 or max_ppl_rise < 0:
            raise ValueError("max_drop (points) and max_ppl_rise (relative) must be >= 0")
        self.items = list(items) if items is not None else probe_items(load_base_tasks())
        self.texts = list(texts) if texts is not None else held_texts()
        if not self.items or not self.texts:
            raise ValueError("the drift guard needs at least one item and one held text")
        self.max_drop, self.max_ppl_rise, self.batch = max_drop, max_ppl_rise, batch

    @property
    def signature(self) -> str:
        """Identifies the probe (items and texts), so a cached reference score is reused only for the same probe."""
        import hashlib

        blob = json.dumps([[asdict(i) for i in self.items], self.texts], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def score(self, model: Any, tokenizer: Any) -> DriftScore:
        """Accuracy, mean right-answer log-likelihood and held-text perplexity of ``model`` (whatever LoRA is active)."""
        import torch

        from hei_nw_plugin.consolidation_rows import TrainingRow
        from hei_nw_plugin.consolidation_train import encode_row, sequence_logprobs
        from hei_nw_plugin.model.prompting import DEFAULT_ONE_SHOT

        t0 = time.perf_counter()
        device = str(next(model.parameters()).device)
        was_training = model.training
        model.eval()
        rows = [TrainingRow(kind="qa", trace_id="", namespace="", text=it.question, answer=opt, one_shot=DEFAULT_ONE_SHOT)
                for it in self.items for opt in it.options]
        with torch.no_grad():
            ll = sequence_logprobs(model, tokenizer, [encode_row(tokenizer, r) for r in rows], device, self.batch)
            text_rows = [encode_row(tokenizer, TrainingRow(kind="lm", trace_id="", namespace="", text=t)) for t in self.texts]
            text_ll = sequence_logprobs(model, tokenizer, text_rows, device, self.batch)
        model.train(was_training)
        right, wrong, k = [], [], 0
        for it in self.items:
            scores = ll[k:k + len(it.options)]
            k += len(it.options)
            right.append(scores[it.right])
            if max(range(len(scores)), key=scores.__getitem__) != it.right:
                wrong.append(it.question)
        tokens = sum(len(e.ids) - e.first for e in text_rows)
        return DriftScore(accuracy=round(100.0 * (len(self.items) - len(wrong)) / len(self.items), 3), n=len(self.items),
                          mean_ll=round(sum(right) / len(right), 4), perplexity=round(math.exp(-sum(text_ll) / tokens), 4),
                          seconds=round(time.perf_counter() - t0, 2), wrong=wrong)

    def judge(self, reference: DriftScore, candidate: DriftScore) -> DriftVerdict:
        """Accept unless accuracy drops by more than ``max_drop`` points or perplexity rises by more than ``max_ppl_rise``."""
        ok = (reference.accuracy - candidate.accuracy <= self.max_drop + 1e-9
              and candidate.perplexity <= reference.perplexity * (1 + self.max_ppl_rise))
        return DriftVerdict(accepted=ok, reference=reference, candidate=candidate, max_drop=self.max_drop,
                            max_ppl_rise=self.max_ppl_rise)


def base_answer(model: Any, tokenizer: Any, question: str, *, max_new_tokens: int = 8) -> str:
    """The model's greedy answer to ``question`` in the default answer template, empty memory (raw text, one line)."""
    import torch

    from hei_nw_plugin.model.prompting import answer_messages

    enc = tokenizer.apply_chat_template(answer_messages(question, ""), add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                             top_k=None, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return str(tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)).split("\n", 1)[0].strip()


def main(argv: list[str] | None = None) -> None:
    """Print the base model's drift-probe score (``python -m hei_nw_plugin.drift``)."""
    import argparse

    import torch

    from hei_nw_plugin.config import ModelSettings
    from hei_nw_plugin.model.loading import load_base_model

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lm = load_base_model(ModelSettings())
    lm.model.to(args.device)
    s = DriftGuard().score(lm.model, lm.tokenizer)
    print(f"base tasks {s.accuracy:.2f} points ({s.n} items, mean log-likelihood {s.mean_ll:.3f})  "
          f"held-text perplexity {s.perplexity:.3f}  ({s.seconds:.1f} s)")


if __name__ == "__main__":
    main()

"""Training rows for consolidation, built from stored traces.

Two kinds per trace:

* a language-model row: the trace text itself, loss on every token;
* Cue→Answer rows: for a trace with slots, questions asking each slot from the
  others, answered with that slot's value, in the same one-shot answer template
  (memory empty) the model is asked with in mode B3, so the consolidated model
  answers in the format it is scored in. Each slot is asked in several wordings
  (:func:`paraphrased_questions`: the plain question, the time or place moved to
  the front, "which person / thing / place / day"), so the fact is learned, not
  one sentence. Every wording names all the other slots: one with a detail left out
  could be true of a similar episode too and would teach two answers to one question.

Beside them, distillation rows (:func:`kl_rows`: general questions with the base
model's own answers, in the answer template, and general text; none from memory and
none from the drift probe): on them the trained model is pulled towards the frozen
base model's next-token distribution, so it learns the episodes without answering
everything from them.

Questions for the who / action / what / where / when schema read as plain
English ("Where did Ada drop the lantern on Sunday?"); the verb's base form
comes from a small irregular-verb table and suffix rules. Any other slot
schema gets a generic "What is the <slot> …?" question listing the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hei_nw_plugin.model.prompting import OneShot
from hei_nw_plugin.types import Trace

ASKABLE = ("who", "what", "where", "when")

_IRREGULAR = {
    "ate": "eat", "became": "become", "began": "begin", "bought": "buy", "broke": "break", "brought": "bring",
    "built": "build", "caught": "catch", "chose": "choose", "drew": "draw", "drove": "drive", "dug": "dig",
    "fed": "feed", "felt": "feel", "flew": "fly", "found": "find", "forgot": "forget", "froze": "freeze",
    "gave": "give", "got": "get", "hid": "hide", "held": "hold", "hung": "hang", "kept": "keep", "left": "leave",
    "lent": "lend", "lost": "lose", "made": "make", "met": "meet", "paid": "pay", "put": "put", "ran": "run",
    "read": "read", "rode": "ride", "sang": "sing", "sat": "sit", "saw": "see", "said": "say", "sent": "send",
    "set": "set", "shook": "shake", "shot": "shoot", "sold": "sell", "spun": "spin", "stole": "steal",
    "swept": "sweep", "swam": "swim", "took": "take", "taught": "teach", "threw": "throw", "told": "tell",
    "tore": "tear", "wore": "wear", "wove": "weave", "won": "win", "wrote": "write", "cut": "cut",
}
_DOUBLED = ("bb", "dd", "gg", "mm", "nn", "pp", "rr", "tt")
_NEEDS_E = ("ur", "iz", "is", "us", "os", "as", "v", "c", "g", "at")


def base_form(past: str) -> str:
    """Best-effort base form of an English past-tense verb ('dropped' -> 'drop', 'sold' -> 'sell')."""
    word = past.strip()
    low = word.lower()
    if low in _IRREGULAR:
        return _IRREGULAR[low]
    if low.endswith("ied") and len(low) > 4:
        return word[:-3] + "y"
    if not low.endswith("ed") or len(low) < 4:
        return word
    stem = word[:-2]
    if stem[-2:].lower() in _DOUBLED and stem.lower() not in ("add", "err", "odd"):
        return stem[:-1]
    if stem.lower().endswith(("ea", "ai", "oa", "ee")):  # 'heated' / 'soaked' keep no e
        return stem
    if stem.lower().endswith(_NEEDS_E) and not stem.lower().endswith(("eat", "oat", "ait", "ss")):
        return stem + "e"
    return stem


def _the(value: str) -> str:
    """'the lantern', but proper names ('Paris') without an article."""
    return value if value[:1].isupper() else f"the {value}"


def slot_questions(slots: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(asked slot, question, answer) for every askable slot of ``slots``."""
    s = {k: str(v).strip() for k, v in slots.items() if str(v).strip()}
    out: list[tuple[str, str, str]] = []
    if {"who", "action", "what"} <= set(s):
        action, base = s["action"], base_form(s["action"])
        at = f" at {_the(s['where'])}" if "where" in s else ""
        on = f" on {s['when']}" if "when" in s else ""
        what = _the(s["what"])
        out.append(("who", f"Who {action} {what}{at}{on}?", s["who"]))
        out.append(("what", f"What did {s['who']} {base}{at}{on}?", s["what"]))
        if "where" in s:
            out.append(("where", f"Where did {s['who']} {base} {what}{on}?", s["where"]))
        if "when" in s:
            out.append(("when", f"When did {s['who']} {base} {what}{at}?", s["when"]))
        return out
    if len(s) < 2:
        return out
    for asked, value in s.items():
        given = ", ".join(f"{k} {v}" for k, v in s.items() if k != asked)
        out.append((asked, f"What is the {asked} of the event with {given}?", value))
    return out


def paraphrased_questions(slots: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """:func:`slot_questions` plus other wordings of each (see the module docstring); no duplicates."""
    s = {k: str(v).strip() for k, v in slots.items() if str(v).strip()}
    out = slot_questions(s)
    if not {"who", "action", "what"} <= set(s):
        return out
    who, action, base, what = s["who"], s["action"], base_form(s["action"]), _the(s["what"])
    at = f" at {_the(s['where'])}" if "where" in s else ""
    on = f" on {s['when']}" if "when" in s else ""
    front = f"On {s['when']}, " if "when" in s else ""
    out += [("who", f"{front}who {action} {what}{at}?", who) if front else ("who", f"Who {action} {what}?", who),
            ("who", f"Which person {action} {what}{at}{on}?", who),
            ("what", f"{front}what did {who} {base}{at}?" if front else f"What did {who} {base}?", s["what"]),
            ("what", f"Which thing did {who} {base}{at}{on}?", s["what"])]
    if "where" in s:
        out += [("where", f"{front}where did {who} {base} {what}?" if front else f"Where did {who} {base} {what}?",
                 s["where"]),
                ("where", f"In which place did {who} {base} {what}{on}?", s["where"])]
    if "when" in s:
        place = f"At {_the(s['where'])}, " if "where" in s else ""
        out += [("when", f"{place}when did {who} {base} {what}?" if place else f"When did {who} {base} {what}?",
                 s["when"]),
                ("when", f"On which day did {who} {base} {what}{at}?", s["when"])]
    unique: dict[str, tuple[str, str, str]] = {}
    for asked, q, value in out:
        unique.setdefault(q.lower(), (asked, q[:1].upper() + q[1:], value))
    return list(unique.values())


@dataclass(frozen=True)
class TrainingRow:
    """One training example: ``lm`` rows are plain text, ``qa`` rows a question and its answer,
    ``kl`` rows a general question and ``kl_text`` rows general text (distillation to the base model)."""

    kind: Literal["lm", "qa", "kl", "kl_text"]
    trace_id: str
    namespace: str
    text: str
    """The trace text (lm) or the question (qa)."""
    answer: str = ""
    one_shot: OneShot | None = None
    checked: bool = True
    """Counted in the train EM that stops training (the plain wording of each question; not its paraphrases)."""


def build_rows(traces: Sequence[Trace], *, one_shot: OneShot | None, lm_rows: bool = True,
               qa_rows: bool = True, paraphrase: bool = True) -> list[TrainingRow]:
    """Rows for ``traces`` in trace order (deduplicated by trace id); ``paraphrase`` asks each slot in several wordings."""
    ask = paraphrased_questions if paraphrase else slot_questions
    rows: list[TrainingRow] = []
    seen: set[str] = set()
    for t in traces:
        if t.id in seen:
            continue
        seen.add(t.id)
        if lm_rows and t.text.strip():
            rows.append(TrainingRow(kind="lm", trace_id=t.id, namespace=t.namespace, text=t.text.strip()))
        if qa_rows:
            plain = {q for _, q, _ in slot_questions(t.slots)}
            for _slot, q, a in ask(t.slots):
                rows.append(TrainingRow(kind="qa", trace_id=t.id, namespace=t.namespace, text=q, answer=a,
                                        one_shot=one_shot, checked=q in plain))
    return rows


def kl_rows(questions: Sequence[tuple[str, str]], texts: Sequence[str], *,
            one_shots: Sequence[OneShot | None]) -> list[TrainingRow]:
    """Distillation rows (see the module docstring): (general question, the base model's own greedy answer)
    pairs in the answer template of each of ``one_shots``, and general text. The KL is taken where the
    answer is produced: from its first token through the closing end-of-turn token."""
    rows = [TrainingRow(kind="kl", trace_id="", namespace="", text=q, answer=a, one_shot=o)
            for o in dict.fromkeys(one_shots) for q, a in questions if q.strip()]
    return rows + [TrainingRow(kind="kl_text", trace_id="", namespace="", text=t) for t in texts if t.strip()]

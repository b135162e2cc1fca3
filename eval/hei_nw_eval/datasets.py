"""Real evaluation data: one generic JSONL loader, plus bAbI 1-3 and LoCoMo adapters.

Everything loads into :class:`DatasetSample`: the episodes of one story or
conversation, in write order, and the questions asked about them, using the
same :class:`~hei_nw_eval.items.Episode` and :class:`~hei_nw_eval.items.Question`
records as the generated scenarios. A question's ``asked_after`` names the last
episode written before it is asked (bAbI asks in the middle of stories;
LoCoMo asks at the end).

Data is always read from a path the caller gives; nothing is downloaded or
copied. :func:`default_datasets_dir` finds ``../shared/datasets`` next to the
repository when it exists.

The generic JSONL format is one sample per line::

    {"id": "s1",
     "episodes": [{"id": "e1", "text": "Alice moved to Paris.", "slots": {"who": "Alice"},
                   "timestamp": "2024-05-01T10:00:00Z", "should_remember": true}],
     "questions": [{"id": "q1", "cue": "Where does Alice live?", "answer": "Paris",
                    "evidence": ["e1"], "asked_after": "e1"}]}

Only ``id`` and ``text`` of an episode and ``cue``, ``answer`` and ``evidence``
of a question are required; a missing question id is filled in as ``<sample>-q<n>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hei_nw_eval.items import Episode, Question, SourceRef
from hei_nw_eval.metrics import LOCOMO_ADVERSARIAL_ANSWER


class DatasetFormatError(ValueError):
    """A dataset file does not have the expected format (message names file and line)."""


class DatasetSample(BaseModel):
    """One story or conversation: episodes in write order and the questions about them."""

    model_config = ConfigDict(extra="forbid")

    id: str
    source: str = Field(description="'jsonl', 'babi:qa1'…'babi:qa3' or 'locomo'.")
    episodes: list[Episode]
    questions: list[Question]
    warnings: list[str] = Field(default_factory=list, description="Problems fixed or skipped while loading.")

    def visible_episodes(self, question: Question) -> list[Episode]:
        """The episodes written before ``question`` is asked."""
        return self.episodes[: self._asked_index(question) + 1]

    def time_lag(self, question: Question) -> int | None:
        """Episodes written after the question's last evidence episode and before it is asked.

        None when the question has no evidence (some LoCoMo questions).
        """
        if not question.evidence:
            return None
        position = {e.id: i for i, e in enumerate(self.episodes)}
        last_evidence = max(position[e] for e in question.evidence)
        return self._asked_index(question) - last_evidence

    def _asked_index(self, question: Question) -> int:
        if question.asked_after is None:
            return len(self.episodes) - 1
        for i, e in enumerate(self.episodes):
            if e.id == question.asked_after:
                return i
        raise KeyError(f"question {question.id}: asked_after {question.asked_after!r} is not an episode")


def default_datasets_dir() -> Path | None:
    """``../shared/datasets`` relative to the repository root, when that folder exists."""
    repo_root = Path(__file__).resolve().parents[2]
    candidate = repo_root.parent / "shared" / "datasets"
    return candidate if candidate.is_dir() else None


# ---------------------------------------------------------------------------
# Generic JSONL
# ---------------------------------------------------------------------------


def load_jsonl(path: str | Path) -> list[DatasetSample]:
    """Samples from a JSONL file in the generic format above."""
    p = Path(path)
    samples = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                samples.append(_sample_from_json(raw))
            except (json.JSONDecodeError, ValidationError, KeyError, TypeError, ValueError) as err:
                raise DatasetFormatError(f"{p}:{lineno}: {err}") from err
    return samples


def _sample_from_json(raw: dict[str, Any]) -> DatasetSample:
    sample_id = str(raw["id"])
    questions = []
    for i, q in enumerate(raw.get("questions", [])):
        q = dict(q)
        q.setdefault("id", f"{sample_id}-q{i}")
        questions.append(Question.model_validate(q))
    sample = DatasetSample(
        id=sample_id,
        source="jsonl",
        episodes=[Episode.model_validate(e) for e in raw["episodes"]],
        questions=questions,
    )
    ids = [e.id for e in sample.episodes]
    if len(set(ids)) != len(ids):
        raise ValueError(f"sample {sample_id}: episode ids are not unique")
    known = set(ids)
    for q in sample.questions:
        missing = [e for e in q.evidence if e not in known]
        if missing:
            raise ValueError(f"sample {sample_id}, question {q.id}: evidence {missing} not among episodes")
        if q.asked_after is not None and q.asked_after not in known:
            raise ValueError(f"sample {sample_id}, question {q.id}: asked_after {q.asked_after!r} unknown")
    return sample


def save_jsonl(samples: Iterable[DatasetSample], path: str | Path) -> Path:
    """Write samples in the generic format (round-trips through :func:`load_jsonl`)."""
    out = Path(path)
    with out.open("w", encoding="utf-8") as fh:
        for s in samples:
            fh.write(s.model_dump_json(exclude={"source", "warnings"}) + "\n")
    return out


# ---------------------------------------------------------------------------
# bAbI tasks 1-3
# ---------------------------------------------------------------------------

BABI_FILES: dict[int, str] = {
    1: "qa1_single-supporting-fact_test.txt",
    2: "qa2_two-supporting-facts_test.txt",
    3: "qa3_three-supporting-facts_test.txt",
}


def load_babi(path: str | Path, task: int | None = None) -> list[DatasetSample]:
    """bAbI stories as samples: one per story, one episode per statement line.

    ``path`` is a bAbI ``.txt`` file, or a folder holding the files named in
    :data:`BABI_FILES` (then ``task`` picks one; the task number is otherwise
    read from the ``qaN_`` file name prefix). Question lines become questions
    asked right after the statement before them, with the supporting line
    numbers as evidence. bAbI has no timestamps; episode order is write order.
    """
    p = Path(path)
    if p.is_dir():
        if task is None:
            raise ValueError("give task=1, 2 or 3 when path is a folder")
        if task not in BABI_FILES:
            raise ValueError(f"bAbI tasks 1-3 are supported, got {task}")
        p = p / BABI_FILES[task]
    if task is None:
        match = re.match(r"qa(\d+)_", p.name)
        if not match:
            raise ValueError(f"cannot tell the bAbI task from file name {p.name!r}; pass task=")
        task = int(match.group(1))
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise DatasetFormatError(f"cannot read bAbI file {p}: {err}") from err

    samples: list[DatasetSample] = []
    episodes: list[Episode] = []
    questions: list[Question] = []
    line_to_episode: dict[int, str] = {}
    story = -1

    def close_story() -> None:
        if story >= 0 and episodes:
            samples.append(
                DatasetSample(id=f"babi-qa{task}-{story:04d}", source=f"babi:qa{task}",
                              episodes=list(episodes), questions=list(questions))
            )

    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        number_text, _, rest = line.partition(" ")
        try:
            number = int(number_text)
        except ValueError as err:
            raise DatasetFormatError(f"{p}:{lineno}: line does not start with a number") from err
        if number == 1:
            close_story()
            story += 1
            episodes, questions, line_to_episode = [], [], {}
        sample_id = f"babi-qa{task}-{story:04d}"
        if "\t" in rest:
            parts = rest.split("\t")
            if len(parts) < 3 or not episodes:
                raise DatasetFormatError(f"{p}:{lineno}: question line needs question, answer, supporting ids")
            try:
                evidence = [line_to_episode[int(x)] for x in parts[2].split()]
            except (KeyError, ValueError) as err:
                raise DatasetFormatError(f"{p}:{lineno}: supporting id {err} is not a statement") from err
            questions.append(
                Question(
                    id=f"{sample_id}-q{number:03d}",
                    cue=parts[0].strip(),
                    answer=parts[1].strip(),
                    evidence=evidence,
                    category=f"qa{task}",
                    asked_after=episodes[-1].id,
                )
            )
        else:
            episode_id = f"{sample_id}-l{number:03d}"
            line_to_episode[number] = episode_id
            episodes.append(
                Episode(
                    id=episode_id,
                    text=rest.strip(),
                    source=SourceRef(conversation_id=sample_id, turn=len(episodes)),
                )
            )
    close_story()
    return samples


# ---------------------------------------------------------------------------
# LoCoMo
# ---------------------------------------------------------------------------

_LOCOMO_TIME = re.compile(r"(\d{1,2}):(\d{2})\s*([ap]m)\s+on\s+(\d{1,2})\s+([A-Za-z]+),?\s+(\d{4})", re.IGNORECASE)
_MONTHS = {m: i for i, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august",
     "september", "october", "november", "december"], start=1)}
_DIA_ID = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)")


def parse_locomo_time(text: str) -> datetime:
    """'1:56 pm on 8 May, 2023' as a UTC datetime (LoCoMo gives no time zone)."""
    m = _LOCOMO_TIME.search(text)
    if not m:
        raise ValueError(f"unrecognised LoCoMo session time {text!r}")
    hour, minute, ampm, day, month, year = m.groups()
    h = int(hour) % 12 + (12 if ampm.lower() == "pm" else 0)
    return datetime(int(year), _MONTHS[month.lower()], int(day), h, int(minute), tzinfo=UTC)


def load_locomo(path: str | Path) -> list[DatasetSample]:
    """LoCoMo conversations as samples: one episode per dialogue turn.

    ``path`` is LoCoMo's JSON file (a list of conversations) or a folder holding
    exactly one ``*.json``. Episode ids are LoCoMo's ``dia_id`` (``D3:14``); the
    text is ``"<speaker>: <text>"`` plus ``[shares <caption>]`` for shared images,
    as LoCoMo's own context builder writes it. Timestamps are the session start
    plus one second per turn, so they order turns. Category-5 (adversarial)
    questions get the gold answer ``"Not mentioned in the conversation"``.
    Malformed evidence ids (``D:11:26``, ``D8:6; D9:17``) are repaired; ids
    that name no turn are dropped and listed in ``warnings``.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.json"))
        if len(files) != 1:
            raise ValueError(f"{p} holds {len(files)} JSON files; pass the LoCoMo file itself")
        p = files[0]
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetFormatError(f"cannot read LoCoMo file {p}: {err}") from err
    if not isinstance(data, list):
        raise DatasetFormatError(f"{p}: expected a list of conversations")
    try:
        return [_locomo_sample(conv) for conv in data]
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetFormatError(f"{p}: {err}") from err


def _locomo_sample(conv: dict[str, Any]) -> DatasetSample:
    sample_id = str(conv["sample_id"])
    c = conv["conversation"]
    sessions = sorted(
        (int(k.split("_")[1]), v) for k, v in c.items()
        if re.fullmatch(r"session_\d+", k) and isinstance(v, list)
    )
    episodes: list[Episode] = []
    for number, turns in sessions:
        start = parse_locomo_time(c[f"session_{number}_date_time"])
        for i, turn in enumerate(turns):
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [shares {turn['blip_caption']}]"
            episodes.append(
                Episode(
                    id=str(turn["dia_id"]),
                    text=text,
                    slots={"speaker": str(turn["speaker"]), "session": str(number)},
                    timestamp=start + timedelta(seconds=i),
                    source=SourceRef(conversation_id=sample_id, turn=len(episodes), speaker=str(turn["speaker"])),
                )
            )
    known = {e.id for e in episodes}
    warnings: list[str] = []
    questions: list[Question] = []
    for i, qa in enumerate(conv["qa"]):
        qid = f"{sample_id}-q{i:03d}"
        evidence: list[str] = []
        for raw in qa.get("evidence", []):
            found = [f"D{a}:{b}" for a, b in _DIA_ID.findall(str(raw))]
            for ev in found:
                if ev in known and ev not in evidence:
                    evidence.append(ev)
                elif ev not in known:
                    warnings.append(f"{qid}: evidence {ev} names no turn; dropped")
            if not found:
                warnings.append(f"{qid}: evidence {raw!r} is not a turn id; dropped")
        category = int(qa["category"])
        if not evidence:
            warnings.append(f"{qid}: no usable evidence; kept for answer scoring, no retrieval target")
        answer = LOCOMO_ADVERSARIAL_ANSWER if category == 5 else str(qa["answer"])
        questions.append(
            Question(id=qid, cue=str(qa["question"]), answer=answer, evidence=evidence, category=str(category))
        )
    return DatasetSample(id=sample_id, source="locomo", episodes=episodes, questions=questions, warnings=warnings)


# ---------------------------------------------------------------------------
# One entry point
# ---------------------------------------------------------------------------


def load_dataset(spec: str) -> list[DatasetSample]:
    """Load ``babi:PATH`` (file; or folder, which loads tasks 1-3), ``locomo:PATH`` or ``jsonl:PATH``.

    A bare ``babi`` or ``locomo`` reads from :func:`default_datasets_dir`.
    """
    kind, _, location = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in ("babi", "locomo", "jsonl"):
        raise ValueError(f"dataset spec must start with babi:, locomo: or jsonl:, got {spec!r}")
    if location:
        path = Path(location)
    else:
        base = default_datasets_dir()
        if base is None or kind == "jsonl":
            raise ValueError(f"{spec!r} needs a path (no ../shared/datasets folder found)")
        path = base / kind
    if kind == "jsonl":
        return load_jsonl(path)
    if kind == "locomo":
        return load_locomo(path)
    if path.is_dir():
        return [s for task in sorted(BABI_FILES) for s in load_babi(path, task)]
    return load_babi(path)

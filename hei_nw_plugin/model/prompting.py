"""The answer prompt: a short system line, one worked example, then memory and question.

Measured with SmolLM2-135M: given the right fact and a plain instruction the gold
answer shows up inside a verbose sentence (strict EM ≈ 0); one worked example of
the answer format lifts EM to ≈ 0.8. So every mode uses the same chat: system
line, one-shot user/assistant pair, then the real turn. B0 and B1-with-nothing-
recalled build the identical prompt (memory shown as ``(empty)``), which is what
makes "B1 with empty memory equals B0" hold exactly. Answers are cut at the first
newline and stripped of quotes and trailing punctuation before exact match.

Memory lines reach the prompt with their dates written out (``[8 May 2023]``, not
the packer's ``[2023-05-08]``): a "when" question is then answered by copying the
date as people (and LoCoMo's gold answers) write it. When memory does not hold
the answer, the memory reader replies :data:`ABSTAIN`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SYSTEM_PROMPT = "Answer the question using the memory. Reply with the answer only, in a few words."
EMPTY_MEMORY = "(empty)"
ADAPTER_MEMORY = "(attached)"
"""What the prompt's memory section says when memory reaches the model through the adapter only."""
ABSTAIN = "Not mentioned"
"""The memory reader's answer when the memory does not hold one (LoCoMo scores it right on its adversarial questions)."""
MONTHS: tuple[str, ...] = ("January", "February", "March", "April", "May", "June", "July", "August",
                           "September", "October", "November", "December")


@dataclass(frozen=True)
class OneShot:
    """A worked example that fixes the answer format (vocabulary outside every eval split)."""

    memory: str
    question: str
    answer: str


DEFAULT_ONE_SHOT = OneShot(
    memory="1. [2023-02-11] Quillon stacked the pine crates in the cold cellar.",
    question="Where did Quillon stack the pine crates?",
    answer="cold cellar",
)
NARRATIVE_ONE_SHOT = OneShot(
    memory="1. Quillon walked to the cellar.\n2. Orsolya took the lantern.\n3. Quillon went to the attic.",
    question="Where is Quillon?",
    answer="attic",
)
"""For stories of people moving about (bAbI): a one-word place."""
DIALOGUE_ONE_SHOT = OneShot(
    memory="1. [14 March 2023] Quillon: Guess what, Orsolya, I finally finished carving the pine crates! "
           "(session=2; speaker=Quillon)",
    question="What did Quillon finish carving?",
    answer="pine crates",
)
"""For remembered conversations (LoCoMo): a short span copied from the turn."""


_ISO_DATE = re.compile(r"^(\d+\. )\[(\d{4})-(\d{2})-(\d{2})\]", re.MULTILINE)


def spoken_date(year: int, month: int, day: int) -> str:
    """``8 May 2023``: how a date is written in the prompt and in a "when" answer."""
    return f"{day} {MONTHS[month - 1]} {year}"


def readable_dates(memory: str) -> str:
    """Memory lines with the packer's ``N. [YYYY-MM-DD]`` date written out as ``N. [D Month YYYY]``."""
    def sub(m: re.Match[str]) -> str:
        year, month, day = int(m.group(2)), int(m.group(3)), int(m.group(4))
        if not 1 <= month <= 12 or not 1 <= day <= 31:
            return m.group(0)
        return f"{m.group(1)}[{spoken_date(year, month, day)}]"

    return _ISO_DATE.sub(sub, memory)


def prompt_memory(memory: str, route: str) -> str:
    """The memory text the prompt shows for a route: the memory itself, dates written out, for
    ``prefix`` and ``both``; for ``adapter`` only a marker that memory is attached (or nothing)."""
    if route == "adapter":
        return ADAPTER_MEMORY if memory.strip() else ""
    return readable_dates(memory)


def user_turn(memory: str, question: str) -> str:
    """The user message: memory block, then the question."""
    return f"Memory:\n{memory.strip() or EMPTY_MEMORY}\nQuestion: {question.strip()}"


def answer_messages(
    question: str, memory: str = "", *, one_shot: OneShot | None = DEFAULT_ONE_SHOT
) -> list[dict[str, str]]:
    """Chat messages for one question; ``memory`` is the packed memory text (may be empty)."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    if one_shot is not None:
        messages.append({"role": "user", "content": user_turn(one_shot.memory, one_shot.question)})
        messages.append({"role": "assistant", "content": one_shot.answer})
    messages.append({"role": "user", "content": user_turn(memory, question)})
    return messages


_TRAILING = re.compile(r"[\s.,;:!?\"'`)\]]+$")
_LEADING = re.compile(r"^[\s\"'`(\[]+")


def clean_answer(text: str) -> str:
    """First line of a generation without surrounding quotes or trailing punctuation."""
    line = text.strip().split("\n", 1)[0]
    return _LEADING.sub("", _TRAILING.sub("", line))

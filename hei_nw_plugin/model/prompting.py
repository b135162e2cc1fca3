"""The answer prompt: a short system line, one worked example, then memory and question.

Measured with SmolLM2-135M: given the right fact and a plain instruction the gold
answer shows up inside a verbose sentence (strict EM ≈ 0); one worked example of
the answer format lifts EM to ≈ 0.8. So every mode uses the same chat: system
line, one-shot user/assistant pair, then the real turn. B0 and B1-with-nothing-
recalled build the identical prompt (memory shown as ``(empty)``), which is what
makes "B1 with empty memory equals B0" hold exactly. Answers are cut at the first
newline and stripped of quotes and trailing punctuation before exact match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SYSTEM_PROMPT = "Answer the question using the memory. Reply with the answer only, in a few words."
EMPTY_MEMORY = "(empty)"
ADAPTER_MEMORY = "(attached)"
"""What the prompt's memory section says when memory reaches the model through the adapter only."""


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


def prompt_memory(memory: str, route: str) -> str:
    """The memory text the prompt shows for a route: the memory itself for ``prefix``
    and ``both``; for ``adapter`` only a marker that memory is attached (or nothing)."""
    if route == "adapter":
        return ADAPTER_MEMORY if memory.strip() else ""
    return memory


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

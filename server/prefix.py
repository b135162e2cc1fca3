"""Memory as a prompt prefix: the recall cue out of a chat, the packed memory into it.

The cue is the last user message. Recalled memory joins the first system
message as a ``Memory:`` block, or arrives in a new system message when the chat
has none; this is the prompt shape of ``HeiNwForCausalLM.chat`` (wrapper.py), so
the served model and the in-process one see memory the same way.
"""

from __future__ import annotations

from typing import Any

DEFAULT_SYSTEM = "You are a helpful assistant."


def message_text(content: Any) -> str:
    """Plain text of an OpenAI message ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_turn(messages: list[dict[str, Any]]) -> tuple[str, int] | None:
    """(text, turn index among user messages) of the last message when it is the user's, else None."""
    if not messages or messages[-1].get("role") != "user":
        return None
    text = message_text(messages[-1].get("content"))
    turn = sum(1 for m in messages if m.get("role") == "user") - 1
    return (text, turn) if text.strip() else None


def with_memory(messages: list[dict[str, Any]], memory_text: str) -> list[dict[str, Any]]:
    """A copy of ``messages`` with ``memory_text`` in the system message (unchanged when it is empty)."""
    if not memory_text.strip():
        return messages
    note = f"Memory:\n{memory_text}"
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{message_text(out[0].get('content'))}\n\n{note}"
    else:
        out.insert(0, {"role": "system", "content": f"{DEFAULT_SYSTEM}\n\n{note}"})
    return out


def prompt_with_memory(prompt: str, memory_text: str) -> str:
    """A completion prompt with the memory block in front (unchanged when memory is empty)."""
    return f"Memory:\n{memory_text}\n\n{prompt}" if memory_text.strip() else prompt

"""Chat messages to HEI-NW: the cue a conversation gives, and the events it offers the gate.

Only text blocks count; images, audio and tool-call blocks carry nothing the engine
can key. By default only user messages are written: in a memory-backed chat the
assistant mostly restates what memory handed it, and system messages carry the
recalled memory itself, so writing either back would echo memory into new traces.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock

from hei_nw_plugin import MemoryEvent, SourcePointer

DEFAULT_WRITE_ROLES: tuple[str, ...] = (MessageRole.USER.value,)


def message_text(message: ChatMessage) -> str:
    """The message's text blocks joined by newlines, stripped ("" when it has none)."""
    return "\n".join(b.text for b in message.blocks if isinstance(b, TextBlock)).strip()


def cue_text(messages: Sequence[ChatMessage], *, n_user: int, max_chars: int, latest: str | None = None) -> str:
    """Recall cue: ``latest`` if given, else the last ``n_user`` user messages.

    Clipped to the last ``max_chars`` characters (the engine's cue limit): the end of
    a conversation is what the next answer depends on.
    """
    if latest is not None and latest.strip():
        return latest.strip()[-max_chars:]
    users = [t for m in messages if m.role == MessageRole.USER and (t := message_text(m))]
    return "\n".join(users[-n_user:])[-max_chars:].strip()


def chat_events(
    messages: Iterable[ChatMessage], *, roles: Sequence[str], max_chars: int, pin: bool = False,
    session_id: str | None = None,
) -> list[MemoryEvent]:
    """One event per text span of each message whose role is in ``roles``.

    A message longer than ``max_chars`` (the engine's event limit) becomes several
    spans split at whitespace. The role goes into the trace metadata and the session
    into its source pointer; a ``session_id`` in a message's ``additional_kwargs``
    (set by llama-index's ``Memory`` when it flushes) wins over the argument.
    """
    events: list[MemoryEvent] = []
    for m in messages:
        if m.role.value not in roles:
            continue
        text = message_text(m)
        if not text:
            continue
        session = m.additional_kwargs.get("session_id", session_id)
        source = SourcePointer(conversation_id=str(session)) if session is not None else SourcePointer()
        events += [MemoryEvent(text=span, pin=pin, metadata={"role": m.role.value}, source=source)
                   for span in split_text(text, max_chars)]
    return events


def split_text(text: str, max_chars: int) -> list[str]:
    """Pieces of at most ``max_chars`` characters, cut at the last whitespace before the limit when there is one."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > max_chars:
        cut = max(rest.rfind(ws, 0, max_chars + 1) for ws in (" ", "\n", "\t"))
        if cut <= 0:
            cut = max_chars
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces

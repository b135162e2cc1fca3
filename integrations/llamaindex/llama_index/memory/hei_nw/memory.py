"""HEI-NW as the ``memory=`` of llama-index chat engines and agents.

Two stores, two lifetimes: the session's chat history lives in a short-term
llama-index memory (``Memory`` by default, one per ``session_id``), and every
message put is also offered to HEI-NW's write gate in the user's namespace, so a
fact is available to the user's next session as soon as it is answered. ``get``
returns the session's history with the memory recalled for the latest user
message in a system message. ``reset`` clears the session only; forgetting
long-term traces is the engine's ``delete``.

Engines and agents put the user's message before they ``get`` the history that
answers it. Written at once, that message would come back as the top "memory"
of itself, so a batch holding a user message waits and is written right after
the next recall (or at the next ``put``, ``reset`` or :meth:`HEINWMemory.flush`).
Every turn ends with the assistant's message, so nothing waits between turns.
"""

from __future__ import annotations

import uuid
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock
from llama_index.core.bridge.pydantic import Field, PrivateAttr, SerializeAsAny, field_validator
from llama_index.core.memory import Memory
from llama_index.core.memory.memory import DEFAULT_TOKEN_LIMIT
from llama_index.core.memory.types import BaseMemory
from llama_index.memory.hei_nw.link import EngineLink

from hei_nw_plugin import HEIMemory

DEFAULT_MEMORY_TEMPLATE = (
    "Long-term memory: facts recalled from earlier conversations with this user, most relevant first. "
    "Use them when they help; a later message overrides them.\n{memory}"
)


class HEINWMemory(EngineLink, BaseMemory):
    """Per-session chat history plus HEI-NW long-term memory, for engines and agents.

    Example::

        memory = HEINWMemory.from_defaults(hei_memory=HEIMemory.open("data"), namespace="user-42")
        engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory)
    """

    primary_memory: SerializeAsAny[BaseMemory] = Field(description="Short-term chat history of this session.")
    session_id: str = Field(min_length=1, description="This conversation; stored as each trace's source conversation_id.")
    memory_template: str = Field(
        default=DEFAULT_MEMORY_TEMPLATE, description="System text around the recalled memory; '{memory}' is replaced by it.")

    _unwritten: list[ChatMessage] = PrivateAttr(default_factory=list)

    def __init__(self, *, hei_memory: HEIMemory, **data: Any) -> None:
        super().__init__(**data)
        self._link(hei_memory)

    @field_validator("memory_template")
    @classmethod
    def _has_slot(cls, v: str) -> str:
        if "{memory}" not in v:
            raise ValueError("memory_template must contain '{memory}'")
        return v

    @classmethod
    def class_name(cls) -> str:
        return "HEINWMemory"

    @classmethod
    def from_defaults(  # type: ignore[override]
        cls,
        *,
        hei_memory: HEIMemory,
        namespace: str,
        session_id: str | None = None,
        chat_history: list[ChatMessage] | None = None,
        primary_memory: BaseMemory | None = None,
        token_limit: int = DEFAULT_TOKEN_LIMIT,
        **kwargs: Any,
    ) -> HEINWMemory:
        """A memory for user ``namespace`` in session ``session_id`` (a new uuid when None).

        ``primary_memory`` defaults to an in-process ``Memory`` keyed by the session
        that keeps at most ``token_limit`` tokens of history. ``chat_history`` restores the
        session's messages and is not written to HEI-NW again. Other keyword
        arguments set fields (``k``, ``max_tokens``, ``pin``, ``write_roles``, ...).
        """
        session_id = session_id or uuid.uuid4().hex
        if primary_memory is None:
            primary_memory = Memory.from_defaults(session_id=session_id, chat_history=chat_history, token_limit=token_limit)
        elif chat_history is not None:
            primary_memory.set(chat_history)
        return cls(hei_memory=hei_memory, namespace=namespace, session_id=session_id,
                   primary_memory=primary_memory, **kwargs)

    # ------------------------------------------------------------------- read
    def get(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """The session's history, with a system message carrying the memory recalled for ``input``.

        Without ``input`` the cue is the latest user message(s) in the history.
        Extra keyword arguments go to the primary memory.
        """
        history = self.primary_memory.get(input=input, **kwargs)
        messages = self._with_memory(history, self.recall_text(history, input))
        self.flush()
        return messages

    async def aget(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        history = await self.primary_memory.aget(input=input, **kwargs)
        messages = self._with_memory(history, await self.arecall_text(history, input))
        await self.aflush()
        return messages

    def get_all(self) -> list[ChatMessage]:
        """The session's whole history, without recalled memory."""
        return self.primary_memory.get_all()

    async def aget_all(self) -> list[ChatMessage]:
        return await self.primary_memory.aget_all()

    def _with_memory(self, history: list[ChatMessage], memory_text: str) -> list[ChatMessage]:
        if not memory_text:
            return history
        note = self.memory_template.replace("{memory}", memory_text)
        if history and history[0].role == MessageRole.SYSTEM:  # keep one leading system message
            first = history[0]
            merged = first.model_copy(update={"blocks": [*first.blocks, TextBlock(text=note)]})
            return [merged, *history[1:]]
        return [ChatMessage(role=MessageRole.SYSTEM, content=note), *history]

    # ------------------------------------------------------------------ write
    def put(self, message: ChatMessage) -> None:
        """Append to the session and offer the message to the write gate (see the module docstring for when)."""
        self.put_messages([message])

    async def aput(self, message: ChatMessage) -> None:
        await self.aput_messages([message])

    def put_messages(self, messages: list[ChatMessage]) -> None:
        self.flush()
        self.primary_memory.put_messages(messages)
        self._unwritten = list(messages)
        if not _has_user_message(messages):
            self.flush()

    async def aput_messages(self, messages: list[ChatMessage]) -> None:
        await self.aflush()
        await self.primary_memory.aput_messages(messages)
        self._unwritten = list(messages)
        if not _has_user_message(messages):
            await self.aflush()

    def flush(self) -> None:
        """Write the messages still waiting for their recall."""
        waiting, self._unwritten = self._unwritten, []
        self.write(waiting, self.session_id)

    async def aflush(self) -> None:
        waiting, self._unwritten = self._unwritten, []
        await self.awrite(waiting, self.session_id)

    def set(self, messages: list[ChatMessage]) -> None:
        """Replace the session's history; only messages beyond the current history are written to HEI-NW."""
        self.flush()
        known = len(self.primary_memory.get_all())
        self.primary_memory.set(messages)
        self.write(messages[known:], self.session_id)

    async def aset(self, messages: list[ChatMessage]) -> None:
        await self.aflush()
        known = len(await self.primary_memory.aget_all())
        await self.primary_memory.aset(messages)
        await self.awrite(messages[known:], self.session_id)

    def reset(self) -> None:
        """Clear this session's history; long-term traces stay."""
        self.flush()
        self.primary_memory.reset()

    async def areset(self) -> None:
        await self.aflush()
        await self.primary_memory.areset()


def _has_user_message(messages: list[ChatMessage]) -> bool:
    return any(m.role == MessageRole.USER for m in messages)

"""The link to a HEI-NW engine that the memory block and the chat memory share.

One pydantic mixin holds the settings (namespace, how much to recall, what to
write) and the two calls both adapters make, so neither copies the other. The
engine object itself is a private attribute: it is not data, and llama-index
serialises its memories.
"""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import BaseModel, Field, PrivateAttr
from llama_index.memory.hei_nw.messages import DEFAULT_WRITE_ROLES, chat_events, cue_text

from hei_nw_plugin import HEIMemory, MemoryEvent, WriteDecision


class EngineLink(BaseModel):
    """Settings and calls shared by :class:`HEINWMemoryBlock` and :class:`HEINWMemory`."""

    namespace: str = Field(min_length=1, description="HEI-NW namespace, one per user: recall never crosses namespaces.")
    k: int = Field(default=5, ge=1, description="Traces recalled per turn.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Budget for the packed memory in tokens; None: the engine's pack.max_mem_tokens.")
    cue_messages: int = Field(
        default=1, ge=1, description="How many of the latest user messages form the recall cue when no input is given.")
    write_roles: tuple[str, ...] = Field(
        default=DEFAULT_WRITE_ROLES, description="Roles whose messages are offered to the write gate.")
    pin: bool = Field(default=False, description="Pin every written message: it bypasses the write gate and is never evicted.")

    _hei: HEIMemory = PrivateAttr()

    def _link(self, hei_memory: HEIMemory) -> None:
        if not isinstance(hei_memory, HEIMemory):
            raise TypeError(f"hei_memory must be a hei_nw_plugin.HEIMemory, got {type(hei_memory).__name__}")
        self._hei = hei_memory

    @property
    def hei_memory(self) -> HEIMemory:
        """The engine this adapter reads and writes."""
        return self._hei

    def _cue(self, messages: Sequence[ChatMessage], latest: str | ChatMessage | None) -> str:
        text = latest.content if isinstance(latest, ChatMessage) else latest
        return cue_text(messages, n_user=self.cue_messages, latest=text,
                        max_chars=self._hei.settings.limits.max_text_chars)

    def _events(self, messages: Sequence[ChatMessage], session_id: str | None) -> list[MemoryEvent]:
        return chat_events(messages, roles=self.write_roles, pin=self.pin, session_id=session_id,
                           max_chars=self._hei.settings.limits.max_text_chars)

    def recall_text(self, messages: Sequence[ChatMessage], latest: str | ChatMessage | None = None) -> str:
        """Packed memory for the conversation's cue ("" when there is no cue or nothing is stored)."""
        cue = self._cue(messages, latest)
        if not cue:
            return ""
        return self._hei.recall(cue, self.k, namespace=self.namespace, max_tokens=self.max_tokens).memory_tokens.text

    async def arecall_text(self, messages: Sequence[ChatMessage], latest: str | ChatMessage | None = None) -> str:
        """Async :meth:`recall_text`."""
        cue = self._cue(messages, latest)
        if not cue:
            return ""
        result = await self._hei.arecall(cue, self.k, namespace=self.namespace, max_tokens=self.max_tokens)
        return result.memory_tokens.text

    def write(self, messages: Sequence[ChatMessage], session_id: str | None = None) -> list[WriteDecision]:
        """Offer the messages to the write gate; one decision per span offered."""
        events = self._events(messages, session_id)
        return self._hei.write_many(events, namespace=self.namespace) if events else []

    async def awrite(self, messages: Sequence[ChatMessage], session_id: str | None = None) -> list[WriteDecision]:
        """Async :meth:`write`."""
        events = self._events(messages, session_id)
        return await self._hei.awrite_many(events, namespace=self.namespace) if events else []


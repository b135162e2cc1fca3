"""HEI-NW as a block of llama-index's ``Memory``.

``Memory`` keeps a session's recent messages itself and hands a block only the
messages it flushes when the short-term queue passes its token limit; those go
through HEI-NW's write gate. On every ``get`` the block recalls with the latest
user message as the cue and returns the packed memory text, which ``Memory``
renders inside ``<{name}>`` tags in the system message.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import Field
from llama_index.core.memory.memory import BaseMemoryBlock
from llama_index.memory.hei_nw.link import EngineLink

from hei_nw_plugin import HEIMemory


class HEINWMemoryBlock(EngineLink, BaseMemoryBlock[str]):
    """Long-term episodic memory for ``Memory.from_defaults(memory_blocks=[...])``.

    Example::

        block = HEINWMemoryBlock(hei_memory=HEIMemory.open("data"), namespace="user-42")
        memory = Memory.from_defaults(session_id="chat-7", memory_blocks=[block])
    """

    name: str = Field(default="episodic_memory", description="Block name; also the tag around its text in the prompt.")
    description: str | None = Field(
        default="Facts recalled from earlier conversations with this user (HEI-NW).",
        description="What the block holds.")

    def __init__(self, *, hei_memory: HEIMemory, **data: Any) -> None:
        super().__init__(**data)
        self._link(hei_memory)

    async def _aget(self, messages: list[ChatMessage] | None = None, **block_kwargs: Any) -> str:
        """Packed memory recalled with the latest user message(s) as the cue ("" when none)."""
        return await self.arecall_text(messages or [])

    async def _aput(self, messages: list[ChatMessage]) -> None:
        """Offer the messages ``Memory`` flushed to HEI-NW's write gate."""
        await self.awrite(messages)

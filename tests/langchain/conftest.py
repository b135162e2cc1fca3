"""Fakes shared by the LangChain adapter tests: a clock, an embeddings wrapper, a prompt recorder.

This folder has no ``__init__.py`` on purpose: as a package named ``langchain``
it would shadow the real framework.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_hei_nw", reason='install the adapter: pip install -e integrations/langchain')

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage, SystemMessage

from hei_nw_plugin.embed import HashingEmbedder


class FakeClock:
    """Seconds since the epoch that move when told to, and by ``tick`` on every reading (so stamps differ)."""

    def __init__(self, start: float = 1_800_000_000.0, tick: float = 0.001) -> None:
        self.now = start
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class HashingEmbeddings(Embeddings):
    """HEI-NW's test embedder behind LangChain's Embeddings interface (for InMemoryStore)."""

    def __init__(self, dim: int = 128) -> None:
        self._embedder = HashingEmbedder(dim=dim)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class PromptRecorder(BaseCallbackHandler):
    """Keeps the messages of every chat-model call, as the model received them."""

    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any) -> None:
        self.calls.extend(messages)

    def system_text(self, call: int = -1) -> str:
        """The system message text of one recorded call ('' when it had none)."""
        return "\n".join(m.text for m in self.calls[call] if isinstance(m, SystemMessage))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> PromptRecorder:
    return PromptRecorder()


@pytest.fixture
def hashing_embeddings() -> HashingEmbeddings:
    return HashingEmbeddings(dim=128)

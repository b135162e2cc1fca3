"""Fixtures for the LlamaIndex adapters: a HEI-NW engine on the hashing embedder and a recording LLM."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest.importorskip("llama_index.core", reason="the llamaindex extra is not installed")

from llamaindex_fakes import RecordingLLM

from hei_nw_plugin.memory import HEIMemory


@pytest.fixture
def llm() -> RecordingLLM:
    return RecordingLLM()


@pytest.fixture
def hei(mem_factory: Callable[..., HEIMemory]) -> HEIMemory:
    return mem_factory()

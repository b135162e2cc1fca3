"""Fixtures for the LlamaIndex adapters: a HEI-NW engine on the hashing embedder and a recording LLM."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

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


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llamaindex_chat.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    """examples/llamaindex_chat.py, imported as a module."""
    spec = importlib.util.spec_from_file_location("llamaindex_chat_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

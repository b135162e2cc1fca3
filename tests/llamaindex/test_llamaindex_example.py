"""examples/llamaindex_chat.py on the real MiniLM embedder with default HEI-NW settings.

The LLMs record what they are sent, so the test checks the memory path (what the
model is given in the later session), not a model's wording.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage
from llamaindex_fakes import RecordingLLM, recording_function_llm, system_text

from hei_nw_plugin.memory import HEIMemory

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llamaindex_chat.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llamaindex_chat_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def hei(tmp_path: Path, minilm: Any) -> HEIMemory:
    with HEIMemory.open(tmp_path, embedder=minilm) as memory:  # default settings; the shared MiniLM instance
        yield memory


def first_memory_line(told: str) -> str:
    return next(line for line in told.splitlines() if line.startswith("1. ["))


def test_chat_engine_session_two_is_given_the_fact_from_session_one(example: ModuleType, hei: HEIMemory) -> None:
    llm = RecordingLLM(reply="Ask for a nut-free cake.")
    answer = example.chat_engine_sessions(llm, hei)

    told = system_text(llm.calls[-1])
    fact = example.TELLS[1]
    assert fact in first_memory_line(told)  # a paraphrased question ranks the fact first
    assert example.SHOP_DOCS[0] in told  # the retriever's knowledge base
    assert answer == "Ask for a nut-free cake."


async def test_agent_session_two_is_given_the_fact_from_session_one(example: ModuleType, hei: HEIMemory) -> None:
    calls: list[list[ChatMessage]] = []
    answer = await example.agent_sessions(recording_function_llm(calls, reply="Pack rice cakes."), hei, user="maya")

    told = system_text(calls[-1])
    assert example.TELLS[1] in first_memory_line(told)
    assert example.AGENT_QUESTION not in told
    assert answer == "Pack rice cakes."

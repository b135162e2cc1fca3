"""Chat engines on the real embedded SmolLM2 (HEINWLocalLLM) get what the user said in an earlier session.

The model loads once per module. A thin recorder between the adapter and the
model keeps every chat exactly as it reaches the chat template, so the tests
check what the model was given in session 2 (the session-1 fact, in its system
message) and that it gave a real, non-empty answer; a 135M model's wording is
not asserted. Replies are capped at a few tokens to keep this fast on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.memory.hei_nw import HEINWLocalLLM, HEINWMemory
from llamaindex_fakes import FACT, FACT_Q

from hei_nw_plugin.config import HeiNwSettings, ModelSettings
from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.wrapper import HeiNwForCausalLM

pytestmark = [pytest.mark.integration, pytest.mark.model]

MAX_NEW_TOKENS = 8


class RecordedModel:
    """The loaded model, keeping each chat it is asked to answer and the reply."""

    def __init__(self, lm: HeiNwForCausalLM) -> None:
        self.lm = lm
        self.calls: list[tuple[list[dict[str, str]], str]] = []

    def chat(self, messages: list[dict[str, str]], **kwargs: Any) -> Any:
        answer = self.lm.chat(messages, **kwargs)
        self.calls.append(([dict(m) for m in messages], answer.text))
        return answer


@pytest.fixture(scope="module")
def lm() -> HeiNwForCausalLM:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    return HeiNwForCausalLM.from_settings(HeiNwSettings(), mode="B0")  # default ModelSettings: the embedded SmolLM2


@pytest.fixture
def model(lm: HeiNwForCausalLM) -> RecordedModel:
    return RecordedModel(lm)


@pytest.fixture
def llm(model: RecordedModel) -> HEINWLocalLLM:
    return HEINWLocalLLM(lm=model, model_settings=ModelSettings(max_new_tokens=MAX_NEW_TOKENS))


@pytest.fixture
def hei(tmp_path: Path, minilm: Any) -> Iterator[HEIMemory]:
    with HEIMemory.open(tmp_path, embedder=minilm) as memory:  # default settings; the shared MiniLM instance
        yield memory


def system_of(chat: list[dict[str, str]]) -> str:
    assert chat[0]["role"] == "system", chat  # the adapter merges every system message into one, first
    assert all(m["role"] != "system" for m in chat[1:])
    return chat[0]["content"]


def test_condense_plus_context_engine_answers_session_two_with_the_session_one_fact(
    example: ModuleType, hei: HEIMemory, model: RecordedModel, llm: HEINWLocalLLM,
) -> None:
    answer = example.chat_engine_sessions(llm, hei)  # the example's own flow, on the real model

    chat, reply = model.calls[-1]
    assert example.TELLS[1] in system_of(chat)  # recalled in session 2, whose history starts empty
    assert example.SHOP_DOCS[0] in system_of(chat)  # the retriever's knowledge base
    assert chat[-1] == {"role": "user", "content": example.QUESTION}
    assert answer.strip() and answer == reply.strip()


def test_simple_chat_engine_answers_session_two_with_the_session_one_fact(
    hei: HEIMemory, model: RecordedModel, llm: HEINWLocalLLM,
) -> None:
    def engine(session_id: str) -> SimpleChatEngine:
        memory = HEINWMemory.from_defaults(hei_memory=hei, namespace="alice", session_id=session_id)
        return SimpleChatEngine.from_defaults(llm=llm, memory=memory, system_prompt="You are a pet shop assistant.")

    engine("s1").chat(FACT)
    assert FACT not in system_of(model.calls[-1][0])  # never recalled as a memory of itself
    answer = str(engine("s2").chat(FACT_Q))

    chat, reply = model.calls[-1]
    assert FACT in system_of(chat)
    assert [m["role"] for m in chat] == ["system", "user"] and chat[-1]["content"] == FACT_Q
    assert answer.strip() and answer == reply.strip()

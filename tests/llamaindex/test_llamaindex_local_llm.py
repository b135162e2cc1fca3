"""HEINWLocalLLM: llama-index messages in, the wrapper's chat() reply out (a fake wrapper; the real one is a model test)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.memory.hei_nw import HEINWLocalLLM, HEINWMemory
from llama_index.memory.hei_nw.local_llm import chat_dicts
from llamaindex_fakes import FACT, FACT_Q

from hei_nw_plugin.config import ModelSettings
from hei_nw_plugin.memory import HEIMemory


class FakeLM:
    """Stands in for HeiNwForCausalLM: records the chat it was given and replies with a fixed text."""

    def __init__(self, reply: str = "Chicken-free treats.") -> None:
        self.reply = reply
        self.calls: list[tuple[list[dict[str, str]], int | None]] = []

    def chat(self, messages: list[dict[str, str]], *, max_new_tokens: int | None = None) -> Any:
        self.calls.append((list(messages), max_new_tokens))
        return SimpleNamespace(text=self.reply, new_tokens=4, timings_ms={"generate": 1.0})


def local(lm: FakeLM, max_new_tokens: int = 24) -> HEINWLocalLLM:
    return HEINWLocalLLM(lm=lm, model_settings=ModelSettings(max_new_tokens=max_new_tokens))


def test_messages_map_to_template_roles_with_one_leading_system_message() -> None:
    messages = [
        ChatMessage(role=MessageRole.SYSTEM, content="Context: the shop sells duck treats."),
        ChatMessage(role=MessageRole.SYSTEM, content="Long-term memory: Biscuit is allergic to chicken."),
        ChatMessage(role=MessageRole.USER, content="Hi"),
        ChatMessage(role=MessageRole.ASSISTANT, content="Hello!"),
        ChatMessage(role=MessageRole.DEVELOPER, content="Be brief."),
        ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text="What can he eat?"), ImageBlock(url="http://x/dog.png")]),
    ]
    assert chat_dicts(messages) == [
        {"role": "system", "content": "Context: the shop sells duck treats.\n\n"
                                      "Long-term memory: Biscuit is allergic to chicken.\n\nBe brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What can he eat?"},
    ]


def test_messages_without_text_are_dropped_and_tool_results_are_user_turns() -> None:
    messages = [
        ChatMessage(role=MessageRole.USER, content="Weather?"),
        ChatMessage(role=MessageRole.ASSISTANT, content=""),  # a bare tool call
        ChatMessage(role=MessageRole.TOOL, content="Sunny, 21 C"),
    ]
    assert chat_dicts(messages) == [{"role": "user", "content": "Weather?"}, {"role": "user", "content": "Sunny, 21 C"}]


def test_chat_sends_the_formatted_chat_and_the_token_cap() -> None:
    lm = FakeLM()
    response = local(lm, max_new_tokens=12).chat([ChatMessage(role=MessageRole.USER, content="Treats?")])
    assert lm.calls == [([{"role": "user", "content": "Treats?"}], 12)]
    assert response.message.role == MessageRole.ASSISTANT and response.message.content == lm.reply
    assert response.raw == {"new_tokens": 4, "timings_ms": {"generate": 1.0}}


def test_complete_is_one_user_turn() -> None:
    lm = FakeLM("Standalone question.")
    assert local(lm).complete("Rewrite: what can he eat?").text == "Standalone question."
    assert lm.calls[0][0] == [{"role": "user", "content": "Rewrite: what can he eat?"}]


def test_streams_yield_the_whole_reply_once() -> None:
    llm = local(FakeLM("Duck treats."))
    chunks = list(llm.stream_chat([ChatMessage(role=MessageRole.USER, content="Treats?")]))
    assert [(c.delta, c.message.content) for c in chunks] == [("Duck treats.", "Duck treats.")]
    assert [c.delta for c in llm.stream_complete("Treats?")] == ["Duck treats."]


async def test_async_methods_give_the_same_reply() -> None:
    lm = FakeLM("Duck treats.")
    llm = local(lm)
    messages = [ChatMessage(role=MessageRole.USER, content="Treats?")]
    assert (await llm.achat(messages)).message.content == "Duck treats."
    assert (await llm.acomplete("Treats?")).text == "Duck treats."
    assert [c.delta async for c in await llm.astream_chat(messages)] == ["Duck treats."]
    assert [c.delta async for c in await llm.astream_complete("Treats?")] == ["Duck treats."]
    assert len(lm.calls) == 4


def test_metadata_is_a_chat_model_without_tool_calling() -> None:
    meta = local(FakeLM(), max_new_tokens=40).metadata
    assert meta.is_chat_model and not meta.is_function_calling_model
    assert (meta.context_window, meta.num_output, meta.model_name) == (8192, 40, "embedded:smollm2-135m")


def test_constructing_loads_no_model() -> None:
    assert HEINWLocalLLM().lm is None  # loads on the first call, not before


def test_chat_engine_hands_the_recalled_fact_to_the_model(hei: HEIMemory) -> None:
    lm = FakeLM()
    llm = local(lm)
    SimpleChatEngine.from_defaults(
        llm=llm, memory=HEINWMemory.from_defaults(hei_memory=hei, namespace="alice", session_id="s1")).chat(FACT)
    engine = SimpleChatEngine.from_defaults(
        llm=llm, memory=HEINWMemory.from_defaults(hei_memory=hei, namespace="alice", session_id="s2"),
        system_prompt="You are a pet shop assistant.")

    assert str(engine.chat(FACT_Q)) == lm.reply
    sent = lm.calls[-1][0]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[0]["content"].startswith("You are a pet shop assistant.") and FACT in sent[0]["content"]
    assert sent[1]["content"] == FACT_Q

"""HEINWMemoryBlock inside llama-index's Memory: flushed messages are written, later sessions recall them."""

from __future__ import annotations

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.memory import Memory
from llama_index.memory.hei_nw import HEINWMemoryBlock
from llamaindex_fakes import FACT, FACT_Q, OTHER, RecordingLLM, system_text

from hei_nw_plugin.memory import HEIMemory


def short_memory(block: HEINWMemoryBlock, session_id: str) -> Memory:
    # Whitespace tokens and a small limit, so the third turn pushes the first out to the block.
    return Memory.from_defaults(session_id=session_id, memory_blocks=[block], token_limit=40, token_flush_size=10,
                                tokenizer_fn=str.split)


def test_block_writes_flushed_messages_and_a_new_session_recalls_them(hei: HEIMemory, llm: RecordingLLM) -> None:
    block = HEINWMemoryBlock(hei_memory=hei, namespace="alice")
    first = SimpleChatEngine.from_defaults(llm=llm, memory=short_memory(block, "s1"))
    first.chat(FACT)
    assert hei.list_traces(namespace="alice") == []  # still in the short-term queue
    first.chat(OTHER)
    first.chat("I also keep two cats called Miso and Tofu at home")

    [trace] = [t for t in hei.list_traces(namespace="alice") if t.text == FACT]
    assert trace.source.conversation_id == "s1" and trace.metadata == {"role": "user"}
    assert "Noted." not in [t.text for t in hei.list_traces(namespace="alice")]

    SimpleChatEngine.from_defaults(llm=llm, memory=short_memory(block, "s2")).chat(FACT_Q)
    told = system_text(llm.calls[-1])
    assert "<episodic_memory>" in told and FACT in told


async def test_block_cue_is_the_latest_user_message(hei: HEIMemory) -> None:
    hei.write_many([FACT, OTHER], namespace="alice")
    block = HEINWMemoryBlock(hei_memory=hei, namespace="alice", k=1)

    about_marathon = [ChatMessage(role=MessageRole.USER, content=FACT_Q),
                      ChatMessage(role=MessageRole.ASSISTANT, content="Duck treats."),
                      ChatMessage(role=MessageRole.USER, content="How is my Lisbon marathon training going?")]
    assert OTHER in await block.aget(about_marathon)
    assert FACT not in await block.aget(about_marathon)
    assert FACT in await block.aget(about_marathon[:1])


async def test_block_recalls_nothing_without_a_user_message_or_a_known_namespace(hei: HEIMemory) -> None:
    hei.write(FACT, namespace="alice")
    block = HEINWMemoryBlock(hei_memory=hei, namespace="alice")
    assert await block.aget([]) == ""
    assert await block.aget([ChatMessage(role=MessageRole.ASSISTANT, content=FACT_Q)]) == ""
    stranger = HEINWMemoryBlock(hei_memory=hei, namespace="bob")
    assert await stranger.aget([ChatMessage(role=MessageRole.USER, content=FACT_Q)]) == ""


async def test_block_respects_accept_short_term_memory(hei: HEIMemory) -> None:
    block = HEINWMemoryBlock(hei_memory=hei, namespace="alice", accept_short_term_memory=False)
    await block.aput([ChatMessage(role=MessageRole.USER, content=FACT)], from_short_term_memory=True)
    assert hei.list_traces(namespace="alice") == []
    await block.aput([ChatMessage(role=MessageRole.USER, content=FACT)])
    assert [t.text for t in hei.list_traces(namespace="alice")] == [FACT]

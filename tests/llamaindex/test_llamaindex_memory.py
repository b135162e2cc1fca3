"""HEINWMemory: chat engines and agents get what a user said in an earlier session."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine import CondensePlusContextChatEngine, SimpleChatEngine
from llama_index.memory.hei_nw import HEINWMemory, HEINWRetriever
from llamaindex_fakes import FACT, FACT_Q, OTHER, RecordingLLM, recording_function_llm, system_text

from hei_nw_plugin.memory import HEIMemory

# A reply the gate would accept if it were offered: only user turns are written by default.
FACTUAL_REPLY = "Biscuit has a vet appointment on 12 March at the Riverside clinic"


def session(hei: HEIMemory, user: str, session_id: str, **kwargs: object) -> HEINWMemory:
    return HEINWMemory.from_defaults(hei_memory=hei, namespace=user, session_id=session_id, **kwargs)


def texts(hei: HEIMemory, user: str) -> list[str]:
    return [t.text for t in hei.list_traces(namespace=user)]


def test_simple_chat_engine_recalls_a_fact_from_an_earlier_session(hei: HEIMemory, llm: RecordingLLM) -> None:
    first = SimpleChatEngine.from_defaults(llm=llm, memory=session(hei, "alice", "s1"))
    first.chat(FACT)
    assert system_text(llm.calls[0]) == ""  # a message is never recalled as a memory of itself
    first.chat(OTHER)

    second_memory = session(hei, "alice", "s2")
    answer = SimpleChatEngine.from_defaults(llm=llm, memory=second_memory).chat(FACT_Q)

    sent = llm.calls[-1]
    assert FACT in system_text(sent)
    assert FACT_Q not in system_text(sent)
    assert sent[-1].role == MessageRole.USER and sent[-1].content == FACT_Q
    assert str(answer) == llm.reply
    assert [m.content for m in second_memory.get_all()] == [FACT_Q, llm.reply]  # short-term is per session


def test_another_user_never_gets_the_fact(hei: HEIMemory, llm: RecordingLLM) -> None:
    SimpleChatEngine.from_defaults(llm=llm, memory=session(hei, "alice", "s1")).chat(FACT)
    SimpleChatEngine.from_defaults(llm=llm, memory=session(hei, "bob", "s2")).chat(FACT_Q)
    assert all(FACT not in (m.content or "") for m in llm.calls[-1])


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_condense_plus_context_gets_memory_and_retrieved_context(
    hei: HEIMemory, llm: RecordingLLM, use_async: bool,
) -> None:
    shop = "Pet Pantry sells duck and salmon treats for dogs"
    hei.write({"text": shop, "pin": True}, namespace="kb")
    retriever = HEINWRetriever(hei, namespace="kb")

    async def chat(session_id: str, message: str) -> str:
        engine = CondensePlusContextChatEngine.from_defaults(
            retriever=retriever, llm=llm, memory=session(hei, "alice", session_id), system_prompt="Be brief.")
        return str(await engine.achat(message) if use_async else engine.chat(message))

    await chat("s1", FACT)
    answer = await chat("s2", FACT_Q)

    told = system_text(llm.calls[-1])
    assert FACT in told  # from HEINWMemory
    assert shop in told  # from HEINWRetriever
    assert "Be brief." in told
    assert answer == llm.reply
    gate = hei.stats(namespace="alice").gate  # both user turns were offered; the question asserts nothing: not kept
    assert (gate["accepted"], gate["cold"], gate["rejected"]) == (1, 0, 1)
    assert [t.text for t in hei.list_traces(namespace="alice") if t.tier == "salient"] == [FACT]


async def test_function_agent_recalls_a_fact_from_an_earlier_session(hei: HEIMemory) -> None:
    calls: list[list[ChatMessage]] = []
    agent = FunctionAgent(tools=[], llm=recording_function_llm(calls), system_prompt="You are a pet shop assistant.")
    await agent.run(user_msg=FACT, memory=session(hei, "alice", "a1"))
    assert FACT not in system_text(calls[0])

    second = session(hei, "alice", "a2")
    result = await agent.run(user_msg=FACT_Q, memory=second)

    told = system_text(calls[-1])
    assert FACT in told and "You are a pet shop assistant." in told
    assert FACT_Q not in told
    assert str(result) == "Noted."
    assert [(m.role, m.content) for m in await second.aget_all()] == [
        (MessageRole.USER, FACT_Q), (MessageRole.ASSISTANT, "Noted.")]


def test_only_user_messages_are_written_by_default(hei: HEIMemory, llm: RecordingLLM) -> None:
    llm.reply = FACTUAL_REPLY
    SimpleChatEngine.from_defaults(llm=llm, memory=session(hei, "alice", "s1")).chat(FACT)
    [trace] = hei.list_traces(namespace="alice")
    assert trace.text == FACT
    assert trace.metadata == {"role": "user"} and trace.source.conversation_id == "s1"

    both = session(hei, "carol", "s2", write_roles=("user", "assistant"))
    SimpleChatEngine.from_defaults(llm=llm, memory=both).chat(FACT)
    assert texts(hei, "carol") == [FACT, FACTUAL_REPLY]


def test_a_user_message_is_written_after_the_recall_that_answers_it(hei: HEIMemory) -> None:
    memory = session(hei, "alice", "s1")
    memory.put(ChatMessage(role=MessageRole.USER, content=FACT))
    assert texts(hei, "alice") == []
    assert system_text(memory.get()) == ""
    assert texts(hei, "alice") == [FACT]

    memory.put(ChatMessage(role=MessageRole.USER, content=OTHER))
    memory.flush()
    assert texts(hei, "alice") == [FACT, OTHER]


def test_set_writes_only_new_messages_and_reset_keeps_long_term(hei: HEIMemory) -> None:
    memory = session(hei, "alice", "s1")
    turn = [ChatMessage(role=MessageRole.USER, content=FACT), ChatMessage(role=MessageRole.ASSISTANT, content="Noted.")]
    memory.set(turn)
    memory.set([*turn, ChatMessage(role=MessageRole.USER, content=OTHER)])
    assert texts(hei, "alice") == [FACT, OTHER]
    assert hei.stats(namespace="alice").gate["by_reason"].get("duplicate", 0) == 0  # FACT was not offered twice

    memory.reset()
    assert memory.get_all() == []
    assert FACT in system_text(session(hei, "alice", "s2").get(input=FACT_Q))

    restored = session(hei, "dave", "s3", chat_history=[ChatMessage(role=MessageRole.USER, content=FACT)])
    assert [m.content for m in restored.get_all()] == [FACT] and texts(hei, "dave") == []  # restoring is not saying


def test_existing_system_message_is_extended_and_extra_kwargs_are_accepted(hei: HEIMemory) -> None:
    hei.write(FACT, namespace="alice")
    memory = session(hei, "alice", "s1")
    memory.put(ChatMessage(role=MessageRole.SYSTEM, content="You are terse."))
    memory.put(ChatMessage(role=MessageRole.USER, content=FACT_Q))

    sent = memory.get(initial_token_count=12, some_engine_flag=True)

    assert [m.role for m in sent] == [MessageRole.SYSTEM, MessageRole.USER]
    assert sent[0].content.startswith("You are terse.") and FACT in sent[0].content
    assert memory.get_all()[0].content == "You are terse."  # the stored history is untouched


def test_pin_writes_what_the_gate_rejects(hei: HEIMemory) -> None:
    chitchat = [ChatMessage(role=MessageRole.USER, content="ok thanks, sounds good")]
    session(hei, "alice", "s1").set(chitchat)
    assert [(t.text, t.tier, t.pinned) for t in hei.list_traces(namespace="alice")] == [("ok thanks, sounds good", "cold", False)]
    session(hei, "alice", "s2", pin=True).set(chitchat)
    pinned = [t for t in hei.list_traces(namespace="alice") if t.pinned]
    assert [(t.text, t.tier) for t in pinned] == [("ok thanks, sounds good", "salient")]


def test_long_messages_are_split_and_long_cues_clipped(mem_factory: Callable[..., HEIMemory]) -> None:
    hei = mem_factory(limits={"max_text_chars": 120})
    words = [f"w{i}" for i in range(60)]
    long_text = " ".join(words)  # 239 characters
    memory = session(hei, "alice", "s1", pin=True)
    memory.set([ChatMessage(role=MessageRole.USER, content=long_text)])

    spans = texts(hei, "alice")
    assert len(spans) == 2 and all(len(s) <= 120 for s in spans)
    assert " ".join(spans).split() == words
    assert system_text(memory.get(input=long_text * 3)) != ""  # a cue over the limit still recalls


def test_bad_configuration_is_rejected(hei: HEIMemory) -> None:
    with pytest.raises(ValueError, match="memory"):
        session(hei, "alice", "s1", memory_template="no placeholder")
    with pytest.raises(TypeError, match="HEIMemory"):
        HEINWMemory.from_defaults(hei_memory="not an engine", namespace="alice")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        session(hei, "", "s1")

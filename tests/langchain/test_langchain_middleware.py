"""HEINWMemoryMiddleware inside a real ``create_agent`` graph with a fake chat model.

The recorder sees the messages exactly as the model receives them, so "the fact
told in thread A is in the system message of thread B" is checked where it matters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_hei_nw import HEINWMemoryMiddleware
from langgraph.checkpoint.memory import InMemorySaver

from hei_nw_plugin.errors import InvalidNamespaceError
from hei_nw_plugin.memory import HEIMemory

FACT = "I keep the spare studio key in the blue toolbox in the garage."
QUESTION = "Where do I keep the spare studio key?"


@dataclass
class UserContext:
    user_id: str


class ToolCallingFake(FakeMessagesListChatModel):
    """The fake chat model, accepting tools (it replays its scripted responses whatever they are)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFake:
        return self


def _agent(mem: HEIMemory, replies: int = 4, **kwargs: Any) -> Any:
    model = ToolCallingFake(responses=[AIMessage(content=f"reply {i}") for i in range(replies)])
    return create_agent(model, tools=[], middleware=[HEINWMemoryMiddleware(mem, **kwargs)],
                        context_schema=UserContext, checkpointer=InMemorySaver(), system_prompt="You are a helpful assistant.")


def _ask(agent: Any, text: str, *, user: str, thread: str, recorder: Any) -> dict[str, Any]:
    return agent.invoke({"messages": [HumanMessage(text)]}, context=UserContext(user),
                        config={"configurable": {"thread_id": thread}, "callbacks": [recorder]})


def test_fact_from_one_thread_reaches_the_system_message_in_another(mem: HEIMemory, recorder: Any) -> None:
    agent = _agent(mem)
    _ask(agent, FACT, user="priya", thread="monday", recorder=recorder)
    assert "blue toolbox" not in recorder.system_text(0)  # nothing to recall before the first turn

    traces = mem.list_traces(namespace="priya")
    assert [t.text for t in traces] == [f"User: {FACT}"]
    assert traces[0].source.conversation_id == "monday" and traces[0].source.turn == 0
    assert not traces[0].pinned  # admitted by the gate, not forced

    _ask(agent, QUESTION, user="priya", thread="friday", recorder=recorder)
    system = recorder.system_text(-1)
    assert system.startswith("You are a helpful assistant.")
    assert "blue toolbox" in system
    assert [type(m).__name__ for m in recorder.calls[-1]] == ["SystemMessage", "HumanMessage"]  # thread B is fresh


def test_other_users_do_not_see_the_fact(mem: HEIMemory, recorder: Any) -> None:
    agent = _agent(mem)
    _ask(agent, FACT, user="priya", thread="t1", recorder=recorder)
    _ask(agent, QUESTION, user="marco", thread="t2", recorder=recorder)
    assert "blue toolbox" not in recorder.system_text(-1)
    assert all("blue" not in t.text for t in mem.list_traces(namespace="marco"))
    gate = mem.stats(namespace="marco").gate
    assert gate["accepted"] + gate["cold"] + gate["rejected"] == 1  # marco's turn was offered


def test_chitchat_turns_are_kept_cold_not_salient(mem: HEIMemory, recorder: Any) -> None:
    agent = _agent(mem)
    _ask(agent, "ok thanks, sounds good", user="priya", thread="t1", recorder=recorder)
    assert [t.tier for t in mem.list_traces(namespace="priya")] == ["cold"]
    assert mem.stats().gate["by_reason"] == {"cold": 1} and mem.stats().gate["accepted"] == 0


def test_checkpointed_state_holds_no_recalled_memory(mem: HEIMemory, recorder: Any) -> None:
    agent = _agent(mem)
    _ask(agent, FACT, user="priya", thread="t1", recorder=recorder)
    out = _ask(agent, "My gym locker code is 4471.", user="priya", thread="t1", recorder=recorder)
    assert "blue toolbox" in recorder.system_text(-1)
    assert [m.text for m in out["messages"]] == [FACT, "reply 0", "My gym locker code is 4471.", "reply 1"]
    assert [t.source.turn for t in mem.list_traces(namespace="priya")] == [0, 1]


async def test_async_agent_recalls_and_writes(mem: HEIMemory, recorder: Any) -> None:
    agent = _agent(mem)
    cfg = {"configurable": {"thread_id": "a1"}, "callbacks": [recorder]}
    await agent.ainvoke({"messages": [HumanMessage(FACT)]}, context=UserContext("priya"), config=cfg)
    assert len(await mem.alist_traces(namespace="priya")) == 1
    cfg = {"configurable": {"thread_id": "a2"}, "callbacks": [recorder]}
    await agent.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=UserContext("priya"), config=cfg)
    assert "blue toolbox" in recorder.system_text(-1)


def test_namespace_callable_and_template(mem: HEIMemory, recorder: Any) -> None:
    agent = _agent(mem, namespace=lambda runtime: f"tenant-a/{runtime.context.user_id}", template="MEMORY:\n{memory}")
    _ask(agent, FACT, user="priya", thread="t1", recorder=recorder)
    assert len(mem.list_traces(namespace="tenant-a/priya")) == 1
    _ask(agent, QUESTION, user="priya", thread="t2", recorder=recorder)
    assert "MEMORY:\n1." in recorder.system_text(-1)


def test_user_id_may_come_from_configurable(mem: HEIMemory, recorder: Any) -> None:
    model = FakeMessagesListChatModel(responses=[AIMessage("ok"), AIMessage("ok")])
    agent = create_agent(model, middleware=[HEINWMemoryMiddleware(mem)])
    agent.invoke({"messages": [HumanMessage(FACT)]}, config={"configurable": {"user_id": "cfg-user"}})
    assert len(mem.list_traces(namespace="cfg-user")) == 1
    with pytest.raises(InvalidNamespaceError):
        agent.invoke({"messages": [HumanMessage(QUESTION)]})


def test_turn_event_and_write_turns_options(mem: HEIMemory, recorder: Any) -> None:
    agent = _agent(mem, turn_event=lambda turn: {"text": " / ".join(m.text for m in turn), "pin": True})
    _ask(agent, "hi", user="u", thread="t1", recorder=recorder)
    assert [t.text for t in mem.list_traces(namespace="u")] == ["hi / reply 0"]
    quiet = _agent(mem, write_turns=False)
    _ask(quiet, FACT, user="v", thread="t1", recorder=recorder)
    assert mem.list_traces(namespace="v") == []


def test_with_tools_gives_the_agent_remember_and_forget(mem: HEIMemory, recorder: Any) -> None:
    model = ToolCallingFake(responses=[
        AIMessage(content="", tool_calls=[{"name": "remember", "args": {"fact": "Priya's locker code is 4471"}, "id": "c1"}]),
        AIMessage(content="Saved."),
    ])
    middleware = HEINWMemoryMiddleware(mem, with_tools=True, write_turns=False)
    agent = create_agent(model, middleware=[middleware], context_schema=UserContext)
    out = agent.invoke({"messages": [HumanMessage("remember my locker code 4471")]}, context=UserContext("priya"))
    assert {t.name for t in middleware.tools} == {"remember", "forget"}
    assert "Saved to memory" in out["messages"][2].text
    assert [t.text for t in mem.list_traces(namespace="priya")] == ["Priya's locker code is 4471"]


def test_min_similarity_keeps_unrelated_memories_out(mem: HEIMemory, recorder: Any) -> None:
    mem.write({"text": "Marco adopted a grey cat called Pixel", "pin": True}, namespace="priya")
    _ask(_agent(mem, write_turns=False), QUESTION, user="priya", thread="t1", recorder=recorder)
    assert "Pixel" in recorder.system_text(-1)  # k=5 recalls whatever there is
    _ask(_agent(mem, write_turns=False, min_similarity=0.9), QUESTION, user="priya", thread="t2", recorder=recorder)
    assert "Pixel" not in recorder.system_text(-1)
    assert recorder.system_text(-1) == "You are a helpful assistant."

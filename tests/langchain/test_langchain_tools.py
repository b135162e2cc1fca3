"""remember / forget, called directly and by an agent with a per-user namespace."""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_hei_nw import memory_tools

from hei_nw_plugin.memory import HEIMemory


def _tools(mem: HEIMemory, **kwargs: Any) -> dict[str, Any]:
    return {t.name: t for t in memory_tools(mem, **kwargs)}


def test_remember_pins_the_fact_even_if_the_gate_would_not(mem: HEIMemory) -> None:
    tools = _tools(mem, namespace="u1")
    answer = tools["remember"].invoke({"fact": "ok thanks, sounds good"})
    [trace] = mem.list_traces(namespace="u1")
    assert answer == f"Saved to memory (id {trace.id})."
    assert trace.pinned and trace.text == "ok thanks, sounds good"


def test_forget_by_id_and_by_description(mem: HEIMemory) -> None:
    tools = _tools(mem, namespace="u1")
    tools["remember"].invoke({"fact": "Priya keeps the spare studio key in the blue toolbox"})
    tools["remember"].invoke({"fact": "Marco moved the team offsite to Thursday"})
    tools["remember"].invoke({"fact": "Ines changed the router admin password on Monday"})
    marco = next(t for t in mem.list_traces(namespace="u1") if t.text.startswith("Marco"))
    assert tools["forget"].invoke({"what": marco.id}) == f"Forgotten: {marco.text}"
    answer = tools["forget"].invoke({"what": "where Priya keeps the spare studio key"})
    assert answer == "Forgotten: Priya keeps the spare studio key in the blue toolbox"
    assert [t.text for t in mem.list_traces(namespace="u1")] == ["Ines changed the router admin password on Monday"]


def test_forget_leaves_memory_alone_when_nothing_matches(mem: HEIMemory) -> None:
    tools = _tools(mem, namespace="u1", min_similarity=0.99)
    tools["remember"].invoke({"fact": "Priya keeps the spare studio key in the blue toolbox"})
    assert tools["forget"].invoke({"what": "the weather in Lisbon"}).startswith("Nothing forgotten")
    assert tools["forget"].invoke({"what": "  "}).startswith("Nothing forgotten")
    assert _tools(mem, namespace="empty")["forget"].invoke({"what": "anything"}).startswith("Nothing forgotten")
    assert len(mem.list_traces(namespace="u1")) == 1


async def test_async_tools(mem: HEIMemory) -> None:
    tools = _tools(mem, namespace="u1")
    await tools["remember"].ainvoke({"fact": "Priya's gym locker code is 4471"})
    assert (await tools["forget"].ainvoke({"what": "gym locker code"})).startswith("Forgotten")
    assert mem.list_traces(namespace="u1") == []


class ToolCallingFake(FakeMessagesListChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFake:
        return self


def test_agent_tools_use_the_callers_namespace(mem: HEIMemory) -> None:
    def script() -> ToolCallingFake:
        return ToolCallingFake(responses=[
            AIMessage(content="", tool_calls=[{"name": "remember", "args": {"fact": "My locker code is 4471"}, "id": "c1"}]),
            AIMessage(content="Saved."),
        ])

    tools = memory_tools(mem)  # no namespace: the user_id of each run decides
    create_agent(script(), tools=tools).invoke({"messages": [HumanMessage("save it")]}, context={"user_id": "priya"})
    create_agent(script(), tools=tools).invoke({"messages": [HumanMessage("save it")]},
                                              config={"configurable": {"user_id": "marco", "thread_id": "th"}})
    assert [t.text for t in mem.list_traces(namespace="priya")] == ["My locker code is 4471"]
    [marco] = mem.list_traces(namespace="marco")
    assert marco.source.conversation_id == "th"

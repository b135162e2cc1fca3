"""A LangChain agent whose long-term memory is HEI-NW, reached over MCP, offline.

    python examples/mcp_agent.py                 # HEI-NW's MCP server as a stdio child process, the embedded model
    python examples/mcp_agent.py --mcp-url http://127.0.0.1:8000/mcp --api-key hei_...   # a running `hei-nw serve`

The memory tools come from HEI-NW's MCP server (``hei-nw mcp``, started on stdio the way a desktop
assistant starts it, or the streamable HTTP endpoint of ``hei-nw serve``) through
``langchain-mcp-adapters``: ``load_mcp_tools`` turns each MCP tool into a LangChain tool, and
``create_agent(model, tools=...)`` binds them into an agent, which is all a tool-calling chat model
needs to use its memory.

The embedded SmolLM2-135M cannot call tools, so here the example decides the calls and runs them as
the agent's tool step would run a model's (a ``ToolCall`` in, a ``ToolMessage`` out, through MCP to
the server): on "monday" it ``remember``-s
each fact the user states (pinned: the user asked); on "friday" it ``recall``-s with each question
and the model answers from the recalled memory in its system message; then it ``forget``-s the key's
trace and asks again, and the model no longer has it. Each step prints what was said, the tool
calls with their results, the memory shown to the model and its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage, ToolCall, ToolMessage
from langchain_core.tools import BaseTool
from langchain_hei_nw import ChatHEINWLocal
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools
from langgraph.graph.state import CompiledStateGraph

from hei_nw_plugin.config import ModelSettings

SYSTEM_PROMPT = "You are a helpful assistant. Answer in one short sentence."
# (what the user says on "monday", what they ask on "friday")
TOLD_AND_ASKED = [
    ("My name is Priya and I keep the spare studio key in the blue toolbox.", "Where do I keep the spare studio key?"),
    ("My daughter's school play is on Thursday at six in the evening.", "When is my daughter's school play?"),
]


@dataclass
class Call:
    """One MCP tool call and its structured result (or the tool error's text)."""

    name: str
    args: dict[str, Any]
    result: dict[str, Any] | str


@dataclass
class Step:
    """One user message and what came of it."""

    thread: str
    said: str
    calls: list[Call] = field(default_factory=list)
    memory_shown: str = ""
    answer: str = ""


@dataclass
class Run:
    """The MCP tools the agent got, the agent itself, and the steps."""

    tools: list[BaseTool]
    agent: CompiledStateGraph[Any, Any, Any, Any]
    steps: list[Step]


def stdio_server(data_dir: Path, *, tenant: str = "demo", user: str = "priya") -> dict[str, Any]:
    """langchain-mcp-adapters' connection to ``hei-nw mcp`` on stdio (the desktop assistant's way)."""
    return {"transport": "stdio", "command": sys.executable,
            "args": ["-m", "hei_nw_plugin.cli", "--data-dir", str(data_dir), "mcp", "--tenant", tenant, "--user", user],
            "env": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}}


def http_server(url: str, api_key: str, *, user: str = "priya") -> dict[str, Any]:
    """The connection to a streamable HTTP endpoint (``hei-nw serve`` at /mcp, or ``hei-nw mcp --transport http``)."""
    return {"transport": "streamable_http", "url": url, "headers": {"Authorization": f"Bearer {api_key}", "X-HEI-User": user}}


class _Tools:
    """Runs the tool calls the example chooses the way an agent's tool step runs a model's: a ToolCall in, a ToolMessage out."""

    def __init__(self, tools: list[BaseTool]) -> None:
        self.by_name = {t.name: t for t in tools}

    async def call(self, step: Step, name: str, **args: Any) -> dict[str, Any] | str:
        tool_call = ToolCall(name=name, args=args, id=f"call-{uuid.uuid4().hex[:8]}", type="tool_call")
        message: ToolMessage = await self.by_name[name].ainvoke(tool_call)
        artifact = message.artifact if isinstance(message.artifact, dict) else {}
        result: dict[str, Any] | str = artifact.get("structured_content") or message.text
        step.calls.append(Call(name, args, result))
        return result


async def _answer(chat_model: BaseChatModel, step: Step, memory: str) -> None:
    step.memory_shown = memory
    system = f"{SYSTEM_PROMPT}\n\nMemory:\n{memory}" if memory else SYSTEM_PROMPT
    step.answer = (await chat_model.ainvoke([SystemMessage(system), HumanMessage(step.said)])).text


async def run(chat_model: BaseChatModel, server: dict[str, Any]) -> Run:
    """Tell the facts on "monday", ask on "friday", forget the key and ask again; every memory access over MCP."""
    async with MultiServerMCPClient({"hei-nw": server}).session("hei-nw") as session:
        tools = await load_mcp_tools(session)
        agent = create_agent(chat_model, tools=tools, system_prompt=SYSTEM_PROMPT)  # a tool-calling model would run this
        mcp = _Tools(tools)
        steps: list[Step] = []
        key_trace = None
        for fact, _ in TOLD_AND_ASKED:
            step = Step("monday", fact)
            decision = await mcp.call(step, "remember", text=fact, pin=True)
            key_trace = key_trace or (decision.get("trace_id") if isinstance(decision, dict) else None)
            steps.append(step)
        for _, question in TOLD_AND_ASKED:
            step = Step("friday", question)
            recalled = await mcp.call(step, "recall", cue=question, k=2)
            await _answer(chat_model, step, recalled["memory_tokens"]["text"] if isinstance(recalled, dict) else "")
            steps.append(step)
        step = Step("friday", TOLD_AND_ASKED[0][1])
        if key_trace is not None:
            await mcp.call(step, "forget", trace_id=key_trace)
        recalled = await mcp.call(step, "recall", cue=step.said, k=2)
        await _answer(chat_model, step, recalled["memory_tokens"]["text"] if isinstance(recalled, dict) else "")
        steps.append(step)
        return Run(tools=tools, agent=agent, steps=steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-dir", type=Path, help="HEI-NW data folder for the stdio server (default: a fresh temporary one)")
    parser.add_argument("--mcp-url", help="streamable HTTP endpoint instead of a stdio child, e.g. http://127.0.0.1:8000/mcp")
    parser.add_argument("--api-key", help="API key for --mcp-url")
    args = parser.parse_args(argv)
    data_dir = None
    if args.mcp_url:
        if not args.api_key:
            parser.error("--mcp-url needs --api-key (make one with `hei-nw api-key --tenant <name>`)")
        server = http_server(args.mcp_url, args.api_key)
    else:
        data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="hei-nw-mcp-"))
        server = stdio_server(data_dir)
    result = asyncio.run(run(ChatHEINWLocal(model_settings=ModelSettings(max_new_tokens=48)), server))
    print(f"MCP tools bound into the agent: {', '.join(t.name for t in result.tools)}\n")
    for step in result.steps:
        print(f"[{step.thread}] user: {step.said}")
        for call in step.calls:
            print(f"  {call.name}({json.dumps(call.args)}) -> {_brief(call.result)}")
        if step.memory_shown:
            print("  memory shown to the model:\n    " + step.memory_shown.replace("\n", "\n    "))
        if step.answer:
            print(f"  assistant: {step.answer}")
        print()
    if data_dir is not None:
        print(f"memory kept in {data_dir} (namespace demo/priya)")


def _brief(result: dict[str, Any] | str) -> str:
    if isinstance(result, str):
        return result
    if "traces" in result:
        return f"{len(result['traces'])} traces: " + json.dumps([t["trace"]["text"] for t in result["traces"]])
    if "reason" in result:
        return f"{result['reason']} (score {result['score']:.2f} vs {result['threshold']:.2f}), trace {result['trace_id']}"
    return json.dumps(result)


if __name__ == "__main__":
    main()

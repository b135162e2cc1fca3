"""A LangChain agent that learns a user's facts in one thread and uses them in another, offline.

    python examples/langchain_agent.py                      # the embedded model on this machine
    python examples/langchain_agent.py --base-url http://127.0.0.1:8000/v1   # the HEI-NW server

The agent is ``langchain.agents.create_agent`` with :class:`HEINWMemoryMiddleware`
(recall into the system message before each model call, the finished turn
offered to the write gate afterwards) and :class:`HEINWStore` as its LangGraph
store. Thread "monday" only hears facts; thread "friday" starts empty and asks
about them, so whatever the model knows there came through HEI-NW. Each step
prints what the user said, the memory the model was shown and its answer.

The chat model is, first that applies: the one given to :func:`run`; the
OpenAI-compatible server at ``--base-url`` / ``HEI_NW_BASE_URL`` (needs
``langchain-openai``); the embedded SmolLM2 through :class:`ChatHEINWLocal`
(needs the ``[model]`` extra).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_hei_nw import ChatHEINWLocal, HEINWMemoryMiddleware, HEINWStore
from langgraph.checkpoint.memory import InMemorySaver

from hei_nw_plugin import HEIMemory
from hei_nw_plugin.config import ModelSettings

SYSTEM_PROMPT = "You are a helpful assistant. Answer in one short sentence."
FACTS = [
    "My name is Priya and I keep the spare studio key in the blue toolbox.",
    "My daughter's school play is on Thursday at six in the evening.",
]
QUESTIONS = [
    "Where do I keep the spare studio key?",
    "When is my daughter's school play?",
]


@dataclass
class Step:
    """One user message and what came of it."""

    thread: str
    said: str
    memory_shown: str
    answer: str


@dataclass
class UserContext:
    user_id: str


class _SystemMessages(BaseCallbackHandler):
    """Remembers the system message of the last model call (where the middleware puts memory)."""

    def __init__(self) -> None:
        self.last = ""

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any) -> None:
        self.last = "\n".join(m.text for m in messages[-1] if isinstance(m, SystemMessage))


def run(chat_model: BaseChatModel, memory: HEIMemory, *, user_id: str = "priya") -> list[Step]:
    """Tell the facts in thread "monday", ask the questions in thread "friday"."""
    agent = create_agent(
        chat_model, middleware=[HEINWMemoryMiddleware(memory)], store=HEINWStore(memory),
        checkpointer=InMemorySaver(), context_schema=UserContext, system_prompt=SYSTEM_PROMPT,
    )
    seen = _SystemMessages()
    steps = []
    for thread, messages in (("monday", FACTS), ("friday", QUESTIONS)):
        for text in messages:
            out = agent.invoke({"messages": [HumanMessage(text)]}, context=UserContext(user_id),
                               config={"configurable": {"thread_id": thread}, "callbacks": [seen]})
            memory_shown = seen.last.removeprefix(SYSTEM_PROMPT).strip()
            steps.append(Step(thread=thread, said=text, memory_shown=memory_shown, answer=out["messages"][-1].text))
    return steps


def default_chat_model(base_url: str | None) -> BaseChatModel:
    """The HEI-NW server when a URL is given, else the embedded model."""
    if base_url:
        try:
            from langchain_openai import ChatOpenAI
        except ImportError as err:
            raise SystemExit('talking to the server needs langchain-openai: pip install "langchain-hei-nw[openai]"') from err
        return ChatOpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "unused"),
                          model=os.environ.get("HEI_NW_MODEL", "hei-nw"), temperature=0)
    return ChatHEINWLocal(model_settings=ModelSettings(max_new_tokens=48))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-dir", type=Path, help="HEI-NW data folder (default: a fresh temporary one)")
    parser.add_argument("--base-url", default=os.environ.get("HEI_NW_BASE_URL"),
                        help="OpenAI-compatible HEI-NW server, e.g. http://127.0.0.1:8000/v1")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="hei-nw-langchain-"))
    with HEIMemory.open(data_dir) as memory:
        for step in run(default_chat_model(args.base_url), memory):
            print(f"[{step.thread}] user: {step.said}")
            if step.memory_shown:
                print("  memory shown to the model:\n    " + step.memory_shown.replace("\n", "\n    "))
            print(f"  assistant: {step.answer}\n")
    print(f"memory kept in {data_dir}")


if __name__ == "__main__":
    main()

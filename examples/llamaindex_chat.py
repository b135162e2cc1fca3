"""A LlamaIndex chat engine and agent that remember a user across sessions with HEI-NW.

Session 1 tells a ``CondensePlusContextChatEngine`` a few facts about the user;
session 2 is a new engine with an empty chat history for the same user, and its
question is answered with HEI-NW's recalled memory in the system message. The
engine's retriever reads a small shop knowledge base kept in another HEI-NW
namespace. Then a ``FunctionAgent`` does the same. Everything runs offline::

    python examples/llamaindex_chat.py --mock            # no model: the mock LLM shows what it was sent
    python examples/llamaindex_chat.py --local           # the embedded SmolLM2 in-process (chat engine only)
    python examples/llamaindex_chat.py --api-base http://127.0.0.1:8000/v1 --model hei-nw
                                                         # the project's OpenAI-compatible server

Any llama-index ``LLM`` works: call :func:`chat_engine_sessions` and
:func:`agent_sessions` with your own. The agent needs a function-calling LLM, so
``--local`` (``HEINWLocalLLM``, which has no tool calling) runs the chat engine only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine import CondensePlusContextChatEngine
from llama_index.core.llms import LLM
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.memory.hei_nw import HEINWLocalLLM, HEINWMemory, HEINWRetriever

from hei_nw_plugin import HEIMemory, MemoryEvent
from hei_nw_plugin.config import ModelSettings

USER = "user-maya"
KB = "kb-bakery"
# What the user says in session 1; the second sentence is the fact session 2 needs.
TELLS = (
    "Hi! I'm Maya, I work night shifts as a nurse in Leeds.",
    "My daughter Zoe is severely allergic to peanuts, so nothing we order may contain nuts.",
)
QUESTION = "I'm ordering a birthday cake for my daughter. What should I tell the bakery?"
AGENT_QUESTION = "Can you suggest a snack to pack for my daughter's school trip?"
SHOP_DOCS = (
    "Crumb & Co bakery takes cake orders 48 hours ahead and bakes nut-free cakes in a separate kitchen on request.",
    "Crumb & Co delivers in Leeds for 4 pounds; orders over 30 pounds deliver free.",
)
SYSTEM_PROMPT = "You are a helpful shopping assistant. Answer in two sentences."


def seed_knowledge_base(hei: HEIMemory) -> None:
    """Pin the shop's documents in their own namespace (pinned: they bypass the write gate)."""
    hei.write_many([MemoryEvent(text=doc, pin=True, key=f"doc-{i}") for i, doc in enumerate(SHOP_DOCS)], namespace=KB)


def chat_engine_sessions(llm: LLM, hei: HEIMemory, *, user: str = USER) -> str:
    """Tell the engine :data:`TELLS` in one session, ask :data:`QUESTION` in a new one; returns the answer."""
    seed_knowledge_base(hei)
    retriever = HEINWRetriever(hei, namespace=KB, k=2)

    def engine(session_id: str) -> CondensePlusContextChatEngine:
        memory = HEINWMemory.from_defaults(hei_memory=hei, namespace=user, session_id=session_id)
        return CondensePlusContextChatEngine.from_defaults(
            retriever=retriever, llm=llm, memory=memory, system_prompt=SYSTEM_PROMPT)

    first = engine("engine-session-1")
    for line in TELLS:
        first.chat(line)
    return str(engine("engine-session-2").chat(QUESTION))


async def agent_sessions(llm: LLM, hei: HEIMemory, *, user: str = USER) -> str:
    """Tell a FunctionAgent :data:`TELLS` in one session, ask :data:`AGENT_QUESTION` in a new one; returns the answer."""
    agent = FunctionAgent(tools=[], llm=llm, system_prompt=SYSTEM_PROMPT)
    first = HEINWMemory.from_defaults(hei_memory=hei, namespace=user, session_id="agent-session-1")
    for line in TELLS:
        await agent.run(user_msg=line, memory=first)
    second = HEINWMemory.from_defaults(hei_memory=hei, namespace=user, session_id="agent-session-2")
    return str(await agent.run(user_msg=AGENT_QUESTION, memory=second))


def mock_llm() -> MockFunctionCallingLLM:
    """A stand-in model that answers by quoting the system messages it was sent."""

    def answer(messages: Sequence[ChatMessage], **_: Any) -> ChatMessage:
        system = "\n".join(m.content or "" for m in messages if m.role == MessageRole.SYSTEM)
        return ChatMessage(role=MessageRole.ASSISTANT, content=f"[mock LLM; its system messages were:]\n{system}")

    return MockFunctionCallingLLM(response_generator=answer, is_chat_model=True)


def server_llm(api_base: str, model: str, context_window: int) -> LLM:
    """The project's OpenAI-compatible server (or any other) as a llama-index chat model."""
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(model=model, api_base=api_base, api_key="not-needed", is_chat_model=True,
                      is_function_calling_model=True, context_window=context_window, temperature=0.0, max_tokens=256)


def local_llm(max_new_tokens: int) -> HEINWLocalLLM:
    """The embedded SmolLM2-135M-Instruct in-process (greedy; loads on first use, offline)."""
    return HEINWLocalLLM(model_settings=ModelSettings(max_new_tokens=max_new_tokens))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--mock", action="store_true", help="use a mock LLM that quotes its system messages")
    which.add_argument("--local", action="store_true", help="run the embedded model in-process (chat engine only)")
    which.add_argument("--api-base", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--model", default="hei-nw", help="model name the server expects")
    ap.add_argument("--context-window", type=int, default=8192, help="model context in tokens")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="--local: reply length cap (tokens)")
    ap.add_argument("--data-dir", help="HEI-NW data folder (default: a new temporary folder)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the embedder's tokenizer, before any fork

    if args.mock:
        llm: LLM = mock_llm()
    elif args.local:
        llm = local_llm(args.max_new_tokens)
    else:
        llm = server_llm(args.api_base, args.model, args.context_window)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="hei-nw-llamaindex-")
    with HEIMemory.open(data_dir) as hei:
        print(f"HEI-NW data in {data_dir}\n")
        print("Session 1 told the chat engine:\n  " + "\n  ".join(TELLS))
        print(f"\nSession 2 asks: {QUESTION}\n{chat_engine_sessions(llm, hei)}\n")
        if not llm.metadata.is_function_calling_model:
            print("FunctionAgent skipped: it needs a function-calling LLM (use --mock or --api-base).")
            return
        print(f"Agent session 2 asks: {AGENT_QUESTION}\n{asyncio.run(agent_sessions(llm, hei, user=USER + '-agent'))}")


if __name__ == "__main__":
    main()

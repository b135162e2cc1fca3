"""``remember`` and ``forget``: tools an agent calls to edit its own long-term memory.

``remember(fact)`` writes the fact pinned: an explicit "remember this" is exactly
what a pin means in HEI-NW (always written, never evicted). ``forget(what)``
deletes one memory, named by the id ``remember`` returned or described in words;
a description deletes the best recall match only when its key is at least
``min_similarity`` (cosine) close, so a vague request forgets nothing rather
than the wrong thing. Both resolve their namespace per call (see
:func:`langchain_hei_nw.namespaces.resolve_namespace`), so one tool pair serves
every user of an agent. Errors the model can fix come back as the tool's answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool

from hei_nw_plugin import HEIMemory, MemoryEvent, SourcePointer
from hei_nw_plugin.errors import InputError, TraceNotFoundError, UnknownNamespaceError
from langchain_hei_nw.namespaces import NamespaceSpec, resolve_namespace, thread_id

REMEMBER_DESCRIPTION = (
    "Save a fact about the user or the task to long-term memory, so it is available in later conversations. "
    "Write the fact as one self-contained sentence. Returns the memory's id."
)
FORGET_DESCRIPTION = (
    "Delete one fact from long-term memory. Give the memory's id, or describe the fact to forget "
    "(e.g. 'my old address'); the closest matching memory is deleted."
)


def memory_tools(memory: HEIMemory, *, namespace: NamespaceSpec = None, min_similarity: float = 0.5) -> list[BaseTool]:
    """``[remember, forget]`` bound to ``memory``; see the module docstring."""
    return [remember_tool(memory, namespace=namespace), forget_tool(memory, namespace=namespace, min_similarity=min_similarity)]


def remember_tool(memory: HEIMemory, *, namespace: NamespaceSpec = None) -> BaseTool:
    """A tool that pins one fact in the caller's namespace."""

    def remember(fact: str, runtime: ToolRuntime[Any, Any] = None) -> str:  # type: ignore[assignment]  # injected by the agent
        ns = resolve_namespace(namespace, runtime)
        event = MemoryEvent(text=fact, pin=True, source=SourcePointer(conversation_id=thread_id(runtime)))
        try:
            decision = memory.write(event, namespace=ns)
        except InputError as err:
            return f"Not saved: {err}"
        return f"Saved to memory (id {decision.trace_id})."

    async def aremember(fact: str, runtime: ToolRuntime[Any, Any] = None) -> str:  # type: ignore[assignment]
        return await asyncio.to_thread(remember, fact, runtime)

    return StructuredTool.from_function(func=remember, coroutine=aremember, name="remember", description=REMEMBER_DESCRIPTION)


def forget_tool(memory: HEIMemory, *, namespace: NamespaceSpec = None, min_similarity: float = 0.5) -> BaseTool:
    """A tool that deletes one memory by id or by description."""

    def forget(what: str, runtime: ToolRuntime[Any, Any] = None) -> str:  # type: ignore[assignment]
        ns = resolve_namespace(namespace, runtime)
        target = what.strip()
        if not target:
            return "Nothing forgotten: say which memory to forget."
        try:
            trace = memory.get(target, namespace=ns) if len(target) <= 64 else None
        except (TraceNotFoundError, UnknownNamespaceError, InputError):
            trace = None
        if trace is None:
            try:
                hits = memory.recall(target, 1, namespace=ns, min_similarity=min_similarity).traces
            except InputError as err:
                return f"Nothing forgotten: {err}"
            if not hits:
                return "Nothing forgotten: no memory matches that closely enough."
            trace = hits[0].trace
        memory.delete(trace.id, namespace=ns)
        return f"Forgotten: {trace.text}"

    async def aforget(what: str, runtime: ToolRuntime[Any, Any] = None) -> str:  # type: ignore[assignment]
        return await asyncio.to_thread(forget, what, runtime)

    return StructuredTool.from_function(func=forget, coroutine=aforget, name="forget", description=FORGET_DESCRIPTION)

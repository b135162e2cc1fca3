"""HEINWMemoryMiddleware: long-term episodic memory for ``langchain.agents.create_agent``.

Before every model call it recalls from the user's namespace, with the latest
user message as the cue, and appends the packed memory (``RecallResult.
memory_tokens.text``: ranked, PII-redacted, capped at ``max_mem_tokens``) to the
system message. Only the request is changed, never the conversation state, so
checkpoints hold what the user and the model said and nothing recalled. After
the agent finishes a turn it offers the turn to the write gate, which keeps
facts and drops chit-chat; by default the event is the user's words of that turn
(the reply is the model's, and often boilerplate that would dilute the gate's
surprise signal), and ``turn_event`` replaces that choice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelCallResult, ModelRequest, ModelResponse
from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from hei_nw_plugin import HEIMemory, MemoryEvent, RecallResult, SourcePointer
from langchain_hei_nw.namespaces import NamespaceSpec, resolve_namespace, thread_id
from langchain_hei_nw.tools import memory_tools

DEFAULT_TEMPLATE = "What you remember about this user from earlier conversations, most relevant first:\n{memory}"

TurnEvent = Callable[[Sequence[BaseMessage]], MemoryEvent | str | Mapping[str, Any] | None]
"""Builds the event written after a turn from the turn's messages (user message(s) to final reply); None skips it."""


class HEINWMemoryMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Recall into the system message before each model call; write the turn back after the agent.

    Args:
        memory: The HEI-NW memory (shared by every user; namespaces keep them apart).
        namespace: Fixed namespace, callable of the run's ``Runtime``, or None for the
            ``user_id`` in the run's context or ``configurable``.
        k: Traces recalled per model call.
        max_tokens: Memory-token budget per call (None: the engine's ``pack.max_mem_tokens``).
        min_similarity: Leave out recalled traces whose cosine to the cue is lower (None: keep all k).
        template: How the memory is introduced in the system message; ``{memory}`` is replaced.
        write_turns: Offer each finished turn to the write gate.
        turn_event: Replaces the default turn-to-event choice (see the module docstring).
        with_tools: Also give the agent the ``remember`` / ``forget`` tools on the same namespace.
    """

    def __init__(
        self,
        memory: HEIMemory,
        *,
        namespace: NamespaceSpec = None,
        k: int = 5,
        max_tokens: int | None = None,
        min_similarity: float | None = None,
        template: str = DEFAULT_TEMPLATE,
        write_turns: bool = True,
        turn_event: TurnEvent | None = None,
        with_tools: bool = False,
    ) -> None:
        super().__init__()
        if "{memory}" not in template:
            raise ValueError("template must contain '{memory}'")
        self.memory = memory
        self.namespace = namespace
        self.k = k
        self.max_tokens = max_tokens
        self.min_similarity = min_similarity
        self.template = template
        self.write_turns = write_turns
        self.turn_event = turn_event or user_words
        self.tools = memory_tools(memory, namespace=namespace) if with_tools else []

    # ------------------------------------------------------------ before model
    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelCallResult:
        cue = latest_user_text(request.messages)
        if cue is None:
            return handler(request)
        ns = resolve_namespace(self.namespace, request.runtime)
        result = self.memory.recall(cue, self.k, namespace=ns, max_tokens=self.max_tokens, min_similarity=self.min_similarity)
        return handler(self._with_memory(request, result))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelCallResult:
        cue = latest_user_text(request.messages)
        if cue is None:
            return await handler(request)
        ns = resolve_namespace(self.namespace, request.runtime)
        result = await self.memory.arecall(cue, self.k, namespace=ns, max_tokens=self.max_tokens,
                                           min_similarity=self.min_similarity)
        return await handler(self._with_memory(request, result))

    def _with_memory(self, request: ModelRequest, result: RecallResult) -> ModelRequest:
        text = result.memory_tokens.text.strip()
        if not text:
            return request
        block = self.template.replace("{memory}", text)
        system = request.system_message
        if system is None:
            return request.override(system_message=SystemMessage(content=block))
        if isinstance(system.content, str):
            content: Any = f"{system.content}\n\n{block}" if system.content.strip() else block
        else:
            content = [*system.content, {"type": "text", "text": block}]
        return request.override(system_message=system.model_copy(update={"content": content}))

    # ------------------------------------------------------------- after agent
    def after_agent(self, state: AgentState, runtime: Runtime) -> dict[str, Any] | None:
        found = self._turn(state, runtime)
        if found is not None:
            self.memory.write(found[0], namespace=found[1])
        return None

    async def aafter_agent(self, state: AgentState, runtime: Runtime) -> dict[str, Any] | None:
        found = self._turn(state, runtime)
        if found is not None:
            await self.memory.awrite(found[0], namespace=found[1])
        return None

    def _turn(self, state: AgentState, runtime: Runtime) -> tuple[MemoryEvent | str | Mapping[str, Any], str] | None:
        """The event to offer the gate for the turn just finished, and its namespace."""
        if not self.write_turns:
            return None
        messages: Sequence[AnyMessage] = state.get("messages", [])
        start = turn_start(messages)
        if start is None:
            return None
        event = self.turn_event(messages[start:])
        if event is None:
            return None
        if isinstance(event, MemoryEvent) and event.source == SourcePointer():
            turn = sum(isinstance(m, HumanMessage) for m in messages[:start])
            event = event.model_copy(update={"source": SourcePointer(conversation_id=thread_id(runtime), turn=turn)})
        return event, resolve_namespace(self.namespace, runtime)


def latest_user_text(messages: Sequence[BaseMessage]) -> str | None:
    """Text of the last user message, the cue for recall; None when there is none."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text.strip() or None
    return None


def turn_start(messages: Sequence[BaseMessage]) -> int | None:
    """Index of the first user message of the last turn (the trailing run of user messages)."""
    last = next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)), None)
    if last is None:
        return None
    while last > 0 and isinstance(messages[last - 1], HumanMessage):
        last -= 1
    return last


def user_words(turn: Sequence[BaseMessage]) -> MemoryEvent | None:
    """The default turn event: what the user said in the turn, as ``User: ...``."""
    said = "\n".join(m.text.strip() for m in turn if isinstance(m, HumanMessage) and m.text.strip())
    return MemoryEvent(text=f"User: {said}") if said else None

"""Where a LangChain call's memories live: HEI-NW namespace strings.

Two questions meet here. A LangGraph store addresses items by a tuple of labels,
HEI-NW by one string: the tuple maps to its labels joined with ``"."``, which is
unambiguous because LangGraph forbids ``"."`` (and empty labels) inside a label,
so ``("memories", "u1")`` is ``"memories.u1"`` and ``("u1",)`` is ``"u1"`` - the
same namespace the middleware, tools and retriever use for user ``u1``.
Middleware and tools serve many users, so their namespace is resolved per call
from the run: a fixed string, a callable of the runtime, or by default the
``user_id`` of the run's context or ``configurable``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hei_nw_plugin.errors import InvalidNamespaceError

SEPARATOR = "."

NamespaceSpec = str | Callable[[Any], str] | None
"""A fixed namespace, a function of the runtime (``Runtime`` or ``ToolRuntime``), or None for the run's user_id."""


def to_hei_namespace(labels: tuple[str, ...]) -> str:
    """The HEI-NW namespace string of a LangGraph namespace tuple."""
    for label in labels:
        if not isinstance(label, str) or not label or SEPARATOR in label:
            raise InvalidNamespaceError(
                f"namespace labels must be non-empty strings without {SEPARATOR!r}, got {label!r} in {labels!r}")
    return SEPARATOR.join(labels)


def from_hei_namespace(namespace: str) -> tuple[str, ...] | None:
    """The LangGraph tuple of an HEI-NW namespace, or None if no tuple maps to it (e.g. ``"a..b"``)."""
    labels = tuple(namespace.split(SEPARATOR))
    return labels if all(labels) else None


def resolve_namespace(spec: NamespaceSpec, runtime: Any) -> str:
    """The namespace one middleware hook or tool call works in.

    ``runtime`` is LangGraph's ``Runtime`` (middleware) or ``ToolRuntime`` (tools).
    With ``spec=None`` the namespace is the ``user_id`` found in the run's context
    (attribute or key) or in ``config["configurable"]``; a run without one is a
    caller mistake, never silently shared memory.
    """
    if isinstance(spec, str):
        return spec
    if spec is not None:
        namespace = spec(runtime)
        if not isinstance(namespace, str):
            raise InvalidNamespaceError(f"the namespace callable returned {type(namespace).__name__}, not a string")
        return namespace
    user_id = _lookup(getattr(runtime, "context", None), "user_id")
    if user_id is None:
        user_id = _lookup(_configurable(runtime), "user_id")
    if user_id is None:
        raise InvalidNamespaceError(
            "no namespace: pass namespace=... or run the agent with a user_id in its context "
            "(context={'user_id': ...}) or in config['configurable']")
    return str(user_id)


def thread_id(runtime: Any) -> str | None:
    """The run's thread id, when the agent has a checkpointer."""
    info = getattr(runtime, "execution_info", None)
    if info is not None and getattr(info, "thread_id", None):
        return str(info.thread_id)
    found = _lookup(_configurable(runtime), "thread_id")
    return None if found is None else str(found)


def _configurable(runtime: Any) -> Any:
    config = getattr(runtime, "config", None)  # ToolRuntime carries it; middleware reads the run's
    if config is None:
        try:
            from langgraph.config import get_config

            config = get_config()
        except RuntimeError:  # called outside a runnable context
            return None
    return config.get("configurable") if isinstance(config, Mapping) else None


def _lookup(source: Any, name: str) -> Any:
    if source is None:
        return None
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)

"""Tenant-scoped access to one shared :class:`~hei_nw_plugin.memory.HEIMemory`.

Every call names a namespace built here, ``"<tenant>/<user>"``: the tenant comes
from the API key and can hold no ``/``, so no choice of user name reaches
another tenant's namespace. Before each recall or write the namespace's HNSW
graph is caught up with the store (``HEIMemory.refresh``), which is how replicas
sharing one PostgreSQL store see each other's writes and deletes; the check is
one read of the store's chain head when nothing changed. The engine is
synchronous, so calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Mapping
from typing import Any

from hei_nw_plugin.errors import InvalidNamespaceError
from hei_nw_plugin.memory import HEIMemory, MemoryStats, VerifyReport
from hei_nw_plugin.store.faults import no_retry
from hei_nw_plugin.types import MemoryEvent, RecallResult, SourcePointer, Trace, WriteDecision
from server.settings import ServerMemorySettings

log = logging.getLogger(__name__)

DEFAULT_USER = "default"
MAX_USER_CHARS = 128


def namespace_for(tenant: str, user: str | None) -> str:
    """The engine namespace of a tenant's user (``user`` defaults to 'default')."""
    u = DEFAULT_USER if user is None or user == "" else user
    if not isinstance(u, str) or len(u) > MAX_USER_CHARS:
        raise InvalidNamespaceError(f"user must be a string of at most {MAX_USER_CHARS} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in u):
        raise InvalidNamespaceError("user must not contain control characters")
    return f"{tenant}/{u}"


class MemoryGateway:
    """The memory operations the routes need, each scoped to one namespace."""

    def __init__(self, memory: HEIMemory, settings: ServerMemorySettings) -> None:
        self.memory = memory
        self.settings = settings

    def _sync(self, ns: str) -> None:
        if self.settings.refresh_before_recall:
            self.memory.refresh(ns)

    def warm(self) -> int:
        """Build every namespace's index from the store (start-up); returns how many."""
        spaces = self.memory.namespaces()
        for ns in spaces:
            self.memory.refresh(ns)
        return len(spaces)

    # -------------------------------------------------------------- chat turns
    async def recall_for_prompt(self, ns: str, cue: str) -> RecallResult:
        s = self.settings

        def run() -> RecallResult:
            self._sync(ns)
            return self.memory.recall(cue, s.recall_k, namespace=ns, max_tokens=s.max_mem_tokens,
                                      min_similarity=s.min_similarity)
        return await asyncio.to_thread(run)

    async def write_turn(self, ns: str, text: str, *, turn: int, conversation_id: str | None, pin: bool) -> WriteDecision:
        event = MemoryEvent(text=text, pin=pin, metadata={"role": "user", "via": "chat"},
                            source=SourcePointer(conversation_id=conversation_id, turn=turn))
        return (await self.write(ns, [event]))[0]

    # -------------------------------------------------------------- memory API
    async def write(self, ns: str, events: list[MemoryEvent | Mapping[str, Any]]) -> list[WriteDecision]:
        def run() -> list[WriteDecision]:
            self._sync(ns)
            return self.memory.write_many(events, namespace=ns)
        return await asyncio.to_thread(run)

    async def recall(self, ns: str, cue: Any, k: int, *, where: Mapping[str, Any] | None, max_tokens: int | None,
                     min_similarity: float | None) -> RecallResult:
        def run() -> RecallResult:
            self._sync(ns)
            return self.memory.recall(cue, k, namespace=ns, where=where, max_tokens=max_tokens, min_similarity=min_similarity)
        return await asyncio.to_thread(run)

    async def get(self, ns: str, trace_id: str) -> Trace:
        return await self.memory.aget(trace_id, namespace=ns)

    async def list_traces(self, ns: str, *, limit: int, offset: int) -> list[Trace]:
        return await self.memory.alist_traces(namespace=ns, limit=limit, offset=offset)

    async def delete(self, ns: str, trace_id: str) -> None:
        await self.memory.adelete(trace_id, namespace=ns)

    async def pin(self, ns: str, trace_id: str, pinned: bool) -> None:
        await (self.memory.apin if pinned else self.memory.aunpin)(trace_id, namespace=ns)

    async def users(self, tenant: str) -> list[str]:
        prefix = f"{tenant}/"
        return [ns[len(prefix):] for ns in await self.memory.anamespaces() if ns.startswith(prefix)]

    async def verify(self, ns: str) -> VerifyReport:
        report = await self.memory.averify(namespace=ns)
        # Chain-wide problems (hash, link, signature) may sit on other tenants' records: keep the
        # finding, drop the trace id. Row-level problems are already limited to this namespace.
        report.problems = [dict(p, trace_id=None) if p.get("provenance_seq") is not None else p for p in report.problems]
        return report

    async def stats(self, tenant: str, ns: str) -> MemoryStats:
        st = await self.memory.astats(namespace=ns)
        st.namespaces = len(await self.users(tenant))  # the engine counts every tenant's namespaces
        return st

    async def ready(self) -> bool:
        def head() -> str:
            with no_retry():  # a probe answers at once; it must not wait out an outage as a memory call does
                return self.memory.store_head()

        try:
            await asyncio.to_thread(head)
            return True
        except Exception:
            log.warning("memory store not ready", exc_info=True)
            return False

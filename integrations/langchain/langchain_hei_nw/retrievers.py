"""HEINWRetriever: HEI-NW recall as a LangChain ``BaseRetriever``.

One query is one ``HEIMemory.recall`` in one namespace: the documents are the
recalled traces in rank order, ``page_content`` the (PII-redacted) trace text and
``metadata`` the trace's id, recall score, slots, timestamps and source. ``k``,
``where`` and ``namespace`` can also be given per call (``retriever.invoke(q, k=2)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from hei_nw_plugin import HEIMemory, RecallResult
from hei_nw_plugin.types import DEFAULT_NAMESPACE, RecalledTrace


class HEINWRetriever(BaseRetriever):
    """Documents recalled from an HEI-NW namespace."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memory: HEIMemory = Field(description="The HEI-NW memory to recall from.")
    namespace: str = Field(DEFAULT_NAMESPACE, description="HEI-NW namespace searched (recall never crosses namespaces).")
    k: int = Field(4, ge=1, description="Documents returned per query.")
    where: dict[str, Any] | None = Field(None, description="Keep only traces whose slots or metadata equal every given value.")

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None,
        where: Mapping[str, Any] | None = None, namespace: str | None = None,
    ) -> list[Document]:
        if not query.strip():
            return []
        ns = namespace or self.namespace
        return _documents(self.memory.recall(query, k or self.k, namespace=ns, where=where or self.where))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int | None = None,
        where: Mapping[str, Any] | None = None, namespace: str | None = None,
    ) -> list[Document]:
        if not query.strip():
            return []
        ns = namespace or self.namespace
        return _documents(await self.memory.arecall(query, k or self.k, namespace=ns, where=where or self.where))


def _documents(result: RecallResult) -> list[Document]:
    return [_document(r) for r in result.traces]


def _document(recalled: RecalledTrace) -> Document:
    t = recalled.trace
    return Document(
        id=t.id,
        page_content=t.text,
        metadata={
            "id": t.id,
            "score": recalled.score,
            "ann_similarity": recalled.ann_similarity,
            "namespace": t.namespace,
            "key": t.key,
            "slots": dict(t.slots),
            "metadata": dict(t.metadata),
            "created_at": t.created_at.isoformat(),
            "expires_at": t.expires_at.isoformat() if t.expires_at else None,
            "pinned": t.pinned,
            "source": t.source.model_dump(exclude_none=True),
        },
    )

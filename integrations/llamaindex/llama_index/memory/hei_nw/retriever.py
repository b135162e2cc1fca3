"""HEI-NW recall as a llama-index retriever.

Each recalled trace becomes a ``TextNode`` whose id is the trace id, whose text
is the stored (redacted) span and whose metadata holds the trace's slots and
metadata, its date and its namespace; the score is the engine's rank score
after Hopfield completion, best first. The engine embeds the query itself, so a
``QueryBundle``'s own embedding is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode

from hei_nw_plugin import HEIMemory, RecallResult

# Bookkeeping the model has no use for; kept on the node for callers.
_HIDDEN_FROM_LLM = ["namespace", "trace_id", "pinned"]


class HEINWRetriever(BaseRetriever):
    """Retrieve a user's episodic traces from HEI-NW as nodes.

    ``where`` keeps only traces whose slots or metadata equal every given value.
    A blank query retrieves nothing.
    """

    def __init__(
        self,
        hei_memory: HEIMemory,
        *,
        namespace: str,
        k: int = 5,
        where: Mapping[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self._hei = hei_memory
        self.namespace = namespace
        self.k = k
        self.where = dict(where) if where else None

    def _cue(self, query_bundle: QueryBundle) -> str:
        # The engine rejects cues over its limit; the end of a long query is the question.
        return query_bundle.query_str.strip()[-self._hei.settings.limits.max_text_chars:]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        cue = self._cue(query_bundle)
        if not cue:
            return []
        return _nodes(self._hei.recall(cue, self.k, namespace=self.namespace, where=self.where))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        cue = self._cue(query_bundle)
        if not cue:
            return []
        return _nodes(await self._hei.arecall(cue, self.k, namespace=self.namespace, where=self.where))


def _nodes(result: RecallResult) -> list[NodeWithScore]:
    out: list[NodeWithScore] = []
    for r in result.traces:
        t = r.trace
        node = TextNode(
            id_=t.id,
            text=t.text,
            metadata={**t.metadata, **t.slots, "created_at": t.created_at.isoformat(timespec="seconds"),
                      "namespace": t.namespace, "trace_id": t.id, "pinned": t.pinned},
            excluded_llm_metadata_keys=list(_HIDDEN_FROM_LLM),
            excluded_embed_metadata_keys=list(_HIDDEN_FROM_LLM),
        )
        if t.source.document_id:
            node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=t.source.document_id)
        out.append(NodeWithScore(node=node, score=r.score))
    return out

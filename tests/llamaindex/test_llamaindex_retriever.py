"""HEINWRetriever: a recall as ranked llama-index nodes."""

from __future__ import annotations

from llama_index.core.schema import MetadataMode, NodeRelationship, QueryBundle
from llama_index.memory.hei_nw import HEINWRetriever

from hei_nw_plugin.memory import HEIMemory

EVENTS = [
    {"text": "Priya keeps the spare key in the blue toolbox", "slots": {"who": "Priya", "what": "spare key"},
     "source": {"document_id": "house-notes"}},
    {"text": "Marco moved the team offsite to Thursday", "slots": {"who": "Marco", "what": "offsite"},
     "metadata": {"channel": "email"}},
    {"text": "Priya's bike lock code is kept in the kitchen drawer", "slots": {"who": "Priya", "what": "bike lock"}},
]


def seeded(hei: HEIMemory) -> dict[str, str]:
    decisions = hei.write_many([{**e, "pin": True} for e in EVENTS], namespace="u1")
    return {e["text"]: d.trace_id for e, d in zip(EVENTS, decisions, strict=True)}  # type: ignore[misc]


def test_retrieve_returns_ranked_trace_nodes(hei: HEIMemory) -> None:
    ids = seeded(hei)
    nodes = HEINWRetriever(hei, namespace="u1", k=2).retrieve("where is the spare key?")

    assert len(nodes) == 2
    best = nodes[0]
    assert best.node.get_content() == EVENTS[0]["text"]
    assert best.node.node_id == ids[EVENTS[0]["text"]]
    assert best.node.metadata["who"] == "Priya" and best.node.metadata["namespace"] == "u1"
    assert best.node.relationships[NodeRelationship.SOURCE].node_id == "house-notes"
    assert nodes[0].score is not None and nodes[1].score is not None and nodes[0].score >= nodes[1].score

    for_llm = best.node.get_content(metadata_mode=MetadataMode.LLM)
    assert "who: Priya" in for_llm and "namespace" not in for_llm and "trace_id" not in for_llm


def test_where_filter_metadata_and_namespace(hei: HEIMemory) -> None:
    seeded(hei)
    only_marco = HEINWRetriever(hei, namespace="u1", where={"who": "Marco"}).retrieve("spare key toolbox")
    assert [n.node.get_content() for n in only_marco] == [EVENTS[1]["text"]]
    assert only_marco[0].node.metadata["channel"] == "email"
    assert HEINWRetriever(hei, namespace="someone-else").retrieve("spare key") == []


async def test_aretrieve_matches_retrieve_and_blank_queries_retrieve_nothing(hei: HEIMemory) -> None:
    seeded(hei)
    retriever = HEINWRetriever(hei, namespace="u1", k=3)
    sync_ids = [n.node.node_id for n in retriever.retrieve("Priya bike lock")]
    async_ids = [n.node.node_id for n in await retriever.aretrieve(QueryBundle("Priya bike lock"))]
    assert async_ids == sync_ids and len(sync_ids) == 3
    assert retriever.retrieve("   ") == []
    assert await retriever.aretrieve("") == []

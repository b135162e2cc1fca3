"""HEINWRetriever: langchain-tests' standard retriever suite, then what its documents carry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_hei_nw import HEINWRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from hei_nw_plugin.memory import HEIMemory

EPISODES = [
    {"text": "Priya keeps the spare studio key in the blue toolbox", "slots": {"who": "Priya"}},
    {"text": "Priya keeps her bicycle pump in the red cabinet", "slots": {"who": "Priya"}},
    {"text": "Marco moved the team offsite to Thursday at the lakeside cabin", "slots": {"who": "Marco"}},
    {"text": "Ines changed the router admin password on Monday", "slots": {"who": "Ines"}},
]


def _seed(mem: HEIMemory, namespace: str = "u1") -> list[str]:
    return [mem.write({**e, "pin": True}, namespace=namespace).trace_id or "" for e in EPISODES]


class TestHEINWRetrieverStandard(RetrieversIntegrationTests):
    """The suite builds retrievers from constructor params alone, so the memory is seeded first."""

    @pytest.fixture(autouse=True)
    def _memory(self, mem: HEIMemory) -> None:
        _seed(mem)
        self.memory = mem

    @property
    def retriever_constructor(self) -> type[HEINWRetriever]:
        return HEINWRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"memory": self.memory, "namespace": "u1"}

    @property
    def retriever_query_example(self) -> str:
        return "Where does Priya keep the spare key?"


@pytest.fixture
def seeded(mem: HEIMemory) -> tuple[HEIMemory, list[str]]:
    return mem, _seed(mem)


def test_documents_are_recalled_traces_best_first(seeded: tuple[HEIMemory, list[str]]) -> None:
    mem, ids = seeded
    docs = HEINWRetriever(memory=mem, namespace="u1", k=3).invoke("Where does Priya keep the spare studio key?")
    top = docs[0]
    assert isinstance(top, Document) and top.id == ids[0]
    assert top.page_content == EPISODES[0]["text"]
    assert top.metadata["id"] == ids[0] and top.metadata["namespace"] == "u1"
    assert top.metadata["slots"] == {"who": "Priya"} and top.metadata["pinned"] is True
    assert top.metadata["created_at"].startswith("20")
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_namespaces_and_where_narrow_the_recall(seeded: tuple[HEIMemory, list[str]]) -> None:
    mem, _ = seeded
    mem.write({"text": "Bob keeps the spare key under the doormat", "pin": True}, namespace="u2")
    retriever = HEINWRetriever(memory=mem, namespace="u1", k=4)
    assert all(d.metadata["namespace"] == "u1" for d in retriever.invoke("spare key"))
    assert [d.page_content for d in retriever.invoke("spare key", namespace="u2")] == [
        "Bob keeps the spare key under the doormat"]
    assert {d.metadata["slots"]["who"] for d in retriever.invoke("spare key", where={"who": "Marco"})} == {"Marco"}
    assert HEINWRetriever(memory=mem, namespace="nobody").invoke("spare key") == []


async def test_async_and_sync_agree(seeded: tuple[HEIMemory, list[str]]) -> None:
    mem, _ = seeded
    retriever = HEINWRetriever(memory=mem, namespace="u1", k=2)
    sync = [d.id for d in retriever.invoke("router password")]
    assert [d.id for d in await retriever.ainvoke("router password")] == sync


def test_blank_query_returns_nothing(mem_factory: Callable[..., HEIMemory]) -> None:
    mem = mem_factory()
    _seed(mem)
    assert HEINWRetriever(memory=mem, namespace="u1").invoke("   ") == []

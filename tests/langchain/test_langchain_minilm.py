"""The store, retriever and gate path with the real MiniLM embedder: paraphrased questions find their facts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_hei_nw import HEINWRetriever, HEINWStore

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.memory import HEIMemory

pytestmark = pytest.mark.integration

FACTS = {
    "key": "Priya keeps the spare studio key in the blue toolbox.",
    "play": "Her daughter's school play is on Thursday at six in the evening.",
    "router": "Ines changed the router admin password on Monday.",
    "cat": "Marco adopted a grey cat called Pixel last spring.",
}


@pytest.fixture
def mem(tmp_path: Path, minilm: Any) -> Iterator[HEIMemory]:
    memory = HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path}), embedder=minilm)
    yield memory
    memory.close()


@pytest.mark.parametrize("question, key", [
    ("Where is the spare key for the studio kept?", "key"),
    ("When does the school performance take place?", "play"),
    ("Who has a pet, and what is it called?", "cat"),
])
def test_store_query_finds_paraphrased_facts(mem: HEIMemory, question: str, key: str) -> None:
    store = HEINWStore(mem)  # through the gate: every fact here is new and specific
    for k, text in FACTS.items():
        store.put(("priya",), k, {"text": text})
    assert {i.key for i in store.search(("priya",), limit=10)} == set(FACTS)
    assert store.search(("priya",), query=question, limit=1)[0].key == key
    assert HEINWRetriever(memory=mem, namespace="priya", k=1).invoke(question)[0].page_content == FACTS[key]


def test_gate_with_real_keys_drops_near_duplicates_but_keeps_updates(mem: HEIMemory) -> None:
    store = HEINWStore(mem)
    store.put(("priya",), "key", {"text": FACTS["key"]})
    store.put(("priya",), "key-again", {"text": FACTS["key"]})  # a new key, same episode: a duplicate, kept cold
    again = mem.get_by_key("key-again", namespace="priya")
    assert again is not None and again.tier == "cold"
    store.put(("priya",), "key", {"text": FACTS["key"], "checked": True})  # an update of the admitted item
    item = store.get(("priya",), "key")
    assert item is not None and item.value["checked"] is True

"""One BaseStore suite, run against HEINWStore and, for comparison, LangGraph's InMemoryStore.

Each test is one behaviour LangGraph documents for ``BaseStore``. Capability flags
say what a backend does not promise (InMemoryStore has no TTL and resets
``created_at`` on update); HEI-NW's own behaviour (the write gate, TTL in the
engine, namespace strings, traces written by others) is tested after the suite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from langchain_hei_nw import HEINWStore, from_hei_namespace, to_hei_namespace
from langgraph.store.base import BaseStore, GetOp, InvalidNamespaceError, ListNamespacesOp, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

from hei_nw_plugin.errors import ConfigError, InvalidEventError
from hei_nw_plugin.memory import HEIMemory

FACTS = {
    "priya": {"text": "Priya keeps the spare studio key in the blue toolbox", "kind": "fact", "n": 1, "meta": {"lang": "en"}},
    "marco": {"text": "Marco moved the team offsite to Thursday at the lakeside cabin", "kind": "event", "n": 2, "meta": {"lang": "en"}},
    "ines": {"text": "Ines changed the router admin password on Monday", "kind": "fact", "n": 3, "meta": {"lang": "fr"}},
}
NS = ("users", "u1")


class StoreSuite:
    """The behaviours; a subclass provides the ``store`` fixture and the flags."""

    supports_ttl = False
    keeps_created_at_on_update = False

    @pytest.fixture
    def store(self) -> BaseStore:
        raise NotImplementedError

    @pytest.fixture
    def filled(self, store: BaseStore) -> BaseStore:
        for key, value in FACTS.items():
            store.put(NS, key, value)
        store.put(("users", "u2"), "priya", {"text": "Priya in another namespace", "kind": "fact", "n": 9})
        store.put(("docs",), "readme", {"text": "Nothing about users here", "kind": "doc", "n": 0})
        return store

    # ------------------------------------------------------------- get / put
    def test_put_then_get_returns_the_value(self, store: BaseStore) -> None:
        store.put(NS, "priya", FACTS["priya"])
        item = store.get(NS, "priya")
        assert item is not None
        assert (item.namespace, item.key, item.value) == (NS, "priya", FACTS["priya"])
        assert item.created_at.tzinfo is not None and item.updated_at >= item.created_at

    def test_get_missing_key_or_namespace_is_none(self, filled: BaseStore) -> None:
        assert filled.get(NS, "nobody") is None
        assert filled.get(("users", "u404"), "priya") is None

    def test_put_existing_key_replaces_value(self, store: BaseStore) -> None:
        store.put(NS, "wifi", {"text": "The wifi password is tulip-42"})
        first = store.get(NS, "wifi")
        time.sleep(0.01)
        store.put(NS, "wifi", {"text": "The wifi password is now cedar-99"})
        item = store.get(NS, "wifi")
        assert first is not None and item is not None
        assert item.value == {"text": "The wifi password is now cedar-99"}
        assert item.updated_at > first.updated_at
        if self.keeps_created_at_on_update:
            assert item.created_at == first.created_at
        assert [i.key for i in store.search(NS)] == ["wifi"]

    def test_same_key_in_two_namespaces_are_two_items(self, filled: BaseStore) -> None:
        a, b = filled.get(NS, "priya"), filled.get(("users", "u2"), "priya")
        assert a is not None and b is not None and a.value != b.value

    def test_delete_removes_the_item_and_is_idempotent(self, filled: BaseStore) -> None:
        filled.delete(NS, "priya")
        assert filled.get(NS, "priya") is None
        assert "priya" not in [i.key for i in filled.search(NS)]
        filled.delete(NS, "priya")
        assert filled.get(("users", "u2"), "priya") is not None

    def test_put_rejects_bad_namespaces(self, store: BaseStore) -> None:
        for bad in [(), ("a.b",), ("users", ""), ("langgraph", "x")]:
            with pytest.raises(InvalidNamespaceError):
                store.put(bad, "k", {"text": "x"})

    # ---------------------------------------------------------------- search
    def test_search_lists_items_under_the_prefix_only(self, filled: BaseStore) -> None:
        assert {(i.namespace, i.key) for i in filled.search(("users",))} == {
            (NS, "priya"), (NS, "marco"), (NS, "ines"), (("users", "u2"), "priya")}
        assert {i.key for i in filled.search(NS)} == set(FACTS)
        assert len(filled.search((), limit=100)) == 5
        assert filled.search(("nothing",)) == []

    def test_search_pages_with_limit_and_offset(self, filled: BaseStore) -> None:
        pages = [filled.search(("users",), limit=2, offset=o) for o in (0, 2, 4)]
        assert [len(p) for p in pages] == [2, 2, 0]
        seen = [(i.namespace, i.key) for p in pages for i in p]
        assert len(set(seen)) == 4

    @pytest.mark.parametrize("flt, keys", [
        ({"kind": "fact"}, {"priya", "ines"}),
        ({"kind": "fact", "n": 3}, {"ines"}),
        ({"n": {"$gt": 1}}, {"marco", "ines"}),
        ({"n": {"$gte": 1, "$lt": 3}}, {"priya", "marco"}),
        ({"kind": {"$ne": "fact"}}, {"marco"}),
        ({"meta": {"lang": "en"}}, {"priya", "marco"}),
        ({"kind": "nothing"}, set()),
    ])
    def test_search_filters_on_value_fields(self, filled: BaseStore, flt: dict[str, Any], keys: set[str]) -> None:
        assert {i.key for i in filled.search(NS, filter=flt)} == keys

    def test_search_query_ranks_the_matching_item_first(self, filled: BaseStore) -> None:
        hits = filled.search(NS, query="where does Priya keep the spare studio key?", limit=3)
        assert hits[0].key == "priya"
        scores = [h.score for h in hits]
        assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)  # type: ignore[type-var]

    def test_search_query_respects_filter_and_limit(self, filled: BaseStore) -> None:
        hits = filled.search(NS, query="router admin password", filter={"kind": "fact"}, limit=1)
        assert [h.key for h in hits] == ["ines"]
        hits = filled.search(NS, query="spare studio key", filter={"kind": "event"})
        assert [h.key for h in hits] == ["marco"]

    def test_search_query_spans_namespaces_under_the_prefix(self, filled: BaseStore) -> None:
        hits = filled.search(("users",), query="Priya", limit=10)
        assert {(h.namespace, h.key) for h in hits} >= {(NS, "priya"), (("users", "u2"), "priya")}
        assert all(h.namespace[0] == "users" for h in hits)

    # ------------------------------------------------------- list_namespaces
    @pytest.fixture
    def tree(self, store: BaseStore) -> BaseStore:
        for ns in [("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f"), ("a", "c", "f"), ("x",)]:
            store.put(ns, "k", {"text": f"item in {'/'.join(ns)}"})
        return store

    def test_list_namespaces_all_sorted(self, tree: BaseStore) -> None:
        assert tree.list_namespaces() == [
            ("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f"), ("a", "c", "f"), ("x",)]

    def test_list_namespaces_prefix_and_max_depth(self, tree: BaseStore) -> None:
        assert tree.list_namespaces(prefix=("a", "b"), max_depth=3) == [("a", "b", "c"), ("a", "b", "d"), ("a", "b", "f")]
        assert tree.list_namespaces(max_depth=1) == [("a",), ("x",)]

    def test_list_namespaces_suffix_and_wildcards(self, tree: BaseStore) -> None:
        assert tree.list_namespaces(suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f")]
        assert tree.list_namespaces(prefix=("a", "*", "f")) == [("a", "b", "f"), ("a", "c", "f")]
        assert tree.list_namespaces(prefix=("a",), suffix=("*", "i")) == [("a", "b", "d", "i")]

    def test_list_namespaces_limit_and_offset(self, tree: BaseStore) -> None:
        everything = tree.list_namespaces()
        assert tree.list_namespaces(limit=2, offset=1) == everything[1:3]

    # ----------------------------------------------------------- batch, async
    def test_batch_returns_one_result_per_op_in_order(self, filled: BaseStore) -> None:
        results = filled.batch([
            GetOp(NS, "marco"), SearchOp(NS, filter={"kind": "event"}), ListNamespacesOp(max_depth=1),
            PutOp(NS, "new", {"text": "Zed adopted a grey cat named Pixel"}),
        ])
        assert results[0].key == "marco"
        assert [i.key for i in results[1]] == ["marco"]
        assert results[2] == [("docs",), ("users",)]
        assert results[3] is None and filled.get(NS, "new") is not None

    async def test_async_api_matches_sync(self, store: BaseStore) -> None:
        await store.aput(NS, "priya", FACTS["priya"])
        await store.aput(NS, "marco", FACTS["marco"])
        item = await store.aget(NS, "priya")
        assert item is not None and item.value == FACTS["priya"]
        hits = await store.asearch(NS, query="spare studio key")
        assert hits[0].key == "priya"
        assert await store.alist_namespaces() == [NS]
        await store.adelete(NS, "priya")
        assert await store.aget(NS, "priya") is None

    # ------------------------------------------------------------------- TTL
    def test_ttl_is_refused_without_support(self, store: BaseStore) -> None:
        if self.supports_ttl:
            pytest.skip("this store supports TTL")
        with pytest.raises(NotImplementedError):
            store.put(NS, "k", {"text": "x"}, ttl=1)

    def test_ttl_expires_items_nobody_reads(self, store: BaseStore, request: pytest.FixtureRequest) -> None:
        if not self.supports_ttl:
            pytest.skip("this store has no TTL")
        clock = request.getfixturevalue("clock")
        store.put(NS, "short", {"text": "The parking code today is 5512"}, ttl=1)
        store.put(NS, "forever", {"text": "Priya's birthday is on the ninth of May"})
        clock.advance(59)
        assert store.get(NS, "short", refresh_ttl=False) is not None
        clock.advance(2)
        assert store.get(NS, "short") is None
        assert [i.key for i in store.search(NS)] == ["forever"]
        assert [i.key for i in store.search(NS, query="parking code")] == ["forever"]

    def test_ttl_slides_on_reads_that_refresh(self, store: BaseStore, request: pytest.FixtureRequest) -> None:
        if not self.supports_ttl:
            pytest.skip("this store has no TTL")
        clock = request.getfixturevalue("clock")
        for key in ("got", "searched", "peeked"):
            store.put(NS, key, {"text": f"The {key} locker code is 4471", "key": key}, ttl=1)
        clock.advance(40)
        assert store.get(NS, "got") is not None
        assert [i.key for i in store.search(NS, filter={"key": "searched"})] == ["searched"]
        assert store.get(NS, "peeked", refresh_ttl=False) is not None
        clock.advance(40)  # 80 s after the put, 40 s after the refreshing reads
        assert store.get(NS, "peeked") is None
        assert store.get(NS, "got", refresh_ttl=False) is not None
        assert store.get(NS, "searched", refresh_ttl=False) is not None
        clock.advance(21)
        assert store.get(NS, "got") is None and store.get(NS, "searched") is None


class TestInMemoryStore(StoreSuite):
    """LangGraph's reference store, with HEI-NW's test embedder for queries."""

    @pytest.fixture
    def store(self, hashing_embeddings: Any) -> BaseStore:
        return InMemoryStore(index={"dims": 128, "embed": hashing_embeddings, "fields": ["text"]})


class TestHEINWStore(StoreSuite):
    """HEINWStore with every put pinned, so it promises what a key-value store promises."""

    supports_ttl = True
    keeps_created_at_on_update = True

    @pytest.fixture
    def store(self, mem: HEIMemory, clock: Callable[[], float]) -> BaseStore:
        return HEINWStore(mem, gate="always", clock=clock)


# ------------------------------------------------------------ HEI-NW specifics
@pytest.fixture
def gated(mem: HEIMemory) -> HEINWStore:
    return HEINWStore(mem)


def test_gate_keeps_chitchat_cold_and_facts_salient(mem: HEIMemory, gated: HEINWStore) -> None:
    gated.put(NS, "chat", {"text": "ok thanks, sounds good"})
    gated.put(NS, "fact", FACTS["priya"])
    assert gated.get(NS, "chat") is not None and gated.get(NS, "fact") is not None  # nothing put is lost
    chat, fact = mem.get_by_key("chat", namespace="users.u1"), mem.get_by_key("fact", namespace="users.u1")
    assert chat is not None and fact is not None and (chat.tier, fact.tier) == ("cold", "salient")


def test_pin_field_and_always_mode_force_the_write(mem: HEIMemory, gated: HEINWStore) -> None:
    gated.put(NS, "chat", {"text": "ok thanks, sounds good", "_pin": True})
    assert gated.get(NS, "chat") is not None
    assert mem.get_by_key("chat", namespace="users.u1").pinned
    HEINWStore(mem, gate="always").put(NS, "chat2", {"text": "ok thanks, sounds good"})
    assert gated.get(NS, "chat2") is not None


def test_update_of_a_stored_key_is_not_regated_and_stays_evictable(mem: HEIMemory, gated: HEINWStore) -> None:
    gated.put(NS, "priya", FACTS["priya"])
    gated.put(NS, "priya", {**FACTS["priya"], "n": 42})  # same text: the gate alone would call it a duplicate
    item = gated.get(NS, "priya")
    assert item is not None and item.value["n"] == 42
    trace = mem.get_by_key("priya", namespace="users.u1")
    assert trace is not None and not trace.pinned
    assert len(mem.list_traces(namespace="users.u1")) == 1


def test_ttl_reaches_the_engine_for_unpinned_items(mem: HEIMemory, gated: HEINWStore) -> None:
    gated.put(NS, "code", {"text": "The parking code today is 5512"}, ttl=2)
    trace = mem.get_by_key("code", namespace="users.u1")
    assert trace is not None and trace.expires_at is not None
    assert abs(trace.expires_at.timestamp() - (time.time() + 120)) < 30
    assert trace.id in mem.evict(namespace="users.u1", now=time.time() + 121)


def test_default_ttl_and_sweep(mem: HEIMemory, clock: Any) -> None:
    store = HEINWStore(mem, gate="always", ttl={"default_ttl": 1, "refresh_on_read": False}, clock=clock)
    store.put(NS, "a", FACTS["priya"])
    store.put(NS, "b", FACTS["marco"], ttl=None)
    store.get(NS, "a")
    clock.advance(61)
    assert store.sweep_ttl() == 1
    assert [t.key for t in mem.list_traces(namespace="users.u1")] == ["b"]
    with pytest.raises(ConfigError):
        HEINWStore(mem, ttl={"sweep_interval_minutes": 5})


def test_index_fields_choose_the_recalled_text(mem: HEIMemory) -> None:
    store = HEINWStore(mem, gate="always", fields=["title"])
    store.put(NS, "doc", {"title": "Priya keeps the spare studio key in the blue toolbox", "body": "long notes"})
    store.put(NS, "doc2", {"title": "ignored", "body": "Marco moved the offsite"}, index=["body"])
    assert mem.get_by_key("doc", namespace="users.u1").text == "Priya keeps the spare studio key in the blue toolbox"
    assert mem.get_by_key("doc2", namespace="users.u1").text == "Marco moved the offsite"
    store.put(NS, "nums", {"n": 4471})
    assert mem.get_by_key("nums", namespace="users.u1").text == '{"n": 4471}'


def test_reserved_field_is_refused(gated: HEINWStore) -> None:
    with pytest.raises(InvalidEventError):
        gated.put(NS, "k", {"text": "x", "__hei_nw_store__": {}})


def test_traces_written_by_others_are_items(mem: HEIMemory, gated: HEINWStore) -> None:
    d = mem.write({"text": "Priya keeps the spare key in the blue toolbox", "slots": {"who": "Priya"}, "pin": True},
                  namespace="u7")
    mem.write({"text": "The wifi password is tulip-42", "key": "wifi", "pin": True}, namespace="u7")
    items = {i.key: i for i in gated.search(("u7",))}
    assert set(items) == {d.trace_id, "wifi"}
    assert items[d.trace_id].value == {"who": "Priya", "text": "Priya keeps the spare key in the blue toolbox"}
    assert gated.get(("u7",), d.trace_id) is not None
    assert [i.key for i in gated.search(("u7",), filter={"who": "Priya"})] == [d.trace_id]
    assert gated.list_namespaces() == [("u7",)]
    gated.delete(("u7",), d.trace_id)
    assert [t.key for t in mem.list_traces(namespace="u7")] == ["wifi"]


def test_items_survive_a_restart(mem_factory: Callable[..., HEIMemory], tmp_path: Any) -> None:
    first = mem_factory(data_dir=tmp_path / "m")
    HEINWStore(first, gate="always").put(NS, "priya", FACTS["priya"])
    before = HEINWStore(first).get(NS, "priya")
    first.close()
    after = HEINWStore(mem_factory(data_dir=tmp_path / "m")).get(NS, "priya")
    assert before is not None and after == before


def test_namespace_strings_round_trip() -> None:
    for labels in [("u1",), ("memories", "u1"), ("a", "b c", "ü")]:
        assert from_hei_namespace(to_hei_namespace(labels)) == labels
    assert to_hei_namespace(("memories", "u1")) == "memories.u1"
    assert from_hei_namespace("a..b") is None and from_hei_namespace(".a") is None
    with pytest.raises(ValueError):
        to_hei_namespace(("a.b",))


def test_batch_checks_labels_of_ops_given_directly(gated: HEINWStore) -> None:
    with pytest.raises(InvalidNamespaceError):
        gated.batch([GetOp(("a.b",), "k")])


def test_async_batch_runs_off_the_event_loop(mem: HEIMemory) -> None:
    store = HEINWStore(mem, gate="always")

    async def main() -> list[Any]:
        return await asyncio.gather(*(store.aput(NS, f"k{i}", {"text": f"Fact number {i} is {i * 7}"}) for i in range(4)))

    asyncio.run(main())
    assert {i.key for i in store.search(NS)} == {"k0", "k1", "k2", "k3"}

"""Scale-out pieces: sharded indexes with fan-out search, bulk writes, the warm-key cache and prefetch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hei_nw_plugin.errors import ConfigError, InvalidEventError
from hei_nw_plugin.index import ShardedIndex, USearchIndex
from hei_nw_plugin.memory import HEIMemory

NAMES = ["Ava", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivo", "Jun"]
THINGS = ["wallet", "lamp", "bike", "lease", "flight", "book", "fence", "ring", "guitar", "cake"]
PLACES = ["harbour", "library", "market", "station", "museum", "garden", "bakery", "clinic", "hotel"]


def events(n: int, *, domains: tuple[str, ...] = ()) -> list[dict]:
    out = []
    for i in range(n):
        who, what, where = NAMES[i % 10], THINGS[(i // 10) % 10], PLACES[(i // 100 + i) % 9]
        slots = {"who": who, "what": what, "where": where, "ref": f"R{i:04d}"}
        if domains:
            slots["domain"] = domains[i % len(domains)]
        out.append({"text": f"{who} left the {what} at the {where}, ticket R{i:04d}.", "slots": slots, "pin": True})
    return out


def top_refs(mem: HEIMemory, evs: list[dict], ns: str = "s", **kw: object) -> list[str | None]:
    refs = []
    for ev in evs:
        r = mem.recall({"text": ev["text"], "slots": {"ref": ev["slots"]["ref"]}}, 1, namespace=ns, **kw)
        refs.append(r.traces[0].trace.slots["ref"] if r.traces else None)
    return refs


def test_time_shards_split_by_write_order_and_fan_out_finds_what_one_graph_finds(
        mem_factory: Callable[..., HEIMemory], tmp_path: Path) -> None:
    evs = events(180)
    flat = mem_factory(data_dir=tmp_path / "flat")
    sharded = mem_factory(data_dir=tmp_path / "sharded", index={"shard_by": "time", "shard_capacity": 50})
    for m in (flat, sharded):
        m.write_many(evs, namespace="s")
    graph = sharded._graph("s")
    assert isinstance(graph, ShardedIndex)
    sizes = sorted(len(g) for g in graph.shards.values())
    assert len(sizes) == 4 and sum(sizes) == 180 and max(sizes) <= 50
    probe = evs[::9]
    assert top_refs(sharded, probe) == [e["slots"]["ref"] for e in probe]
    assert top_refs(sharded, probe) == top_refs(flat, probe)


def test_slot_shards_route_a_cue_naming_the_slot_and_fan_out_otherwise(mem_factory: Callable[..., HEIMemory]) -> None:
    mem = mem_factory(index={"shard_by": "slot", "shard_slot": "domain"})
    evs = events(60, domains=("work", "home", "travel"))
    mem.write_many(evs + [{"text": "A note with no domain at all.", "pin": True}], namespace="s")
    graph = mem._graph("s")
    assert isinstance(graph, ShardedIndex) and sorted(len(g) for g in graph.shards.values()) == [1, 20, 20, 20]
    routed = mem.recall({"text": "who left the wallet?", "slots": {"domain": "home"}}, 10, namespace="s")
    assert routed.traces and all(t.trace.slots["domain"] == "home" for t in routed.traces)
    filtered = mem.recall("who left the wallet?", 10, namespace="s", where={"domain": "travel"})
    assert filtered.traces and all(t.trace.slots["domain"] == "travel" for t in filtered.traces)
    fanned = mem.recall("who left the wallet?", 20, namespace="s")
    assert {t.trace.slots.get("domain") for t in fanned.traces} >= {"work", "home", "travel"}
    assert mem.recall({"text": "wallet", "slots": {"domain": "nowhere"}}, 5, namespace="s").traces == []


def test_shards_persist_and_a_lost_shard_file_is_rebuilt_from_the_store(
        mem_factory: Callable[..., HEIMemory], tmp_path: Path) -> None:
    evs = events(90, domains=("work", "home"))
    mem = mem_factory(data_dir=tmp_path, index={"shard_by": "slot"})
    mem.write_many(evs, namespace="s")
    before = top_refs(mem, evs[::7])
    mem.close()
    files = sorted((tmp_path / "index").rglob("*.usearch"))
    assert len(files) == 2 and all("work" not in f.name and "home" not in f.name for f in files)
    files[0].unlink()
    again = mem_factory(data_dir=tmp_path, index={"shard_by": "slot"})
    graph = again._graph("s")
    assert len(graph) == 90 and sorted(len(g) for g in graph.shards.values()) == [45, 45]
    assert top_refs(again, evs[::7]) == before
    home = again.recall({"text": evs[1]["text"], "slots": {"domain": "home"}}, 1, namespace="s")
    assert home.traces[0].trace.slots["ref"] == evs[1]["slots"]["ref"]


def test_delete_and_keyed_replace_reach_the_right_shard(mem_factory: Callable[..., HEIMemory]) -> None:
    mem = mem_factory(index={"shard_by": "time", "shard_capacity": 10})
    ds = mem.write_many(events(35), namespace="s")
    graph = mem._graph("s")
    victim = ds[3].trace_id
    mem.delete(victim, namespace="s")
    assert len(graph) == 34
    assert all(t.trace.id != victim for t in mem.recall("Dara left the wallet", 34, namespace="s").traces)
    first = mem.write({"text": "Kai parks in bay 4.", "key": "bay", "pin": True}, namespace="s")
    mem.write_many(events(12), namespace="s")  # the keyed trace's shard is now an older one
    mem.write({"text": "Kai parks in bay 9.", "key": "bay", "pin": True}, namespace="s")
    assert len(graph) == 34 + 1 + 12
    texts = mem.recall("Where does Kai park?", 3, namespace="s").texts
    assert "Kai parks in bay 9." in texts and "Kai parks in bay 4." not in texts
    assert first.trace_id is not None and graph.vector(0) is None


def test_shard_settings_are_validated(tmp_path: Path) -> None:
    from tests.conftest import make_settings

    with pytest.raises(ConfigError, match="shard_by"):
        make_settings(tmp_path, index={"shard_by": "domain"})
    with pytest.raises(ConfigError, match="shard_capacity"):
        make_settings(tmp_path, index={"shard_capacity": 0})


def test_write_stream_stores_every_batch_and_names_a_bad_event(mem: HEIMemory) -> None:
    evs = events(25)
    got = [len(d) for d in mem.write_stream(evs, namespace="s", batch=10)]
    assert got == [10, 10, 5] and mem.stats(namespace="s").traces == 25
    assert mem.verify().ok
    bad = events(30)[25:] + [{"text": ""}]
    with pytest.raises(InvalidEventError, match="position 0: event text is empty"):
        list(mem.write_stream(bad, namespace="s", batch=10))
    assert mem.stats(namespace="s").traces == 25  # the bad batch changed nothing
    more = events(45)[25:]
    with pytest.raises(InvalidEventError, match="position 10"):
        list(mem.write_stream(more[:10] + [{"text": "ok"}, 7], namespace="s", batch=10))  # type: ignore[list-item]
    assert mem.stats(namespace="s").traces == 35  # the batch before the bad one is stored
    with pytest.raises(InvalidEventError, match="batch"):
        list(mem.write_stream(evs, namespace="s", batch=0))


def test_bulk_insert_matches_row_by_row_and_verifies(mem_factory: Callable[..., HEIMemory], tmp_path: Path) -> None:
    bulk = mem_factory(data_dir=tmp_path / "bulk")
    keyed = mem_factory(data_dir=tmp_path / "keyed")
    evs = events(40)
    bulk.write_many(evs, namespace="s")
    keyed.write_many([{**e, "key": e["slots"]["ref"]} for e in evs], namespace="s")  # keyed batches go row by row
    assert bulk.verify().ok and keyed.verify().ok
    assert top_refs(bulk, evs[::5]) == top_refs(keyed, evs[::5])
    a = [(t.text, t.slots) for t in bulk.list_traces(namespace="s", limit=100)]
    b = [(t.text, t.slots) for t in keyed.list_traces(namespace="s", limit=100)]
    assert a == b


def test_warm_key_cache_counts_hits_and_prefetch_loads_neighbours(mem_factory: Callable[..., HEIMemory],
                                                                  tmp_path: Path) -> None:
    evs = events(200)
    follow_up_rates = {}
    for prefetch in (False, True):
        mem = mem_factory(data_dir=tmp_path / str(prefetch), index={"prefetch": prefetch, "candidates": 16})
        mem.write_many(evs, namespace="s")
        assert mem.cache_stats()["entries"] == 200  # written traces are cached at write time
        mem.recall(evs[0]["text"], 3, namespace="s")
        assert mem.cache_stats()["misses"] == 0 and mem.cache_stats()["hits"] >= 16
        mem._prefetcher.wait()
        mem.cache.clear()  # as after a restart: nothing decrypted yet
        mem.reset_cache_stats()
        first = mem.recall(evs[5]["text"], 2, namespace="s")
        mem._prefetcher.wait()
        assert mem.cache_stats()["misses"] >= 16 and (mem.cache_stats()["prefetched"] > 0) == prefetch
        # A follow-up about the recalled episode, by other words: prefetch has loaded part of its candidates.
        mem.reset_cache_stats()
        top = first.traces[0].trace.slots
        mem.recall({"text": f"What did {top['who']} leave?", "slots": {"who": top["who"], "what": top["what"]}}, 2,
                   namespace="s")
        stats = mem.stats(namespace="s").feature_cache
        assert (stats["prefetch_hits"] > 0) == prefetch
        follow_up_rates[prefetch] = stats["hit_rate"]
    assert follow_up_rates[True] > follow_up_rates[False]


def test_usearch_and_sharded_index_share_one_interface(tmp_path: Path) -> None:
    from hei_nw_plugin.config import IndexSettings

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((40, 32)).astype(np.float32)
    ids = np.arange(1, 41, dtype=np.uint64)
    flat = USearchIndex(32, IndexSettings(dtype="f32"), None)
    sharded = ShardedIndex(32, IndexSettings(dtype="f32", shard_by="time", shard_capacity=16), None, "x")
    for g in (flat, sharded):
        g.add(ids, vecs)
        assert len(g) == 40 and sorted(int(i) for i in g.ids()) == list(range(1, 41))
        keys, sims = g.search(vecs[7], 3)
        assert int(keys[0]) == 8 and sims[0] == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(g.vector(8), vecs[7], atol=1e-5)
        g.remove([8])
        assert g.vector(8) is None and int(g.search(vecs[7], 1)[0][0]) != 8


def test_prometheus_metrics_show_shards_and_cache_figures(mem_factory: Callable[..., HEIMemory]) -> None:
    mem = mem_factory(index={"shard_by": "time", "shard_capacity": 2})
    mem.write_many([{"text": t, "pin": True} for t in ["a b c", "d e f", "g h i"]], namespace="x")
    mem.recall("a b", 2, namespace="x")
    text = mem.telemetry.render(mem)
    assert "hei_nw_index_shards 2.0" in text
    assert 'hei_nw_feature_cache_lookups{result="hit"} 3.0' in text and "hei_nw_feature_cache_hit_rate 1.0" in text


def test_cli_import_streams_a_jsonl_file_and_names_a_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hei_nw_plugin.cli import main

    src = tmp_path / "events.jsonl"
    lines = [json.dumps(e) for e in events(7)] + ["", json.dumps("Remember that the gate code is 4412.")]
    src.write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    main(["--data-dir", str(data), "-n", "u1", "import", str(src), "--batch", "3"])
    out = json.loads(capsys.readouterr().out)
    assert out["offered"] == 8 and out["stored"] >= 7
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(events(1)[0]) + "\n{not json\n")
    with pytest.raises(SystemExit) as exc:
        main(["--data-dir", str(data), "-n", "u1", "import", str(bad)])
    assert exc.value.code == 2 and "bad.jsonl:2: not JSON" in capsys.readouterr().err


def test_usearch_loaded_before_the_onnx_embedder_does_not_crash(tmp_path: Path) -> None:
    """onnxruntime imported after usearch's extension segfaults; the package loads it first."""
    import subprocess
    import sys

    code = ("import hei_nw_plugin, usearch.index, numpy as np\n"
            "usearch.index.Index(ndim=4).add(1, np.ones(4, dtype=np.float32))\n"
            "from hei_nw_plugin.embed import OnnxSentenceEmbedder\n"
            f"print(OnnxSentenceEmbedder(cache_dir=__import__('pathlib').Path({str(tmp_path)!r})).embed(['hello']).shape)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(1, 384)" in done.stdout

"""Behaviour of HEIMemory that users rely on (SQLite, hashing embedder)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from hei_nw_plugin.errors import (
    ConfigError, DecryptionError, InvalidEventError, InvalidNamespaceError, PayloadTooLargeError, TraceNotFoundError,
    UnknownNamespaceError,
)
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.memory import HEIMemory

FACT = {"text": "Priya keeps the spare key in the blue toolbox", "slots": {"who": "Priya", "what": "spare key"}}


def _snapshot(mem: HEIMemory) -> list:
    with sqlite3.connect(mem.settings.store.data_dir / "traces.db") as c:
        return c.execute("select id, payload, pinned from hei_traces order by seq").fetchall()


def test_write_recall_delete_verify(mem: HEIMemory) -> None:
    d = mem.write(FACT, namespace="u1")
    assert d.accepted and d.trace_id
    mem.write({"text": "Marco moved the offsite to Thursday", "slots": {"who": "Marco"}, "pin": True}, namespace="u1")
    r = mem.recall({"text": "where is the spare key", "slots": {"who": "Priya"}}, k=2, namespace="u1")
    assert r.traces[0].trace.id == d.trace_id
    assert "spare key" in r.memory_tokens.text
    assert set(r.timings_ms) >= {"embed", "ann", "hopfield", "fetch", "pack", "total"}
    mem.delete(d.trace_id, namespace="u1")
    r2 = mem.recall({"text": "where is the spare key", "slots": {"who": "Priya"}}, k=2, namespace="u1")
    assert d.trace_id not in [t.trace.id for t in r2.traces]
    with pytest.raises(TraceNotFoundError):
        mem.get(d.trace_id, namespace="u1")
    assert mem.verify().ok


def test_namespaces_never_cross(mem: HEIMemory) -> None:
    d = mem.write(FACT, namespace="alice")
    mem.write({"text": "Bob's locker code is 4471", "pin": True}, namespace="bob")
    r = mem.recall("spare key blue toolbox", k=5, namespace="bob")
    assert all(t.trace.namespace == "bob" for t in r.traces)
    assert mem.recall("spare key", k=5, namespace="nobody").traces == []
    with pytest.raises(TraceNotFoundError):
        mem.delete(d.trace_id, namespace="bob")
    with pytest.raises(UnknownNamespaceError):
        mem.get(d.trace_id, namespace="carol")
    assert mem.get(d.trace_id, namespace="alice").text == FACT["text"]


def test_gate_keeps_chitchat_cold_and_rejects_duplicates(mem: HEIMemory) -> None:
    chat = mem.write("ok thanks, sounds good", namespace="n")
    assert chat.accepted and chat.reason == "cold" and chat.tier == "cold" and chat.trace_id
    fact = mem.write(FACT, namespace="n")
    assert fact.accepted and fact.tier == "salient"
    dup = mem.write(FACT, namespace="n")
    assert dup.accepted and dup.reason == "duplicate" and dup.tier == "cold"  # said again: a later event, kept cold
    st = mem.stats(namespace="n")
    assert st.traces == 3 and st.gate["by_reason"]["duplicate_kept"] == 1
    assert st.gate["accepted"] == 1 and st.gate["cold"] == 2  # the write rate counts the salient write only
    assert mem.recall(FACT, k=1, namespace="n").traces[0].trace.id == dup.trace_id  # the newer copy wins
    assert mem.get(chat.trace_id, namespace="n").tier == "cold"


def test_a_question_below_threshold_is_not_kept_so_asking_again_recalls_the_fact(mem: HEIMemory) -> None:
    """Found by the vLLM endpoint test: the asked question was kept cold and came back first when asked again."""
    fact = mem.write({"text": "My cat Miso is afraid of thunderstorms.", "pin": True}, namespace="q")
    asked = mem.write("What is my cat Miso afraid of?", namespace="q")
    assert not asked.accepted and asked.reason == "below_threshold" and asked.trace_id is None
    assert not mem.write("What is my cat Miso afraid of?", namespace="q").accepted  # nor its repeat
    assert mem.recall("What is my cat Miso afraid of?", k=1, namespace="q").traces[0].trace.id == fact.trace_id
    kept = mem.write("Did you see it? I finally finished the quilt.", namespace="q")
    assert kept.accepted  # a question beside a statement still says something
    assert mem.write({"text": "What was that song again?", "pin": True}, namespace="q").accepted  # asked to keep it
    assert mem.stats(namespace="q").traces == 3


def test_cold_questions_keeps_asked_questions_cold(tmp_path: Path) -> None:
    from hei_nw_plugin.embed import HashingEmbedder

    m = HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path}, gate={"cold_questions": True}), embedder=HashingEmbedder())
    d = m.write("What is my cat Miso afraid of?", namespace="n")
    assert d.accepted and d.tier == "cold"
    m.close()


def test_gate_without_cold_writes_drops_chitchat(tmp_path: Path) -> None:
    from hei_nw_plugin.embed import HashingEmbedder

    m = HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path}, gate={"cold_writes": False}), embedder=HashingEmbedder())
    d = m.write("ok thanks, sounds good", namespace="n")
    assert not d.accepted and d.reason == "below_threshold" and d.trace_id is None
    assert m.write(FACT, namespace="n").accepted and m.stats(namespace="n").traces == 1
    assert not m.write(FACT, namespace="n").accepted  # a duplicate is rejected
    m.close()


def test_a_cold_trace_ranks_below_an_equally_close_salient_one(tmp_path: Path) -> None:
    from hei_nw_plugin.embed import HashingEmbedder

    m = HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path}, gate={"tau": 5.0}), embedder=HashingEmbedder())
    cold = m.write("The spare key is under the blue pot.", namespace="n")
    salient = m.write({"text": "The spare key is under the blue pot!", "force": True}, namespace="n")
    assert cold.tier == "cold" and salient.tier == "salient"
    top = m.recall("Where is the spare key?", k=2, namespace="n").traces
    assert [t.trace.tier for t in top] == ["salient", "cold"]
    m.close()


def test_keyed_write_replaces_newest_wins(mem: HEIMemory) -> None:
    mem.write({"text": "The wifi password is tulip-42", "key": "wifi", "pin": True}, namespace="n")
    mem.write({"text": "The wifi password is now cedar-99", "key": "wifi", "pin": True}, namespace="n")
    t = mem.get_by_key("wifi", namespace="n")
    assert t is not None and "cedar-99" in t.text
    assert len(mem.list_traces(namespace="n")) == 1
    assert "cedar-99" in mem.recall("wifi password", k=1, namespace="n").traces[0].trace.text
    assert mem.verify().ok


def test_a_key_with_a_lone_surrogate_is_bad_input_on_lookup_too(mem: HEIMemory) -> None:
    # found by `hei-nw reliability fuzz`: the lookup raised UnicodeEncodeError from the database driver
    with pytest.raises(InvalidEventError, match="surrogate"):
        mem.get_by_key("\ud800", namespace="n")
    with pytest.raises(InvalidEventError, match="surrogate"):
        mem.delete_by_key("wifi\udfff", namespace="n")


@pytest.mark.parametrize("bad, err", [
    ({"text": ""}, InvalidEventError),
    ({"text": "   "}, InvalidEventError),
    ({"text": 42}, InvalidEventError),
    ({"text": "x", "slots": {"a": [1, 2]}}, InvalidEventError),
    ({"text": "x", "reward": 3}, InvalidEventError),
    ({"text": "x", "unknown_field": 1}, InvalidEventError),
    ({"text": "x" * 20000}, PayloadTooLargeError),
    ({"text": "x", "slots": {f"s{i}": i for i in range(100)}}, PayloadTooLargeError),
    ({"text": "x", "metadata": {"f": object()}}, InvalidEventError),
    (12, InvalidEventError),
])
def test_bad_input_is_rejected_and_nothing_changes(mem: HEIMemory, bad: object, err: type) -> None:
    mem.write(FACT, namespace="n")
    before = _snapshot(mem)
    with pytest.raises(err):
        mem.write(bad, namespace="n")  # type: ignore[arg-type]
    with pytest.raises(err):  # a bad event in a batch rejects the whole batch
        mem.write_many([{"text": "Valid new fact about Zed's red kayak", "pin": True}, bad], namespace="n")  # type: ignore[list-item]
    assert _snapshot(mem) == before


@pytest.mark.parametrize("ns", ["", "a\x00b", "x" * 300, 5])
def test_bad_namespace(mem: HEIMemory, ns: object) -> None:
    with pytest.raises(InvalidNamespaceError):
        mem.write(FACT, namespace=ns)  # type: ignore[arg-type]


def test_bad_cue_and_k(mem: HEIMemory) -> None:
    mem.write(FACT, namespace="n")
    for cue in ["", {"text": "", "slots": {}}, 3.5]:
        with pytest.raises(InvalidEventError):
            mem.recall(cue, namespace="n")  # type: ignore[arg-type]
    for k in [0, -1, 10_000, True, "3"]:
        with pytest.raises(InvalidEventError):
            mem.recall("key", k=k, namespace="n")  # type: ignore[arg-type]


def test_index_rebuilt_from_store_when_missing_or_corrupt(mem_factory, tmp_path: Path) -> None:
    m1 = mem_factory()
    ids = [m1.write({"text": f"Distinct fact {i} about item{i} in room{i}", "pin": True}, namespace="n").trace_id for i in range(20)]
    m1.close()
    files = list((tmp_path / "index").rglob("*.usearch"))
    assert files
    files[0].write_bytes(b"garbage" * 100)  # corrupt
    m2 = mem_factory()
    r = m2.recall("Distinct fact 7 about item7 in room7", k=1, namespace="n")
    assert r.traces[0].trace.id == ids[7]
    m2.close()
    for f in files:
        f.unlink()  # missing
    m3 = mem_factory()
    assert m3.recall("Distinct fact 3 about item3 in room3", k=1, namespace="n").traces[0].trace.id == ids[3]


def test_stale_index_is_reconciled_with_store(mem_factory) -> None:
    """A crash after the store commit but before the index save: the store wins."""
    m1 = mem_factory()
    m1.write({"text": "Early fact about the lighthouse keeper", "pin": True}, namespace="n")
    m1.close()  # index saved with 1 entry
    m2 = mem_factory()
    d = m2.write({"text": "Later fact about the ferry timetable", "pin": True}, namespace="n")
    m2.store.close()  # simulate a crash: index file never saved again
    m3 = mem_factory()
    assert m3.recall("ferry timetable", k=1, namespace="n").traces[0].trace.id == d.trace_id


def test_pin_evict_and_ttl(mem_factory) -> None:
    m = mem_factory(decay={"capacity": 3, "half_life_s": 3600})
    pinned = m.write({"text": "Pinned: the safe code is 9931", "pin": True}, namespace="n").trace_id
    ids = [m.write({"text": f"Fact {i}: the {w} is in the {p}", "reward": 0.7 + 0.1 * i}, namespace="n").trace_id
           for i, (w, p) in enumerate([("drill", "shed"), ("ladder", "garage"), ("kettle", "attic"), ("tent", "cellar")])]
    assert [i for i in ids if i is None] == []
    remaining = {t.id for t in m.list_traces(namespace="n")}
    assert pinned in remaining and len(remaining) == 3
    m2 = mem_factory(data_dir=m.settings.store.data_dir / "ttl")
    t1 = m2.write({"text": "Temporary: parking spot B7 today", "ttl_s": 10}, namespace="n").trace_id
    keep = m2.write({"text": "Pinned forever: passport in drawer", "pin": True, "ttl_s": 10}, namespace="n").trace_id
    import time as _t
    gone = m2.evict(namespace="n", now=_t.time() + 60)
    assert t1 in gone and keep not in gone
    m2.unpin(keep, namespace="n")
    assert m2.verify().ok


def test_tamper_is_detected_and_never_recalled(mem: HEIMemory) -> None:
    a = mem.write(FACT, namespace="n").trace_id
    b = mem.write({"text": "Marco moved the offsite to Thursday", "pin": True}, namespace="n").trace_id
    db = mem.settings.store.data_dir / "traces.db"
    with sqlite3.connect(db) as c:
        (blob,) = c.execute("select payload from hei_traces where id=?", (a,)).fetchone()
        c.execute("update hei_traces set payload=? where id=?", (blob[:-1] + bytes([blob[-1] ^ 1]), a))
        c.execute("update hei_traces set pinned=0 where id=?", (b,))
    rep = mem.verify()
    kinds = {(p["kind"], p["trace_id"]) for p in rep.problems}
    assert not rep.ok and ("tampered_row", a) in kinds and ("pin_mismatch", b) in kinds
    r = mem.recall("spare key blue toolbox", k=5, namespace="n")
    assert a not in [t.trace.id for t in r.traces]
    with sqlite3.connect(db) as c:
        c.execute("delete from hei_provenance where seq = 1")
    assert any(p["kind"] == "broken_chain" for p in mem.verify().problems)


def test_deleted_payload_unrecoverable(mem: HEIMemory) -> None:
    tid = mem.write(FACT, namespace="n").trace_id
    db = mem.settings.store.data_dir / "traces.db"
    with sqlite3.connect(db) as c:
        (seq,) = c.execute("select seq from hei_traces where id=?", (tid,)).fetchone()
        (wrapped,) = c.execute("select wrapped_dek from hei_trace_keys where trace_seq=?", (seq,)).fetchone()
    mem.delete(tid, namespace="n")
    with sqlite3.connect(db) as c:
        assert c.execute("select count(*) from hei_trace_keys where trace_seq=?", (seq,)).fetchone()[0] == 0
        assert c.execute("select count(*) from hei_replay_queue where trace_seq=?", (seq,)).fetchone()[0] == 0
    raw = db.read_bytes() + (db.with_name("traces.db-wal").read_bytes() if db.with_name("traces.db-wal").exists() else b"")
    assert wrapped not in raw  # secure_delete + checkpoint: no copy of the data key left in the files


def test_key_rotation_rewraps_without_loss_and_wrong_key_fails(mem_factory, tmp_path: Path) -> None:
    m = mem_factory()
    ids = [m.write({"text": f"Rotation fact {i} about gadget{i}", "pin": True}, namespace="n").trace_id for i in range(5)]
    assert m.rotate_keys() == 5
    assert [m.get(i, namespace="n").text for i in ids] == [f"Rotation fact {i} about gadget{i}" for i in range(5)]
    assert m.verify().ok
    m.close()
    other = mem_factory(data_dir=tmp_path / "other")  # a different key file
    other.close()
    from hei_nw_plugin.config import HeiNwSettings
    from hei_nw_plugin.embed import HashingEmbedder
    wrong = HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path}, security={"key_file": tmp_path / "other" / "keys.json"}),
                      embedder=HashingEmbedder(dim=128))
    with pytest.raises(DecryptionError):
        wrong.get(ids[0], namespace="n")
    assert not wrong.verify().ok
    wrong.close()


def test_corrupt_key_file_is_a_config_error(tmp_path: Path) -> None:
    from hei_nw_plugin.config import HeiNwSettings
    from hei_nw_plugin.embed import HashingEmbedder
    (tmp_path / "keys.json").write_text("{not json")
    with pytest.raises(ConfigError):
        HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path}), embedder=HashingEmbedder(dim=64))


def test_where_filter_and_metadata(mem: HEIMemory) -> None:
    mem.write({"text": "Lena likes green tea", "slots": {"who": "Lena"}, "metadata": {"src": "chat"}, "pin": True}, namespace="n")
    mem.write({"text": "Omar likes black coffee", "slots": {"who": "Omar"}, "metadata": {"src": "email"}, "pin": True}, namespace="n")
    r = mem.recall("what does someone like to drink", k=5, namespace="n", where={"src": "email"})
    assert [t.trace.slots["who"] for t in r.traces] == ["Omar"]
    assert r.traces[0].trace.metadata == {"src": "email"}
    assert mem.recall("zebra quantum umbrella", k=5, namespace="n", min_similarity=0.99).traces == []


def test_async_twins(mem: HEIMemory) -> None:
    async def go() -> None:
        d = await mem.awrite(FACT, namespace="n")
        r = await mem.arecall("spare key", k=1, namespace="n")
        assert r.traces[0].trace.id == d.trace_id
        assert (await mem.astats(namespace="n")).traces == 1
        await mem.adelete(d.trace_id, namespace="n")
        assert (await mem.averify()).ok

    asyncio.run(go())


def test_recall_does_not_change_hopfield_or_keys(mem: HEIMemory) -> None:
    mem.write(FACT, namespace="n")
    proj = mem.keyer._proj.copy()
    seqs = mem.store.seqs("n")
    keys_before = mem.store.key_vectors([int(s) for s in seqs])
    params = (mem.hopfield.beta, mem.hopfield.steps)
    for _ in range(3):
        mem.recall("spare key", k=1, namespace="n")
    assert np.array_equal(proj, mem.keyer._proj)
    assert np.array_equal(keys_before, mem.store.key_vectors([int(s) for s in seqs]))
    assert params == (mem.hopfield.beta, mem.hopfield.steps)


def test_repeated_key_in_one_batch_keeps_the_last(mem: HEIMemory) -> None:
    ds = mem.write_many([{"text": "Desk of Tove is in room 4", "key": "tove-desk", "force": True},
                         {"text": "Desk of Tove moved to room 9", "key": "tove-desk", "force": True}], namespace="n")
    assert [d.accepted for d in ds] == [True, True]
    assert [t.text for t in mem.list_traces(namespace="n")] == ["Desk of Tove moved to room 9"]
    assert [t.trace.text for t in mem.recall("where is Tove's desk", k=5, namespace="n").traces] == ["Desk of Tove moved to room 9"]
    assert mem.verify().ok


def test_update_of_existing_key_is_always_written(mem: HEIMemory) -> None:
    mem.write({"text": "Build server is ci-3 in rack B", "key": "build", "force": True}, namespace="n")
    d = mem.write({"text": "Build server is ci-3 in rack B", "key": "build", "metadata": {"v": 2}}, namespace="n")
    assert d.accepted and d.reason == "update"
    t = mem.get_by_key("build", namespace="n")
    assert t is not None and t.metadata == {"v": 2} and not t.pinned


def test_seqs_are_never_reused_after_delete(mem: HEIMemory) -> None:
    a = mem.write({"text": "First fact about the copper kettle", "force": True}, namespace="n").trace_id
    mem.delete(a, namespace="n")
    b = mem.write({"text": "Second fact about the marble statue", "force": True}, namespace="n").trace_id
    r = mem.recall("copper kettle", k=5, namespace="n")
    assert [t.trace.id for t in r.traces] == [b]


def test_expired_traces_read_as_gone_and_expiry_can_move(mem: HEIMemory) -> None:
    import time as _t
    t = mem.write({"text": "Parking spot B7 for today only", "force": True, "ttl_s": 0.2}, namespace="n").trace_id
    keep = mem.write({"text": "Locker 12 holds the spare helmet", "force": True, "ttl_s": 0.2}, namespace="n").trace_id
    mem.set_expiry(keep, 3600, namespace="n")
    _t.sleep(0.3)
    assert mem.get_by_key("x", namespace="n") is None
    with pytest.raises(TraceNotFoundError):
        mem.get(t, namespace="n")
    assert [x.id for x in mem.list_traces(namespace="n")] == [keep]
    assert t not in [x.trace.id for x in mem.recall("parking spot", k=5, namespace="n").traces]
    with pytest.raises(InvalidEventError):
        mem.set_expiry(keep, -1, namespace="n")
    mem.delete(keep, namespace="n")
    assert mem.evict(namespace="n") == [t]
    assert mem.namespaces() == [] and mem.namespaces(include_empty=True) == ["n"]
    assert mem.verify().ok


def test_newest_version_of_a_fact_wins(mem: HEIMemory) -> None:
    old = {"text": "Lorcan's manager is Casimir.", "slots": {"who": "Lorcan", "attribute": "manager", "value": "Casimir"}, "force": True}
    new = {"text": "Update: Lorcan now reports to Ottilie.", "slots": {"who": "Lorcan", "attribute": "manager", "value": "Ottilie"}, "force": True}
    other = {"text": "Lorcan's manager Casimir likes tea.", "slots": {"who": "Casimir", "attribute": "drink", "value": "tea"}, "force": True}
    mem.write_many([old, other, new], namespace="n")
    r = mem.recall("Lorcan's manager is Casimir", k=3, namespace="n")
    texts = [t.trace.text for t in r.traces]
    assert texts.index(new["text"]) < texts.index(old["text"])
    mem.settings.hopfield.supersede_slots = False
    mem.settings.recall.versions = False  # the text rule alone would also put the newer version first
    r2 = mem.recall("Lorcan's manager is Casimir", k=3, namespace="n")
    assert r2.traces[0].trace.text == old["text"]  # without the rule the closer, older wording wins


def test_a_cue_naming_the_old_value_gets_the_old_version(mem: HEIMemory) -> None:
    a = {"text": "On Monday Ava lost a wallet at the pier (ref R1).", "slots": {"who": "Ava", "what": "wallet", "when": "Monday", "ref": "R1"}, "force": True}
    b = {"text": "On Monday Ava lost a wallet at the pier (ref R2).", "slots": {"who": "Ava", "what": "wallet", "when": "Monday", "ref": "R2"}, "force": True}
    mem.write_many([a, b], namespace="n")
    r = mem.recall({"text": "What happened with Ava, R1?", "slots": {"who": "Ava", "ref": "R1"}}, k=2, namespace="n")
    assert r.traces[0].trace.slots["ref"] == "R1"


def test_warm_features_fills_the_cache_so_recall_decrypts_only_what_it_returns(tmp_path: Path) -> None:
    from hei_nw_plugin.embed import HashingEmbedder
    from hei_nw_plugin.types import MemoryEvent

    with HEIMemory.open(tmp_path, embedder=HashingEmbedder()) as mem:
        mem.write_many([MemoryEvent(text=f"item {i} sits on shelf {i}", pin=True) for i in range(30)], namespace="w")
    with HEIMemory.open(tmp_path, embedder=HashingEmbedder()) as mem:
        assert mem.warm_features(namespace="w") == 30
        assert mem.cache_stats()["entries"] == 30
        assert mem.recall("item 7 shelf 7", k=1, namespace="w").traces


def _supersede_pairwise(scores, slots, seqs, cue_slots=None):  # type: ignore[no-untyped-def]
    """The definition, pair by pair (reference for the linear-time version)."""
    cue = {k: str(v).strip().lower() for k, v in (cue_slots or {}).items()}
    out = scores.copy()
    n = len(seqs)
    for i in sorted(range(n), key=lambda x: -seqs[x]):
        si = slots[i]
        if not si or len(si) < 3:
            continue
        for j in range(n):
            sj = slots[j]
            if seqs[j] > seqs[i] and sj and sj.keys() == si.keys():
                differing = [x for x in si if si[x] != sj[x]]
                if len(differing) == 1 and cue.get(differing[0]) != str(si[differing[0]]).strip().lower():
                    out[i] = min(out[i], out[j] - 1e-4)
    return out


def test_supersede_equals_the_pairwise_definition_on_random_candidate_sets() -> None:
    from hei_nw_plugin.versions import slot_signatures
    from hei_nw_plugin.versions import supersede_slots as _supersede

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        keysets = [("who", "attr", "value"), ("who", "attr", "value", "when"), ("who", "what")]
        slots = []
        for _i in range(n):
            ks = keysets[int(rng.integers(0, 3))]
            slots.append(None if rng.random() < 0.1 else {k: f"{k}{int(rng.integers(0, 2))}" for k in ks})
        seqs = [int(x) for x in rng.permutation(1000)[:n]]
        scores = rng.random(n).astype(np.float32)
        cue = {"value": "value1"} if rng.random() < 0.5 else None
        expected = _supersede_pairwise(scores, slots, seqs, cue)
        np.testing.assert_array_equal(_supersede(scores, slots, seqs, cue), expected)
        cached = [slot_signatures(si) for si in slots]  # what recall keeps per seq
        np.testing.assert_array_equal(_supersede(scores, slots, seqs, cue, cached), expected)


def test_a_store_written_before_the_tier_column_opens_and_reads_salient(tmp_path: Path) -> None:
    from hei_nw_plugin.embed import HashingEmbedder

    m = HEIMemory.open(tmp_path, embedder=HashingEmbedder())
    tid = m.write({**FACT, "force": True}, namespace="n").trace_id
    m.close()
    with sqlite3.connect(tmp_path / "traces.db") as db:  # as the schema was before the tier column
        db.execute("ALTER TABLE hei_traces DROP COLUMN tier")
    m = HEIMemory.open(tmp_path, embedder=HashingEmbedder())
    assert m.get(tid, namespace="n").tier == "salient" and m.verify().ok
    assert m.write("ok thanks", namespace="n").tier == "cold"
    m.close()


def test_a_row_version_is_attested_once_and_a_changed_row_again(tmp_path: Path) -> None:
    from hei_nw_plugin.embed import HashingEmbedder
    from hei_nw_plugin.errors import IntegrityError

    m = HEIMemory.open(tmp_path, embedder=HashingEmbedder())
    tid = m.write({**FACT, "force": True}, namespace="n").trace_id
    checked: list[int] = []
    real = m.store._attest_chunk
    m.store._attest_chunk = lambda conn, rows: checked.append(len(rows)) or real(conn, rows)  # type: ignore[method-assign]
    m.get(tid, namespace="n")
    assert checked == []  # this process sealed and signed the row it reads back
    m.close()
    m = HEIMemory.open(tmp_path, embedder=HashingEmbedder())
    real = m.store._attest_chunk
    m.store._attest_chunk = lambda conn, rows: checked.append(len(rows)) or real(conn, rows)  # type: ignore[method-assign]
    m.get(tid, namespace="n")
    m.get(tid, namespace="n")
    m.recall("spare key", k=1, namespace="n")
    assert checked == [1]  # another process's row: looked up once, then known
    with sqlite3.connect(tmp_path / "traces.db") as db:
        db.execute("UPDATE hei_traces SET gate_score = gate_score + 1")
    with pytest.raises(IntegrityError):
        m.get(tid, namespace="n")
    assert checked == [1, 1]
    m.close()


def test_a_row_written_here_and_changed_on_disk_is_refused(tmp_path: Path) -> None:
    from hei_nw_plugin.embed import HashingEmbedder
    from hei_nw_plugin.errors import IntegrityError

    m = HEIMemory.open(tmp_path, embedder=HashingEmbedder())
    tid = m.write({**FACT, "force": True}, namespace="n").trace_id
    keyed = m.write({**FACT, "text": "The spare key is under the red pot.", "key": "spare", "force": True},
                    namespace="n").trace_id
    with sqlite3.connect(tmp_path / "traces.db") as db:
        db.execute("UPDATE hei_traces SET gate_score = gate_score + 1")
    for t in (tid, keyed):
        with pytest.raises(IntegrityError):
            m.get(t, namespace="n")
    m.close()

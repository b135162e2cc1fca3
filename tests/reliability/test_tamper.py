"""Tamper evidence (issue 8 part 2), CI-sized: every kind of edit is reported and named, and never recalled."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from hei_nw_eval.reliability import tamper

from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.errors import IntegrityError
from hei_nw_plugin.memory import HEIMemory


def test_every_tamper_kind_is_named_by_verify_and_refused_by_recall(tmp_path: Path) -> None:
    out = tmp_path / "tamper.json"
    r = tamper.run(per_kind=3, traces=30, embedder="hashing", seed=1, out=out, work_dir=tmp_path)
    assert r.pristine_verify_ok and r.pristine_recall_hit_rate == 1.0
    assert {k.kind for k in r.kinds} == set(tamper.KINDS)
    misses = {k.kind: k.misses for k in r.kinds if k.detected < k.instances}
    assert not misses, misses
    assert r.recall_returned_tampered == 0 and r.get_returned_tampered == 0
    assert sum(k.refusal_checks for k in r.kinds) > 0
    assert json.loads(out.read_text())["detection_rate"] == 1.0


def test_reordered_rows_and_an_edited_expiry_are_named(tmp_path: Path) -> None:
    mem = HEIMemory.open(tmp_path, embedder=HashingEmbedder(dim=128))
    a = mem.write({"text": "Ada left the oak lantern in the attic", "force": True, "ttl_s": 3600}, namespace="n").trace_id
    b = mem.write({"text": "Bram sold the tin whistle at the market", "force": True}, namespace="n").trace_id
    with sqlite3.connect(tmp_path / "traces.db") as c:
        c.execute("update hei_traces set expires_at = expires_at + 86400 where id = ?", (a,))
    problems = {(p["kind"], p["trace_id"]) for p in mem.verify().problems}
    assert ("expiry_mismatch", a) in problems
    with pytest.raises(IntegrityError):
        mem.get(a, namespace="n")
    with sqlite3.connect(tmp_path / "traces.db") as c:
        c.execute("update hei_traces set expires_at = expires_at - 86400 where id = ?", (a,))
        sa, sb = (c.execute("select seq from hei_traces where id = ?", (t,)).fetchone()[0] for t in (a, b))
        for table, col in (("hei_traces", "seq"), ("hei_trace_keys", "trace_seq"), ("hei_replay_queue", "trace_seq")):
            c.execute(f"update {table} set {col} = -1 where {col} = ?", (sa,))
            c.execute(f"update {table} set {col} = ? where {col} = ?", (sa, sb))
            c.execute(f"update {table} set {col} = ? where {col} = -1", (sb,))
    assert {p["trace_id"] for p in mem.verify().problems if p["kind"] == "reordered_row"} == {a, b}
    assert mem.recall("Bram sold the tin whistle at the market", 5, namespace="n").traces == []
    mem.close()


def test_a_malformed_key_is_named_and_the_namespace_still_opens(tmp_path: Path) -> None:
    mem = HEIMemory.open(tmp_path, embedder=HashingEmbedder(dim=128))
    a = mem.write({"text": "Ada left the oak lantern in the attic", "force": True}, namespace="n").trace_id
    b = mem.write({"text": "Bram sold the tin whistle at the market", "force": True}, namespace="n").trace_id
    mem.close()
    with sqlite3.connect(tmp_path / "traces.db") as c:
        (blob,) = c.execute("select key_blob from hei_traces where id = ?", (a,)).fetchone()
        c.execute("update hei_traces set key_blob = ? where id = ?", (b"\xff\xff\xff\x7f" + blob[4:], a))  # dim 2^31-1
    shutil.rmtree(tmp_path / "index")  # the index is rebuilt from the store's keys
    mem = HEIMemory.open(tmp_path, embedder=HashingEmbedder(dim=128))
    assert ("tampered_row", a) in {(p["kind"], p["trace_id"]) for p in mem.verify().problems}
    assert [t.trace.id for t in mem.recall("Bram sold the tin whistle at the market", 5, namespace="n").traces] == [b]
    mem.close()

from __future__ import annotations

from pathlib import Path

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.replay import ReplayScheduler

FACTS = [
    "Ada keeps the brass key in the blue box",
    "Ada keeps the brass key in the blue box today",  # near twin of the first: interferes
    "Bram parks the red van at the north depot",
    "Cleo waters the fern on the balcony every Sunday",
    "Dov stores the ladder behind the garden shed",
]


def _mem(tmp: Path) -> HEIMemory:
    return HEIMemory(HeiNwSettings.build(store={"data_dir": tmp}), embedder=HashingEmbedder(dim=128))


def test_queue_is_fed_by_writes_and_survives_restart(tmp_path: Path) -> None:
    m = _mem(tmp_path)
    ids = [m.write({"text": t, "force": True}, namespace="n").trace_id for t in FACTS]
    chat = m.write("ok thanks", namespace="n")
    assert chat.accepted and chat.tier == "cold"  # kept cold, and cold traces are never queued
    s = ReplayScheduler(m)
    batch = s.next_batch(3, namespace="n")
    s.mark_replayed(batch)
    m.close()
    m2 = _mem(tmp_path)
    q = {seq: n for seq, n, _ in ReplayScheduler(m2).queue("n")}
    assert len(q) == len(ids) and sorted(q.values()) == [0, 0, 1, 1, 1]


def test_deleted_trace_is_never_replayed(tmp_path: Path) -> None:
    m = _mem(tmp_path)
    ids = [m.write({"text": t, "force": True}, namespace="n").trace_id for t in FACTS]
    m.delete(ids[2], namespace="n")
    s = ReplayScheduler(m)
    for order in ("ca2", "shuffled"):
        assert ids[2] not in s.next_batch(10, namespace="n", order=order).trace_ids  # type: ignore[arg-type]


def test_ca2_order_keeps_interfering_twins_apart(tmp_path: Path) -> None:
    m = _mem(tmp_path)
    ids = [m.write({"text": t, "force": True}, namespace="n").trace_id for t in FACTS]
    s = ReplayScheduler(m)
    ca2 = s.next_batch(2, namespace="n")
    assert not {ids[0], ids[1]} <= set(ca2.trace_ids)
    full = s.next_batch(5, namespace="n")
    shuffled = [s.next_batch(5, namespace="n", order="shuffled", seed=k) for k in range(5)]
    assert sorted(full.trace_ids) == sorted(ids)
    assert full.items[1].overlap < 0.9  # the second pick is not the twin of the first
    assert len({tuple(b.trace_ids) for b in shuffled}) > 1  # seeded, but seeds differ

"""HEIMemory.refresh: two processes' worth of HEIMemory on one store see each other's changes."""

from __future__ import annotations

from pathlib import Path

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.memory import HEIMemory


def _pair(tmp_path: Path, url: str | None = None) -> tuple[HEIMemory, HEIMemory]:
    keys = tmp_path / "shared-keys.json"

    def make(name: str) -> HEIMemory:
        store: dict[str, object] = {"data_dir": tmp_path / name}
        store["url"] = url or f"sqlite:///{(tmp_path / 'shared.db').as_posix()}"
        return HEIMemory(HeiNwSettings.build(store=store, security={"key_file": keys}), embedder=HashingEmbedder(dim=128))

    return make("a"), make("b")


def test_refresh_brings_in_writes_and_deletes_of_another_instance(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    try:
        b.write({"text": "Warm-up note about the garden shed", "pin": True}, namespace="t/u")
        assert len(b.recall("garden shed", 5, namespace="t/u").traces) == 1  # b's graph is now open
        d = a.write({"text": "Priya keeps the spare key in the blue toolbox", "pin": True}, namespace="t/u")
        assert d.trace_id not in [r.trace.id for r in b.recall("spare key toolbox", 5, namespace="t/u").traces]
        assert b.refresh("t/u") == (1, 0)
        assert b.recall("spare key toolbox", 1, namespace="t/u").traces[0].trace.id == d.trace_id
        assert b.refresh("t/u") == (0, 0)  # nothing moved: no work
        a.delete(d.trace_id, namespace="t/u")
        assert b.refresh("t/u") == (0, 1)
        assert d.trace_id not in [r.trace.id for r in b.recall("spare key toolbox", 5, namespace="t/u").traces]
    finally:
        a.close()
        b.close()


def test_store_head_moves_with_every_mutation(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    try:
        h0 = b.store_head()
        d = a.write({"text": "Marco moved the offsite to Thursday", "pin": True}, namespace="t/u")
        h1 = b.store_head()
        a.unpin(d.trace_id, namespace="t/u")
        h2 = b.store_head()
        assert len({h0, h1, h2}) == 3
    finally:
        a.close()
        b.close()

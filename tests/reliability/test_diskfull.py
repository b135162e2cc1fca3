"""Disk full (issue 19), CI-sized: the store, and the index alone, on a small tmpfs filled and freed; calls fail
with DiskFullError, nothing acknowledged is lost, and the store and index open cleanly afterwards."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hei_nw_eval.reliability import diskfull

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.memory import HEIMemory


@pytest.mark.integration
def test_a_full_disk_under_the_store_and_under_the_index(tmp_path: Path) -> None:
    if (why := diskfull.can_mount(tmp_path)) is not None:
        pytest.skip(f"mounting a tmpfs is not permitted here: {why}")
    out = tmp_path / "diskfull.json"
    r = diskfull.run(size_mb=8, rounds=1, embedder="hashing", seed=3, out=out, work_dir=tmp_path)
    store, index = r.scenarios
    assert r.ok, [(s.name, s.errors, s.error_examples, s.details[:3]) for s in r.scenarios]
    assert store.failed_writes > 0 and set(store.errors) == {"DiskFullError"} and store.lost == 0
    assert index.index_saves_failed > 0 and index.failed_writes == 0 and index.index_mismatch == 0
    assert json.loads(out.read_text())["scenarios"][0]["name"] == "store"


def test_the_check_counts_an_error_that_is_not_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mem = HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path}), embedder=HashingEmbedder(dim=64))

    def broken() -> int:
        raise OSError(28, "No space left on device")  # what a rotation on a full disk raised before the fix

    monkeypatch.setattr(mem, "rotate_keys", broken)
    sc = diskfull.Scenario(name="store", what_is_full="everything", fs_bytes=0)
    rng = random.Random(0)
    while "rotate_keys" not in sc.calls:
        diskfull._op(sc, diskfull._Ledger(), mem, rng, 0)
    mem.close()
    assert sc.unclear_errors >= 1 and sc.failed and "OSError" in sc.errors

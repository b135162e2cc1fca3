"""Crash safety (issue 8 part 1), CI-sized: SIGKILLed writers, key rotations and consolidations lose nothing
acknowledged and leave a store that verifies, an index that catches up and a loadable served adapter."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from hei_nw_eval.reliability import crash
from hei_nw_eval.reliability.faults import open_memory

from hei_nw_plugin.embed import HashingEmbedder


@pytest.mark.integration
def test_sigkilled_writers_and_rotations_lose_nothing_acknowledged(tmp_path: Path) -> None:
    out = tmp_path / "crash.json"
    r = crash.run(trials=5, per_store=3, max_ops=8, rotation_trials=3, rotation_traces=40, consolidation_trials=0,
                  embedder="hashing", seed=2, out=out, work_dir=tmp_path)
    assert r.failures == 0, (r.write_trials, r.rotation_trials)
    assert r.write.trials == 5 and r.write.totals["acked_ops"] > 0 and r.write.totals["recall_checked"] > 0
    assert r.rotation.trials == 3 and r.rotation.totals["decrypt_failures"] == 0
    assert json.loads(out.read_text())["write"]["trials"] == 5


def test_the_write_check_catches_a_lost_write_and_a_resurrected_delete(tmp_path: Path) -> None:
    emb = HashingEmbedder(dim=128)
    mem = open_memory(tmp_path, emb)
    kept = mem.write({"text": "Ada hid the spare key in the blue toolbox", "force": True}, namespace="alice").trace_id
    mem.close()
    acks = [{"op": "write", "ns": "alice", "ids": [kept, "0" * 28], "texts": ["Ada hid the spare key in the blue toolbox",
                                                                               "a write the store never got"]},
            {"op": "delete", "id": kept}]
    trial = crash.WriteTrial(trial=0, store=0, kill_after_ops=0, delay_s=0.0, acked_ops=2, in_flight=None, live_after=0)
    crash._check_writes(tmp_path, emb, crash.Expected(), acks, None, trial, random.Random(0))
    assert trial.lost == 1 and trial.resurrected == 1 and trial.failed


def test_a_rotation_retires_keys_an_interrupted_one_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mem = open_memory(tmp_path, HashingEmbedder(dim=128))
    mem.write({"text": "Bram sold the tin whistle at the fish market", "force": True}, namespace="n")
    first = mem.keys.current_kek_id()
    with monkeypatch.context() as m:  # a rotation killed after its commit, before it retired the old key
        m.setattr(mem.keys, "retire_kek", lambda _kid: None)
        mem.rotate_keys()
    assert first in mem.keys.kek_ids()
    mem.rotate_keys()
    assert mem.keys.kek_ids() == [mem.keys.current_kek_id()] and mem.verify().ok
    mem.close()


def test_a_rotation_leaves_keys_of_another_store_sharing_the_key_file_alone(tmp_path: Path) -> None:
    emb = HashingEmbedder(dim=128)
    mem = open_memory(tmp_path, emb)
    tid = mem.write({"text": "Bram sold the tin whistle at the fish market", "force": True}, namespace="n").trace_id
    mem.close()
    from hei_nw_plugin.config import HeiNwSettings
    from hei_nw_plugin.memory import HEIMemory

    other = HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path, "url": f"sqlite:///{tmp_path}/other.db"}), embedder=emb)
    other.rotate_keys()  # same key file, no rows: it must not retire the key the first store's rows use
    other.close()
    mem = open_memory(tmp_path, emb)
    assert mem.get(tid, namespace="n").text.startswith("Bram") and mem.verify().ok
    mem.close()


@pytest.mark.integration
def test_a_killed_consolidation_keeps_the_promoted_adapter_served(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
    from tiny_lm import tiny_model, tiny_tokenizer

    r = crash.run(trials=0, rotation_trials=0, rotation_traces=0, consolidation_trials=1, consolidation_steps=2,
                  embedder="hashing", seed=1, work_dir=tmp_path, model_factory=lambda: (tiny_model(seed=0), tiny_tokenizer()))
    assert r.consolidation.trials == 1 and r.failures == 0, (r.consolidation, r.consolidation_trials)
    assert all(t["loadable"] and t["hash_ok"] for t in r.consolidation_trials)
    assert r.consolidation.totals["recovered"] == 1

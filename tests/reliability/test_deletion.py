"""Deletion (issue 8 part 3), CI-sized: a deleted trace is gone from recall, store, index, replay, later backups
and the raw files, and no byte offset of those files unwraps its data key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hei_nw_eval.reliability import deletion

from hei_nw_plugin.cli import main as cli_main
from hei_nw_plugin.config import IndexSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.index import USearchIndex
from hei_nw_plugin.memory import HEIMemory


def test_deleted_traces_leave_no_trace_anywhere(tmp_path: Path) -> None:
    out = tmp_path / "deletion.json"
    r = deletion.run(traces=12, delete=2, embedder="hashing", seed=3, out=out, work_dir=tmp_path)
    assert r.failures == [], r.failures
    assert all(v == r.deleted for v in r.after.values()), r.after
    # The controls: before the deletion the same searches find what is there.
    assert r.before["recalled"] == r.before["ciphertext_in_db_files"] == r.before["wrapped_key_in_db_files"] == 2
    assert r.before["index_vector_in_index_files"] == 2 and r.before["plaintext_in_db_files"] == 0
    assert r.unwrap_successes_before_control == 2 and r.unwrap_successes_after == 0 and r.unwrap_attempts > 0
    assert r.backup_before_holds_deleted == 2 and r.backup_before_unwrappable_after_rotation == 0
    assert json.loads(out.read_text())["deleted"] == 2


def test_removed_vectors_stay_out_of_every_later_index_save(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 64)).astype(np.float32)
    ix = USearchIndex(64, IndexSettings(), tmp_path / "ns.usearch")
    ix.add(np.arange(200, dtype=np.uint64), vectors)
    stored = {i: ix._index.get(i, dtype=ix._index.dtype).tobytes() for i in (3, 50, 120)}
    ix.remove([3, 50])
    for _ in range(2):  # the freed slots keep their bytes in memory: every save must zero them again
        ix.save()
        raw = (tmp_path / "ns.usearch").read_bytes()
        assert stored[3] not in raw and stored[50] not in raw and stored[120] in raw
    reloaded = USearchIndex(64, IndexSettings(), tmp_path / "ns.usearch")
    assert len(reloaded) == 198 and int(reloaded.search(vectors[7], 1)[0][0]) == 7


def test_backup_command_writes_a_readable_copy_and_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mem = HEIMemory.open(tmp_path / "m", embedder=HashingEmbedder(dim=128))
    tid = mem.write({"text": "Ada hid the spare key in the blue toolbox", "force": True}, namespace="n").trace_id
    mem.close()
    cli_main(["--data-dir", str(tmp_path / "m"), "backup", str(tmp_path / "b.db")])
    assert "backup written" in capsys.readouterr().out
    restored = tmp_path / "r"
    restored.mkdir()
    (restored / "traces.db").write_bytes((tmp_path / "b.db").read_bytes())
    (restored / "keys.json").write_bytes((tmp_path / "m" / "keys.json").read_bytes())
    copy = HEIMemory.open(restored, embedder=HashingEmbedder(dim=128))
    assert copy.get(tid, namespace="n").text.startswith("Ada hid") and copy.verify().ok
    copy.close()
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--data-dir", str(tmp_path / "m"), "backup", str(tmp_path / "b.db")])
    assert exit_.value.code == 2

"""Deletion: a deleted trace is gone from recall, store, index, replay queue, later backups and the raw files.

``hei-nw reliability deletion --traces 40 --delete 5 --out reports/reliability/deletion.json``

Before deleting, the check captures what an attacker could later look for: the
plaintext, the ciphertext, the wrapped data key, the sparse key and the index
vector of each target. After ``delete`` it searches the raw bytes of the
database, its WAL and shared-memory files, the index files and a backup written
afterwards for each of them (whole, and as 16-byte fragments), and tries every
byte offset of those files as a wrapped data key under every key-encryption key
the key provider holds. The same searches run before the deletion as a control:
they must find what is there. A backup taken before the deletion still holds the
trace; a key rotation afterwards makes it unreadable, which the check shows too.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hei_nw_eval.reliability.faults import (
    EmbedderName,
    db_files,
    event_text,
    load_embedder,
    open_memory,
    raw_bytes,
    write_json,
)
from hei_nw_plugin.errors import TraceNotFoundError
from hei_nw_plugin.index import USearchIndex
from hei_nw_plugin.replay import ReplayScheduler
from hei_nw_plugin.store.crypto import NONCE_BYTES
from hei_nw_plugin.store.keys import LocalKeyFile
from hei_nw_plugin.store.records import aad as _aad

FRAGMENT = 16
WRAPPED_LEN = NONCE_BYTES + 32 + 16  # nonce + AES-256 key + GCM tag
RECALL_K = 10


@dataclass
class Target:
    """What was captured about one trace before it was deleted."""

    trace_id: str
    namespace: str
    seq: int
    text: str
    ciphertext: bytes
    wrapped_key: bytes
    key_blob: bytes
    index_vector: bytes
    aad: bytes


@dataclass
class DeletionReport:
    """``hei-nw reliability deletion`` output: per check, how many deleted traces pass it."""

    embedder: str
    seed: int
    traces_written: int
    deleted: int
    before: dict[str, int]  # controls: how many targets each search finds before the deletion
    after: dict[str, int]  # how many targets each check passes after the deletion (all must)
    failures: list[str]
    unwrap_attempts: int
    unwrap_successes_after: int
    unwrap_successes_before_control: int
    verify_ok_after: bool
    backup_after_verify_ok: bool
    backup_before_holds_deleted: int
    backup_before_unwrappable_after_rotation: int
    files_searched: list[str]
    provenance_keeps: str
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _fragments(blob: bytes) -> list[bytes]:
    return [blob[i:i + FRAGMENT] for i in range(0, len(blob) - FRAGMENT + 1, FRAGMENT)]


def _found(raw: bytes, blob: bytes) -> bool:
    """True when ``blob`` or any of its 16-byte fragments occurs in ``raw``."""
    return blob in raw or any(f in raw for f in _fragments(blob))


def _unwraps(raw: bytes, target: Target, keks: list[bytes]) -> int:
    """How many byte offsets of ``raw`` unwrap to a data key of ``target`` under some KEK."""
    hits = 0
    aad = b"dek|" + target.aad
    ciphers = [AESGCM(k) for k in keks]
    for off in range(len(raw) - WRAPPED_LEN + 1):
        window = raw[off:off + WRAPPED_LEN]
        for c in ciphers:
            try:
                c.decrypt(window[:NONCE_BYTES], window[NONCE_BYTES:], aad)
                hits += 1
            except InvalidTag:
                pass
    return hits


def _keks(key_file: Path) -> list[bytes]:
    keys = LocalKeyFile(key_file)
    return [keys.kek(k) for k in keys.kek_ids()]


def _capture(mem: Any, db: Path, texts: dict[str, tuple[str, str]], ids: list[str]) -> list[Target]:
    out = []
    with sqlite3.connect(db) as c:
        for tid in ids:
            seq, ns, payload, key_blob, created, ext = c.execute(
                "select seq, namespace, payload, key_blob, created_at, ext_key from hei_traces where id=?", (tid,)).fetchone()
            (wrapped,) = c.execute("select wrapped_dek from hei_trace_keys where trace_seq=?", (seq,)).fetchone()
            graph = mem.index.get(ns) or mem._graph(ns)
            vec = graph._index.get(int(seq), dtype=graph._index.dtype)
            out.append(Target(trace_id=tid, namespace=ns, seq=int(seq), text=texts[tid][1], ciphertext=payload,
                              wrapped_key=wrapped, key_blob=key_blob, index_vector=vec.tobytes(),
                              aad=_aad(ns, tid, key_blob, created, ext)))
    return out


def _index_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "index").rglob("*.usearch"))


def _recalled(mem: Any, t: Target) -> bool:
    return t.trace_id in {r.trace.id for r in mem.recall(t.text, RECALL_K, namespace=t.namespace).traces}


def _gettable(mem: Any, t: Target) -> bool:
    try:
        mem.get(t.trace_id, namespace=t.namespace)
        return True
    except TraceNotFoundError:
        return False


def run(*, traces: int = 40, delete: int = 5, seed: int = 0, embedder: EmbedderName = "minilm",
        out: Path | None = None, work_dir: Path | None = None) -> DeletionReport:
    """Write, back up, delete, then look for the deleted traces everywhere; see the module docstring."""
    t0 = time.perf_counter()
    emb = load_embedder(embedder)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="hei-deletion-", dir=work_dir) as tmp:
        root = Path(tmp)
        data = root / "mem"
        db = data / "traces.db"
        mem = open_memory(data, emb)
        texts: dict[str, tuple[str, str]] = {}
        for i in range(traces):
            ns = ("alice", "bob")[i % 2]
            text = event_text(rng, f"Deletion probe {i}")
            tid = mem.write({"text": text, "force": True, "pin": i % 6 == 0, "slots": {"n": str(i)}}, namespace=ns).trace_id
            assert tid is not None
            texts[tid] = (ns, text)
        ids = rng.sample(sorted(texts), delete)
        mem.index.save_all()
        backup_before = mem.backup(root / "backup-before.db")
        targets = _capture(mem, db, texts, ids)

        # Controls: what the searches must find while the traces exist.
        files_before = raw_bytes(db_files(db))
        index_before = raw_bytes(_index_files(data))
        keks = _keks(data / "keys.json")
        before = {
            "recalled": sum(_recalled(mem, t) for t in targets),
            "ciphertext_in_db_files": sum(_found(files_before, t.ciphertext) for t in targets),
            "wrapped_key_in_db_files": sum(_found(files_before, t.wrapped_key) for t in targets),
            "plaintext_in_db_files": sum(t.text.encode() in files_before for t in targets),
            "index_vector_in_index_files": sum(t.index_vector in index_before for t in targets),
            "unwrappable_from_backup": sum(_unwraps(backup_before.read_bytes(), t, keks) > 0 for t in targets),
        }
        unwrap_control = before["unwrappable_from_backup"]

        for t in targets:
            mem.delete(t.trace_id, namespace=t.namespace)
        checks: dict[str, list[bool]] = {}

        def check(name: str, ok: list[bool]) -> None:
            checks.setdefault(name, []).extend(ok)

        check("not_recalled", [not _recalled(mem, t) for t in targets])
        check("get_not_found", [not _gettable(mem, t) for t in targets])
        with sqlite3.connect(db) as c:
            for table, col, key in (("hei_traces", "seq", "seq"), ("hei_trace_keys", "trace_seq", "seq"),
                                    ("hei_replay_queue", "trace_seq", "seq")):
                check(f"no_row_in_{table}", [c.execute(f"select count(*) from {table} where {col}=?",
                                                       (getattr(t, key),)).fetchone()[0] == 0 for t in targets])
        check("not_in_index", [t.seq not in mem._graph(t.namespace)._index for t in targets])
        check("not_in_replay_queue", [t.seq not in {s for s, _, _ in ReplayScheduler(mem).queue(t.namespace)}
                                      for t in targets])
        check("not_in_replay_batch", [t.trace_id not in ReplayScheduler(mem).next_batch(traces, namespace=t.namespace).trace_ids
                                      for t in targets])
        index_now = raw_bytes(_index_files(data))
        check("index_vector_gone_from_index_files_when_delete_returns", [t.index_vector not in index_now for t in targets])
        backup_after = mem.backup(root / "backup-after.db")
        mem.close()

        # The raw files after close, a fresh reopen, and the backup written after the deletion.
        files_after = raw_bytes(db_files(db))
        index_after = raw_bytes(_index_files(data))
        backup_raw = backup_after.read_bytes()
        for name, raw in (("db_files", files_after), ("backup_after", backup_raw)):
            check(f"ciphertext_gone_from_{name}", [not _found(raw, t.ciphertext) for t in targets])
            check(f"wrapped_key_gone_from_{name}", [not _found(raw, t.wrapped_key) for t in targets])
            check(f"key_blob_gone_from_{name}", [t.key_blob not in raw for t in targets])
            check(f"plaintext_not_in_{name}", [t.text.encode() not in raw for t in targets])
        check("index_vector_gone_from_index_files", [t.index_vector not in index_after for t in targets])
        keks = _keks(data / "keys.json")
        unwrap_hits = [_unwraps(files_after + b"\0" * WRAPPED_LEN + backup_raw, t, keks) for t in targets]
        check("no_offset_of_db_files_or_backup_unwraps_its_key", [h == 0 for h in unwrap_hits])
        attempts = len(targets) * (len(files_after) + WRAPPED_LEN + len(backup_raw)) * len(keks)

        mem = open_memory(data, emb)
        check("not_recalled_after_reopen", [not _recalled(mem, t) for t in targets])
        check("get_not_found_after_reopen", [not _gettable(mem, t) for t in targets])
        verify_ok = mem.verify().ok
        for t in targets:
            reloaded = USearchIndex(mem.settings.keyer.dim, mem.settings.index, mem.index.path_for(t.namespace))
            check("not_in_reloaded_index_file", [t.seq not in reloaded._index])
        with sqlite3.connect(db) as c:
            naming = sum(c.execute("select count(*) from hei_provenance where trace_id=?", (t.trace_id,)).fetchone()[0]
                         for t in targets)

        restored = root / "restored"
        restored.mkdir()
        shutil.copy(backup_after, restored / "traces.db")
        shutil.copy(data / "keys.json", restored / "keys.json")
        rmem = open_memory(restored, emb)
        check("get_not_found_in_restored_backup", [not _gettable(rmem, t) for t in targets])
        check("not_recalled_from_restored_backup", [not _recalled(rmem, t) for t in targets])
        backup_verify_ok = rmem.verify().ok
        rmem.close()

        # Older backups: they hold the trace until the KEK that wrapped its data key is retired.
        old_raw = backup_before.read_bytes()
        held = sum(_found(old_raw, t.wrapped_key) for t in targets)
        mem.rotate_keys()
        mem.close()
        keks = _keks(data / "keys.json")
        after_rotation = sum(_unwraps(old_raw, t, keks) > 0 for t in targets)

    after = {k: sum(v) for k, v in checks.items()}
    failures = [f"{k}: {len(v) - sum(v)} of {len(v)} deleted traces fail" for k, v in checks.items() if not all(v)]
    if not verify_ok:
        failures.append("verify() not ok after the deletions")
    if not backup_verify_ok:
        failures.append("verify() not ok on the restored backup")
    report = DeletionReport(
        embedder=embedder, seed=seed, traces_written=traces, deleted=len(targets), before=before, after=after,
        failures=failures, unwrap_attempts=attempts, unwrap_successes_after=sum(unwrap_hits),
        unwrap_successes_before_control=unwrap_control, verify_ok_after=verify_ok, backup_after_verify_ok=backup_verify_ok,
        backup_before_holds_deleted=held, backup_before_unwrappable_after_rotation=after_rotation,
        files_searched=["traces.db", "traces.db-wal", "traces.db-shm", "index/*/*.usearch", "backup written after the deletion"],
        provenance_keeps=(f"{naming} provenance records still name the {len(targets)} deleted traces: each write record "
                          "(trace id, content hash, gate score, source pointer) and its delete record; no payload, "
                          "key or text"),
        seconds=round(time.perf_counter() - t0, 1),
        notes=[("A backup taken before a deletion holds the trace while the key-encryption key that wrapped its data key "
               "exists; rotate_keys() after the deletion retires that key, which makes such older backups unreadable "
               "as a whole (backup_before_unwrappable_after_rotation counts deleted traces still unwrappable then).")],
    )
    if out is not None:
        write_json(report, out)
    return report


def summary(r: DeletionReport) -> str:
    checks = len(r.after)
    passed = sum(v == r.deleted for v in r.after.values())
    return (f"deletion: {r.deleted} of {r.traces_written} traces deleted; {passed}/{checks} checks pass for every one; "
            f"{r.unwrap_attempts} unwrap attempts on the raw files and the later backup, {r.unwrap_successes_after} "
            f"succeeded (control before deletion: {r.unwrap_successes_before_control}/{r.deleted} unwrappable from the "
            f"earlier backup); verify ok={r.verify_ok_after}; older backup unwrappable after a rotation: "
            f"{r.backup_before_unwrappable_after_rotation}/{r.deleted}"
            + ("".join(f"\n  FAIL {f}" for f in r.failures)))


def register(subparsers: Any) -> None:
    """Add ``deletion`` under ``hei-nw reliability``."""
    p = subparsers.add_parser("deletion", help="delete traces, then look for them in recall, store, index, backups and raw files")
    p.add_argument("--traces", type=int, default=40, help="traces written before deleting")
    p.add_argument("--delete", type=int, default=5, help="traces deleted")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embedder", choices=["minilm", "hashing"], default="minilm")
    p.add_argument("--out", type=Path, default=Path("reports/reliability/deletion.json"))
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> None:
    r = run(traces=args.traces, delete=args.delete, seed=args.seed, embedder=args.embedder, out=args.out)
    print(summary(r))
    print(f"written to {args.out}")
    if r.failures:
        raise SystemExit(1)

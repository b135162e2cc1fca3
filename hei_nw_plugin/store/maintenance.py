"""Store maintenance that touches every row: backups, WAL checkpoints, key rotation, and ``verify()``.

A mixin of :class:`~hei_nw_plugin.store.sql.SQLTraceStore`, which provides the engine, the
transaction helpers and the key provider declared below.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from hei_nw_plugin.errors import ConfigError, DecryptionError, StoreUnavailableError
from hei_nw_plugin.store import attest, crypto, faults
from hei_nw_plugin.store.keys import KeyProvider
from hei_nw_plugin.store.records import GENESIS, VerifyProblem, aad
from hei_nw_plugin.store.schema import meta, provenance, trace_keys, traces
from hei_nw_plugin.types import Trace

log = logging.getLogger("hei_nw_plugin.store.sql")


class StoreMaintenance:
    """Backups, checkpoints, rotation and verification over the store's tables."""

    url: str
    is_sqlite: bool
    engine: Engine
    keys: KeyProvider
    _lock: threading.RLock
    _tx: Callable[[], AbstractContextManager[Connection]]
    _read: Callable[[], AbstractContextManager[Connection]]
    _append: Callable[[Connection, str, str, str | None, dict[str, Any]], str]
    _decode: Callable[[Any], Trace]

    def backup(self, path: str | Path) -> Path:
        """Copy a SQLite store to ``path`` (a new file) with SQLite's online backup API; returns the path.

        The copy is one consistent snapshot, taken while writers keep running. It
        holds ciphertexts and wrapped data keys, never the key-encryption keys: the
        key provider is needed to read it. A trace deleted before the backup has no
        data key in it (``secure_delete`` zeroes freed space, and the copy is made
        from the pages as they are now).
        """
        if not self.is_sqlite:
            raise ConfigError("backup() copies SQLite stores; back up PostgreSQL with pg_dump")
        dest = Path(path)
        if dest.exists():
            raise ConfigError(f"{dest} exists; a backup never overwrites a file")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock, self.engine.connect() as conn:
                src: Any = conn.connection.driver_connection
                dst = sqlite3.connect(dest)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
        except (SQLAlchemyError, sqlite3.Error) as err:
            dest.unlink(missing_ok=True)
            raise StoreUnavailableError(f"backup to {dest} failed: {err}") from err
        return dest

    def _checkpoint(self) -> None:
        """Fold the WAL into the database so shredded keys leave no copy in the log file.

        Advisory: the delete has committed by now, so a failure (a full disk, a reader in another
        process holding an old snapshot) is logged and the next checkpoint catches up.
        """
        try:
            with self.engine.connect() as conn:
                raw: Any = conn.connection.driver_connection  # autocommit DBAPI connection: no BEGIN around the pragma
                busy = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except (SQLAlchemyError, sqlite3.Error) as err:
            log.warning("WAL checkpoint failed (%s); deleted data keys stay in %s-wal until the next one", err, self.url)
            return
        if busy:
            log.warning("WAL checkpoint blocked by a reader; deleted data keys stay in %s-wal until the next one", self.url)

    def rotate(self) -> tuple[str, int]:
        """New current KEK, every DEK re-wrapped in one transaction, old KEKs retired; returns (kek_id, rewrapped).

        The KEKs a rotation moves this store's rows off are named in its signed
        ``rotate`` record, and every rotation retires what earlier records named and
        no row uses: a rotation killed between its commit and its retirements would
        otherwise leave the old KEK in the key provider for good. KEKs this store
        never used are left alone, since another store may share the key provider.
        """
        new_id = self.keys.new_kek()
        n = self._rewrap(new_id)
        for kid in self._retirable(new_id):
            self.keys.retire_kek(kid)
        return new_id, n

    @faults.retrying
    def _rewrap(self, new_id: str) -> int:
        new_kek = self.keys.kek(new_id)
        n = 0
        with self._tx() as conn:
            rows = conn.execute(select(
                trace_keys.c.trace_seq, trace_keys.c.kek_id, trace_keys.c.wrapped_dek, traces.c.namespace, traces.c.id,
                traces.c.key_blob, traces.c.created_at, traces.c.ext_key,
            ).join(traces, traces.c.seq == trace_keys.c.trace_seq)).all()
            for r in rows:
                bound = aad(r.namespace, r.id, r.key_blob, r.created_at, r.ext_key)
                dek = crypto.unwrap(r.wrapped_dek, bound, self.keys.kek(r.kek_id))
                conn.execute(update(trace_keys).where(trace_keys.c.trace_seq == r.trace_seq).values(
                    kek_id=new_id, wrapped_dek=crypto.wrap(dek, bound, new_kek)))
                n += 1
            retires = sorted({r.kek_id for r in rows} - {new_id})
            self._append(conn, "", "rotate", None, {"kek_id": new_id, "rewrapped": n, "retires": retires})
        return n

    @faults.retrying
    def _retirable(self, new_id: str) -> set[str]:
        """KEKs a rotate record named that no row uses any more (and that the key provider still holds)."""
        with self._read() as conn:
            used = set(conn.execute(select(trace_keys.c.kek_id).distinct()).scalars().all())
            named: set[str] = set()
            for (text,) in conn.execute(select(provenance.c.record).where(provenance.c.event == "rotate")).all():
                try:
                    named.update(json.loads(text).get("retires", []))
                except (ValueError, AttributeError, TypeError):
                    continue  # a damaged record retires nothing; verify() names it
        return (named & set(self.keys.kek_ids())) - used - {new_id}

    @faults.retrying
    def verify(self, *, namespace: str | None = None, deep: bool = True) -> tuple[int, list[VerifyProblem]]:
        """Walk the provenance chain and the live rows; returns (records checked, problems).

        Each problem names the provenance record (seq) or trace it is about; the
        checks themselves are :mod:`hei_nw_plugin.store.attest`'s. ``deep`` also
        decrypts every live row.
        """
        problems: list[VerifyProblem] = []
        with self._read() as conn:
            records = conn.execute(select(provenance).order_by(provenance.c.seq)).all()
            head = conn.execute(select(meta.c.value).where(meta.c.name == "chain_head")).scalar()
            live = conn.execute(select(traces, trace_keys.c.kek_id, trace_keys.c.wrapped_dek).join(
                trace_keys, trace_keys.c.trace_seq == traces.c.seq, isouter=True)).all()
        prev = GENESIS
        histories: dict[str, attest.TraceHistory] = {}
        for p in records:
            record, found = attest.record_problems(p, self.keys, prev)
            problems += [VerifyProblem(kind, detail, p.seq, p.trace_id) for kind, detail in found]
            tid = record.get("trace_id") if record is not None else None
            if tid:
                histories.setdefault(tid, attest.TraceHistory()).apply(record, int(p.seq))  # type: ignore[arg-type]
            prev = p.record_hash
        if head != prev:
            problems.append(VerifyProblem("head_mismatch", "chain head does not match the last record (log truncated?)"))
        live_ids = set()
        for r in live:
            if namespace is not None and r.namespace != namespace:
                continue
            live_ids.add(r.id)
            found = attest.row_problems(r, histories.get(r.id))
            problems += [VerifyProblem(kind, detail, trace_id=r.id) for kind, detail in found]
            if deep and not found:
                try:
                    self._decode(r)
                except DecryptionError as err:
                    problems.append(VerifyProblem("tampered_row", str(err), trace_id=r.id))
        for tid, h in histories.items():
            if h.write is None or (namespace is not None and h.write.get("ns") != namespace):
                continue
            if not h.deleted and tid not in live_ids:
                problems.append(VerifyProblem("missing_row", "trace was written, never deleted, and is gone", h.write_seq, tid))
        return len(records), problems

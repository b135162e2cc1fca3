"""The trace store on SQLAlchemy 2: SQLite by default, PostgreSQL by URL.

Every mutation runs in one transaction that also appends its signed
provenance record and moves the chain head, so a crash leaves either the whole
change or none of it. SQLite runs in WAL mode with ``synchronous=FULL`` and
``secure_delete=ON`` (deleted data keys are overwritten, not left in free
pages) and takes the write lock at BEGIN so concurrent processes serialise.
On PostgreSQL the chain head row is locked ``FOR UPDATE``. The row format is in
:mod:`.records`; backups, rotation and ``verify()`` in :mod:`.maintenance`.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, create_engine, delete, event, func, insert, inspect, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from hei_nw_plugin.errors import (
    CommitUnknownError,
    DecryptionError,
    IntegrityError,
    StoreUnavailableError,
    TraceNotFoundError,
)
from hei_nw_plugin.keyer import unpack_sparse
from hei_nw_plugin.store import attest, crypto, faults
from hei_nw_plugin.store.keys import KeyProvider
from hei_nw_plugin.store.maintenance import StoreMaintenance
from hei_nw_plugin.store.records import GENESIS, NewTrace, StoredRef, aad, alive, seal_row, trace_values, write_record
from hei_nw_plugin.store.schema import COLUMNS_ADDED, meta, metadata, provenance, replay_queue, trace_keys, traces
from hei_nw_plugin.types import SourcePointer, Trace

log = logging.getLogger(__name__)

_ATTEST_CHUNK = 4096
"""Rows per provenance lookup when reads check rows against their records."""
_HEAD = "hei_chain_head"
"""Connection.info key: the provenance chain head moved inside the current transaction."""


class SQLTraceStore(StoreMaintenance):
    """SQLAlchemy implementation of the trace store."""

    def __init__(self, url: str, keys: KeyProvider, *, pool_size: int = 5, reconnect_s: float = 15.0,
                 connect_timeout_s: int = 5) -> None:
        self.url = url
        self.keys = keys
        self.is_sqlite = url.startswith("sqlite")
        self.reconnect_s = reconnect_s
        self.where = faults.describe(url)
        self._lock = threading.RLock()
        self._signatures = attest.SignatureCache()
        self._attested = attest.AttestedRows()
        try:
            if self.is_sqlite:
                path = url.split("///", 1)[-1]
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.engine: Engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
                _sqlite_pragmas(self.engine)
            else:
                # connect_timeout bounds one attempt to a host that drops packets; a URL's own value wins.
                args = {} if "connect_timeout" in make_url(url).query else {"connect_timeout": connect_timeout_s}
                self.engine = create_engine(url, pool_size=pool_size, pool_pre_ping=True, connect_args=args)
        except (SQLAlchemyError, ImportError, OSError, ValueError) as err:  # also: no driver, no folder, NUL in the path
            raise StoreUnavailableError(f"trace store at {_redact_url(url)} is unavailable: {err.__class__.__name__}: {err}") from err
        self._create_schema()

    @faults.retrying
    def _create_schema(self) -> None:
        try:
            metadata.create_all(self.engine)
        except DBAPIError as err:
            raise faults.store_error(err, self.where, "connect") from err
        except (SQLAlchemyError, OSError, ValueError) as err:  # ValueError: sqlite3 refuses a NUL in the path
            raise StoreUnavailableError(f"trace store at {_redact_url(self.url)} is unavailable: {err.__class__.__name__}: {err}") from err
        with self._tx() as conn:
            for table, column, ddl in COLUMNS_ADDED:  # a store written before the column existed
                if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
                    conn.execute(sql_text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
            if conn.execute(select(meta.c.value).where(meta.c.name == "chain_head")).first() is None:
                conn.execute(insert(meta).values(name="chain_head", value=GENESIS))

    # ----------------------------------------------------------------- plumbing
    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One write transaction; database failures become :mod:`.faults`' errors, a full disk DiskFullError.

        On PostgreSQL the chain head row is locked first, so writers run one after another and
        each sees the rows the one before it committed (a keyed write then finds the version it
        replaces; without the lock two writers of one key deadlocked or broke the unique key).
        """
        with self._lock:
            try:
                conn = self.engine.connect()
            except DBAPIError as err:
                raise faults.store_error(err, self.where, "connect") from err
            try:
                trans = conn.begin()
                try:
                    if not self.is_sqlite:
                        conn.execute(select(meta.c.value).where(meta.c.name == "chain_head").with_for_update())
                    conn.info.pop(_HEAD, None)  # a rolled-back transaction may have left one behind
                    yield conn
                    head = conn.info.pop(_HEAD, None)
                    if head is not None:  # the chain moved: one head update per transaction, not per record
                        conn.execute(update(meta).where(meta.c.name == "chain_head").values(value=head))
                except BaseException as err:
                    _rollback_quietly(trans)
                    if isinstance(err, DBAPIError):
                        raise faults.store_error(err, self.where, "transaction") from err
                    raise
                try:
                    trans.commit()
                except DBAPIError as err:
                    raise faults.store_error(err, self.where, "commit") from err
            except DBAPIError as err:  # BEGIN itself failed (SQLite: the write lock stayed busy past its timeout)
                raise faults.store_error(err, self.where, "transaction") from err
            finally:
                conn.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            # One snapshot per read, so a row and its provenance records are seen at the same moment
            # (SQLite: the deferred BEGIN; PostgreSQL: repeatable read instead of read committed).
            opts: dict[str, Any] = {"hei_read": True} if self.is_sqlite else {"isolation_level": "REPEATABLE READ"}
            with self.engine.connect().execution_options(**opts) as conn:
                yield conn
        except DBAPIError as err:
            raise faults.store_error(err, self.where, "read") from err

    def close(self) -> None:
        self.engine.dispose()

    def _append(self, conn: Connection, namespace: str, event_name: str, trace_id: str | None, body: dict[str, Any]) -> str:
        """Append one signed provenance record and move the chain head (inside ``conn``'s transaction)."""
        return self._append_many(conn, [(namespace, event_name, trace_id, body)])

    def _append_many(self, conn: Connection, entries: Sequence[tuple[str, str, str | None, dict[str, Any]]]) -> str:
        """Append signed provenance records in order, chained, in one statement; returns the new head."""
        prev = conn.info.get(_HEAD)
        if prev is None:
            head_q = select(meta.c.value).where(meta.c.name == "chain_head")
            if not self.is_sqlite:
                head_q = head_q.with_for_update()  # held to commit: writers append one after another
            prev = conn.execute(head_q).scalar_one()
        signer_id, sk = self.keys.signer()
        params = []
        for namespace, event_name, trace_id, body in entries:
            record = {"v": 1, "event": event_name, "ns": namespace, "trace_id": trace_id, "at": time.time(), "prev": prev,
                      "signer": signer_id, **body}
            raw = crypto.canonical(record)
            rhash = crypto.sha256_hex(raw)
            params.append({"namespace": namespace, "event": event_name, "trace_id": trace_id, "record": raw.decode("ascii"),
                           "record_hash": rhash, "prev_hash": prev, "signer_id": signer_id,
                           "signature": sk.sign(bytes.fromhex(rhash))})
            prev = rhash
        conn.execute(insert(provenance), params)
        conn.info[_HEAD] = prev  # written to meta when the transaction ends (see _tx)
        return prev

    # ------------------------------------------------------------------- writes
    def insert(self, rows: Sequence[NewTrace], *, priority: Sequence[float] | None = None) -> list[StoredRef]:
        """Store traces; a row whose ``ext_key`` exists replaces the old trace (logged as a delete).

        A batch without caller keys goes in as one multi-row statement per table (bulk import speed);
        a batch with keys goes row by row, since each keyed row may replace one stored or written just before.
        When the connection drops while the COMMIT is in flight, the batch's signed write records are
        looked up once the store answers again: found, it committed (the replaced seqs are then not
        known; the index drops them when it next reconciles); not found, it is written again.
        """
        if not rows:
            return []
        try:
            return self._insert_tx(rows, priority)
        except CommitUnknownError as err:
            written = self._written_seqs([r.id for r in rows])
            if len(written) == len(rows):
                log.warning("insert: %s; the batch's %d write records are stored, so it committed", err, len(rows))
                return [StoredRef(seq=written[r.id], id=r.id) for r in rows]
            if written:  # one transaction commits all of it or none: a partial batch is a store defect
                raise IntegrityError(f"insert: {len(written)} of {len(rows)} write records stored after a lost COMMIT; "
                                     "run verify()") from err
            log.warning("insert: %s; none of the batch is stored, writing it again", err)
            return self._insert_tx(rows, priority)

    @faults.retrying
    def _insert_tx(self, rows: Sequence[NewTrace], priority: Sequence[float] | None) -> list[StoredRef]:
        written: list[dict[str, Any]] = []  # column values of the rows written, attested once the commit is through
        refs = self._insert_rows(rows, priority, written)
        for values in written:  # this process sealed and signed these very bytes: later reads need not verify them
            self._attested.add(SimpleNamespace(**values))
        return refs

    def _insert_rows(self, rows: Sequence[NewTrace], priority: Sequence[float] | None,
                     written: list[dict[str, Any]]) -> list[StoredRef]:
        with self._tx() as conn:
            # Read the current key inside the write lock: a rotation by another process sharing the key
            # file has then either re-wrapped this batch's keys already or will wait for its commit.
            self.keys.refresh()
            kek_id = self.keys.current_kek_id()
            kek = self.keys.kek(kek_id)
            if any(r.ext_key is not None for r in rows):
                return [self._insert_one(conn, row, kek_id, kek, priority[i] if priority is not None else row.gate_score,
                                         written) for i, row in enumerate(rows)]
            sealed = [seal_row(row, kek) for row in rows]
            values = [trace_values(row, blob) for row, (blob, _w) in zip(rows, sealed, strict=True)]
            seqs = [int(r.seq) for r in conn.execute(
                insert(traces).returning(traces.c.seq, sort_by_parameter_order=True), values)]
            written.extend({**v, "seq": seq} for v, seq in zip(values, seqs, strict=True))
            conn.execute(insert(trace_keys), [{"trace_seq": seq, "kek_id": kek_id, "wrapped_dek": w}
                                              for seq, (_b, w) in zip(seqs, sealed, strict=True)])
            queued = [{"trace_seq": seq, "namespace": row.namespace, "enqueued_at": row.created_at,
                       "priority": priority[i] if priority is not None else row.gate_score, "replay_count": 0}
                      for i, (seq, row) in enumerate(zip(seqs, rows, strict=True)) if not row.cold]  # cold: never consolidated
            if queued:
                conn.execute(insert(replay_queue), queued)
            self._append_many(conn, [(row.namespace, "write", row.id, write_record(row, blob, seq))
                                     for row, (blob, _w), seq in zip(rows, sealed, seqs, strict=True)])
        return [StoredRef(seq=seq, id=row.id) for seq, row in zip(seqs, rows, strict=True)]

    @faults.retrying
    def _written_seqs(self, trace_ids: Sequence[str]) -> dict[str, int]:
        """Trace id -> seq, from the signed write records of those of ``trace_ids`` that were ever stored."""
        with self._read() as conn:
            recs = conn.execute(select(provenance.c.trace_id, provenance.c.record).where(
                provenance.c.event == "write", provenance.c.trace_id.in_(list(trace_ids)))).all()
        return {tid: int(json.loads(text)["seq"]) for tid, text in recs}

    def _insert_one(self, conn: Connection, row: NewTrace, kek_id: str, kek: bytes, priority: float,
                    written: list[dict[str, Any]]) -> StoredRef:
        replaced = None
        if row.ext_key is not None:
            old = conn.execute(select(traces.c.seq, traces.c.id).where(
                traces.c.namespace == row.namespace, traces.c.ext_key == row.ext_key)).first()
            if old is not None:
                self._delete_rows(conn, row.namespace, [(old.seq, old.id)], reason="replaced")
                replaced = int(old.seq)
        blob, wrapped = seal_row(row, kek)
        values = trace_values(row, blob)
        seq = int(conn.execute(insert(traces).values(**values).returning(traces.c.seq)).scalar_one())
        written.append({**values, "seq": seq})
        conn.execute(insert(trace_keys).values(trace_seq=seq, kek_id=kek_id, wrapped_dek=wrapped))
        if not row.cold:  # a cold trace is never consolidated
            conn.execute(insert(replay_queue).values(
                trace_seq=seq, namespace=row.namespace, enqueued_at=row.created_at, priority=priority, replay_count=0))
        self._append(conn, row.namespace, "write", row.id, write_record(row, blob, seq))
        return StoredRef(seq=seq, id=row.id, replaced_seq=replaced)

    def _delete_rows(self, conn: Connection, namespace: str, rows: Iterable[tuple[int, str]], *, reason: str) -> None:
        for seq, tid in rows:
            # Data key first: once it is gone the ciphertext is noise, whatever else survives.
            conn.execute(delete(trace_keys).where(trace_keys.c.trace_seq == seq))
            conn.execute(delete(replay_queue).where(replay_queue.c.trace_seq == seq))
            if conn.execute(delete(traces).where(traces.c.seq == seq)).rowcount:
                # Another process may have deleted it since the caller chose it (two evictions at once).
                self._append(conn, namespace, "delete", tid, {"reason": reason})

    @faults.retrying
    def delete(self, namespace: str, trace_id: str, *, reason: str = "delete") -> int:
        """Delete one trace (payload shredded); returns its seq. Raises TraceNotFoundError."""
        with self._tx() as conn:
            row = conn.execute(select(traces.c.seq).where(traces.c.namespace == namespace, traces.c.id == trace_id)).first()
            if row is None:
                raise TraceNotFoundError(f"no trace {trace_id!r} in namespace {namespace!r}")
            self._delete_rows(conn, namespace, [(int(row.seq), trace_id)], reason=reason)
        if self.is_sqlite:
            self._checkpoint()
        return int(row.seq)

    @faults.retrying
    def delete_many(self, namespace: str, rows: Sequence[tuple[int, str]], *, reason: str) -> None:
        if not rows:
            return
        with self._tx() as conn:
            self._delete_rows(conn, namespace, sorted(rows), reason=reason)
        if self.is_sqlite:
            self._checkpoint()

    @faults.retrying
    def set_pinned(self, namespace: str, trace_id: str, pinned: bool) -> int:
        with self._tx() as conn:
            row = conn.execute(select(traces.c.seq).where(traces.c.namespace == namespace, traces.c.id == trace_id)).first()
            if row is None:
                raise TraceNotFoundError(f"no trace {trace_id!r} in namespace {namespace!r}")
            conn.execute(update(traces).where(traces.c.seq == row.seq).values(pinned=pinned))
            self._append(conn, namespace, "pin" if pinned else "unpin", trace_id, {})
            return int(row.seq)

    @faults.retrying
    def set_expiry(self, namespace: str, trace_id: str, expires_at: float | None) -> None:
        """Move (or clear, with None) a trace's expiry; logged as an 'expiry' event."""
        with self._tx() as conn:
            row = conn.execute(select(traces.c.seq).where(traces.c.namespace == namespace, traces.c.id == trace_id)).first()
            if row is None:
                raise TraceNotFoundError(f"no trace {trace_id!r} in namespace {namespace!r}")
            conn.execute(update(traces).where(traces.c.seq == row.seq).values(expires_at=expires_at))
            self._append(conn, namespace, "expiry", trace_id, {"expires_at": repr(expires_at)})

    @faults.retrying
    def log_event(self, namespace: str, event_name: str, body: dict[str, Any]) -> str:
        """Append a non-trace provenance event (key rotation, consolidation lineage, …)."""
        with self._tx() as conn:
            return self._append(conn, namespace, event_name, None, body)

    @faults.retrying
    def touch(self, counts: dict[int, tuple[int, float]]) -> None:
        """Add recall counts: {seq: (count, last_recalled_at)}."""
        if not counts:
            return
        with self._tx() as conn:
            for seq, (n, at) in counts.items():
                conn.execute(update(traces).where(traces.c.seq == seq).values(
                    recall_count=traces.c.recall_count + n, last_recalled_at=at))

    # -------------------------------------------------------------------- reads
    @faults.retrying
    def namespaces(self, *, include_empty: bool = False) -> list[str]:
        """Namespaces with live traces (or every namespace ever written, with ``include_empty``)."""
        if include_empty:
            q = select(provenance.c.namespace).where(provenance.c.event == "write").distinct()
        else:
            q = select(traces.c.namespace).distinct()
        with self._read() as conn:
            return sorted(conn.execute(q).scalars().all())

    @faults.retrying
    def head(self) -> str:
        """The provenance chain head: it moves with every mutation, by any process sharing the store."""
        with self._read() as conn:
            return str(conn.execute(select(meta.c.value).where(meta.c.name == "chain_head")).scalar_one())

    @faults.retrying
    def has_namespace(self, namespace: str) -> bool:
        with self._read() as conn:
            return conn.execute(select(provenance.c.seq).where(provenance.c.namespace == namespace).limit(1)).first() is not None

    @faults.retrying
    def seqs(self, namespace: str) -> np.ndarray:
        with self._read() as conn:
            ids = conn.execute(select(traces.c.seq).where(traces.c.namespace == namespace)).scalars().all()
        return np.asarray(ids, dtype=np.uint64)

    def count(self, namespace: str | None = None) -> int:
        """Live and expired-but-not-evicted traces (of ``namespace``, or all)."""
        return self._count(traces, namespace)

    @faults.retrying
    def _count(self, table: Any, namespace: str | None) -> int:
        q = select(func.count()).select_from(table)
        if namespace is not None:
            q = q.where(table.c.namespace == namespace)
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    @faults.retrying
    def key_vectors(self, seqs: list[int]) -> np.ndarray:
        """Dense keys for ``seqs`` in the given order; a zero row for a seq that is gone or whose key is malformed.

        A seq can be gone because another process deleted it after the caller listed the store's seqs.
        """
        with self._read() as conn:
            rows = dict(conn.execute(select(traces.c.seq, traces.c.key_blob).where(traces.c.seq.in_(seqs))).all())
        vecs: list[np.ndarray | None] = []
        for s in seqs:
            try:
                vecs.append(unpack_sparse(rows[s]) if s in rows else None)
            except ValueError:  # a tampered key: the index leaves zero rows out (verify() names the trace)
                vecs.append(None)
        width = next((v.shape[0] for v in vecs if v is not None), 0)
        return np.stack([v if v is not None and v.shape[0] == width else np.zeros(width, np.float32) for v in vecs]) \
            if seqs else np.zeros((0, 0), np.float32)

    @faults.retrying
    def fetch(self, namespace: str, seqs: Sequence[int], *, attest: bool = True,
              ) -> tuple[dict[int, Trace], dict[int, np.ndarray], list[str]]:
        """Decrypt traces of ``namespace`` by seq; returns (traces, dense features, errors).

        Rows that fail decryption, or (with ``attest``) do not match their signed
        provenance, are skipped and named in ``errors``. ``attest=False`` is for
        ranking features only, never for traces handed to a caller.
        """
        if not seqs:
            return {}, {}, []
        q = select(traces, trace_keys.c.kek_id, trace_keys.c.wrapped_dek).join(
            trace_keys, trace_keys.c.trace_seq == traces.c.seq, isouter=True,
        ).where(traces.c.seq.in_(list(seqs)), traces.c.namespace == namespace, alive())
        with self._read() as conn:
            rows = conn.execute(q).all()
            refused = self._attest(conn, rows) if attest else {}
        out: dict[int, Trace] = {}
        keys: dict[int, np.ndarray] = {}
        errors = [f"{tid}: {why}" for tid, why in refused.items()]
        for r in rows:
            if r.id in refused:
                continue
            try:
                trace, feats = self._decode_with_features(r)
                out[int(r.seq)] = trace
                keys[int(r.seq)] = feats if feats is not None else unpack_sparse(r.key_blob)
            except DecryptionError as err:
                errors.append(f"{r.id}: {err}")
        if errors:
            log.warning("skipped %d trace(s) that fail integrity checks (run verify()): %s", len(errors), "; ".join(errors[:5]))
        return out, keys, errors

    def _attest(self, conn: Connection, rows: Sequence[Any]) -> dict[str, str]:
        """Trace id -> why its row or a provenance record fails (:mod:`.attest`); a row version seen ok is not rechecked."""
        todo = [r for r in rows if not self._attested.seen(r)]
        refused: dict[str, str] = {}
        for start in range(0, len(todo), _ATTEST_CHUNK):  # bounded IN lists (SQLite allows 32766 parameters)
            refused |= self._attest_chunk(conn, todo[start:start + _ATTEST_CHUNK])
        for r in todo:
            if r.id not in refused:
                self._attested.add(r)
        return refused

    def _attest_chunk(self, conn: Connection, rows: Sequence[Any]) -> dict[str, str]:
        recs = conn.execute(select(provenance).where(provenance.c.trace_id.in_([r.id for r in rows]))
                            .order_by(provenance.c.seq)).all()
        prevs = attest.predecessors(conn, [int(p.seq) for p in recs], _ATTEST_CHUNK)
        refused: dict[str, str] = {}
        histories: dict[str, attest.TraceHistory] = {}
        for p in recs:
            record, problems = attest.record_problems(p, self.keys, prevs[int(p.seq)], self._signatures)
            if problems:
                refused.setdefault(p.trace_id, f"provenance record {p.seq}: {problems[0][1]}")
            elif record is not None:
                histories.setdefault(p.trace_id, attest.TraceHistory()).apply(record, int(p.seq))
        for r in rows:
            if r.id not in refused and (problems := attest.row_problems(r, histories.get(r.id))):
                refused[r.id] = problems[0][1]
        return refused

    def _decode(self, r: Any) -> Trace:
        return self._decode_with_features(r)[0]

    def _decode_with_features(self, r: Any) -> tuple[Trace, np.ndarray | None]:
        if r.wrapped_dek is None:
            raise DecryptionError("data key missing")
        bound = aad(r.namespace, r.id, r.key_blob, r.created_at, r.ext_key)
        payload = json.loads(crypto.open_sealed(r.payload, r.wrapped_dek, bound, self.keys.kek(r.kek_id)))
        raw_f = base64.b64decode(payload["f"]) if payload.get("f") else b""
        feats = np.frombuffer(raw_f, dtype=np.float16).astype(np.float32) if raw_f else None
        return Trace(
            id=r.id, namespace=r.namespace, key=r.ext_key, text=payload["text"], slots=payload["slots"],
            metadata=payload.get("metadata", {}), source=SourcePointer(**payload.get("source", {})),
            created_at=datetime.fromtimestamp(r.created_at, UTC), pinned=bool(r.pinned), gate_score=float(r.gate_score),
            recall_count=int(r.recall_count or 0),
            expires_at=datetime.fromtimestamp(r.expires_at, UTC) if r.expires_at is not None else None,
            tier="cold" if getattr(r, "tier", 0) else "salient",
        ), feats

    @faults.retrying
    def _one(self, namespace: str, cond: Any) -> Trace | None:
        q = select(traces, trace_keys.c.kek_id, trace_keys.c.wrapped_dek).join(
            trace_keys, trace_keys.c.trace_seq == traces.c.seq, isouter=True).where(traces.c.namespace == namespace, cond, alive())
        with self._read() as conn:
            r = conn.execute(q).first()
            if r is None:
                return None
            trace = self._decode(r)  # first: a wrong key file is a DecryptionError, not a provenance problem
            refused = self._attest(conn, [r])
        if r.id in refused:
            raise IntegrityError(f"trace {r.id!r} does not match its signed provenance ({refused[r.id]}); run verify()")
        return trace

    def get(self, namespace: str, trace_id: str) -> Trace:
        t = self._one(namespace, traces.c.id == trace_id)
        if t is None:
            raise TraceNotFoundError(f"no trace {trace_id!r} in namespace {namespace!r}")
        return t

    @faults.retrying
    def seq_of(self, namespace: str, trace_id: str) -> int | None:
        with self._read() as conn:
            return conn.execute(select(traces.c.seq).where(traces.c.namespace == namespace, traces.c.id == trace_id)).scalar()

    @faults.retrying
    def existing_keys(self, namespace: str, ext_keys: Sequence[str]) -> set[str]:
        """Which of ``ext_keys`` are live in ``namespace``."""
        if not ext_keys:
            return set()
        with self._read() as conn:
            return set(conn.execute(select(traces.c.ext_key).where(
                traces.c.namespace == namespace, traces.c.ext_key.in_(list(set(ext_keys))))).scalars().all())

    def get_by_key(self, namespace: str, ext_key: str) -> Trace | None:
        return self._one(namespace, traces.c.ext_key == ext_key)

    @faults.retrying
    def list_traces(self, namespace: str, *, limit: int, offset: int) -> list[Trace]:
        q = select(traces, trace_keys.c.kek_id, trace_keys.c.wrapped_dek).join(
            trace_keys, trace_keys.c.trace_seq == traces.c.seq, isouter=True,
        ).where(traces.c.namespace == namespace, alive()).order_by(traces.c.seq).limit(limit).offset(offset)
        with self._read() as conn:
            rows = conn.execute(q).all()
            refused = self._attest(conn, rows)
        out = []
        for r in rows:
            try:
                if r.id not in refused:
                    out.append(self._decode(r))
            except DecryptionError:
                continue
        if refused:
            log.warning("list skipped %d trace(s) that fail integrity checks (run verify())", len(refused))
        return out

    @faults.retrying
    def expired(self, namespace: str, now: float) -> list[tuple[int, str]]:
        with self._read() as conn:
            return [(int(r.seq), r.id) for r in conn.execute(select(traces.c.seq, traces.c.id).where(
                traces.c.namespace == namespace, traces.c.pinned.is_(False), traces.c.expires_at.is_not(None),
                traces.c.expires_at <= now)).all()]

    @faults.retrying
    def retention_rows(self, namespace: str) -> list[Any]:
        with self._read() as conn:
            return list(conn.execute(select(traces.c.seq, traces.c.id, traces.c.created_at, traces.c.gate_score,
                                            traces.c.recall_count, traces.c.last_recalled_at, traces.c.tier).where(
                traces.c.namespace == namespace, traces.c.pinned.is_(False))).all())

    @faults.retrying
    def replay_rows(self, namespace: str | None = None) -> list[Any]:
        q = select(replay_queue)
        if namespace is not None:
            q = q.where(replay_queue.c.namespace == namespace)
        with self._read() as conn:
            return list(conn.execute(q.order_by(replay_queue.c.trace_seq)).all())

    def replay_count(self, namespace: str | None = None) -> int:
        """Traces in the replay queue (of ``namespace``, or all)."""
        return self._count(replay_queue, namespace)

    @faults.retrying
    def mark_replayed(self, seqs: Sequence[int]) -> None:
        """Add one to the replay count of each queued trace in ``seqs`` (deleted ones are ignored)."""
        if not seqs:
            return
        with self._tx() as conn:
            conn.execute(update(replay_queue).where(replay_queue.c.trace_seq.in_(list(seqs))).values(
                replay_count=replay_queue.c.replay_count + 1))

def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA secure_delete=ON")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front (no deadlocking lock upgrades); readers don't block them.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("hei_read") else "BEGIN IMMEDIATE")


def _rollback_quietly(trans: Any) -> None:
    """Roll back after a failure; on a dead connection the rollback fails too, and the first error is the one to tell."""
    try:
        if trans.is_active:
            trans.rollback()
    except SQLAlchemyError:
        log.debug("rollback after a failed transaction failed as well", exc_info=True)


def _redact_url(url: str) -> str:
    """Hide a password in a database URL for error messages and logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url

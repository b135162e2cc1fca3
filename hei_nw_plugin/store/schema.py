"""SQLAlchemy 2 tables of the trace store.

Traces are pointer-only: the sparse key, a ciphertext of {redacted span,
slots, metadata, source pointer} and bookkeeping columns (the tier among them).
:data:`COLUMNS_ADDED` lists columns added after the first release; opening an
older store adds them. The wrapped data key
lives in its own table so that deleting it shreds the payload. Provenance is
an append-only, hash-chained, signed log; ``hei_meta`` holds the chain head so
that truncating the log's tail is detected too.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

_Seq = BigInteger().with_variant(Integer, "sqlite")

traces = Table(
    "hei_traces", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("namespace", String(256), nullable=False),
    Column("ext_key", String(512), nullable=True),
    Column("key_blob", LargeBinary, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("pinned", Boolean, nullable=False, default=False),
    Column("gate_score", Float, nullable=False),
    Column("recall_count", Integer, nullable=False, default=0),
    Column("last_recalled_at", Float, nullable=True),
    # 0 salient, 1 cold (a below-threshold event kept by gate.cold_writes): ranks lower, evicted first.
    Column("tier", SmallInteger, nullable=False, default=0, server_default="0"),
    UniqueConstraint("namespace", "ext_key", name="uq_hei_traces_ns_key"),
    Index("ix_hei_traces_ns_seq", "namespace", "seq"),
    sqlite_autoincrement=True,  # never reuse a deleted seq: the index keys traces by seq
)

trace_keys = Table(
    "hei_trace_keys", metadata,
    Column("trace_seq", _Seq, ForeignKey("hei_traces.seq", ondelete="CASCADE"), primary_key=True),
    Column("kek_id", String(64), nullable=False),
    Column("wrapped_dek", LargeBinary, nullable=False),
)

provenance = Table(
    "hei_provenance", metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("namespace", String(256), nullable=False),
    Column("event", String(32), nullable=False),
    Column("trace_id", String(40), nullable=True),
    Column("record", Text, nullable=False),
    Column("record_hash", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("signer_id", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Index("ix_hei_provenance_trace", "trace_id"),
    sqlite_autoincrement=True,
)

replay_queue = Table(
    "hei_replay_queue", metadata,
    Column("trace_seq", _Seq, ForeignKey("hei_traces.seq", ondelete="CASCADE"), primary_key=True),
    Column("namespace", String(256), nullable=False),
    Column("enqueued_at", Float, nullable=False),
    Column("priority", Float, nullable=False),
    Column("replay_count", Integer, nullable=False, default=0),
)

meta = Table(
    "hei_meta", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

COLUMNS_ADDED: tuple[tuple[str, str, str], ...] = (
    ("hei_traces", "tier", "SMALLINT NOT NULL DEFAULT 0"),
)
"""(table, column, SQL type and default) of columns newer than the first schema: ALTERed into an older store on open."""

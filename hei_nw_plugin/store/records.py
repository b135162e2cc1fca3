"""What a trace row holds, on the way in: the plaintext record, its sealed payload, its signed write record.

Kept apart from :mod:`hei_nw_plugin.store.sql` (transactions, reads, writes) so the row format
is defined once: the additional data that binds a ciphertext to its row, the columns an insert
writes and the fields the provenance record signs.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_

from hei_nw_plugin.store import crypto
from hei_nw_plugin.store.schema import traces
from hei_nw_plugin.types import SourcePointer

GENESIS = "0" * 64
"""The provenance chain's head before its first record."""


@dataclass
class NewTrace:
    """A trace about to be stored (plaintext side)."""

    namespace: str
    text: str
    slots: dict[str, Any]
    metadata: dict[str, Any]
    source: SourcePointer
    key_blob: bytes
    created_at: float
    expires_at: float | None
    pinned: bool
    gate_score: float
    gate: dict[str, Any]
    ext_key: str | None = None
    features: bytes = b""
    cold: bool = False
    id: str = field(default_factory=lambda: new_trace_id())


def new_trace_id() -> str:
    """Time-ordered id: 12 hex digits of ms since epoch + 16 random hex digits."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


@dataclass
class StoredRef:
    seq: int
    id: str
    replaced_seq: int | None = None


@dataclass
class VerifyProblem:
    kind: str  # one of attest.Problem's kinds, or missing_row, head_mismatch
    detail: str
    provenance_seq: int | None = None
    trace_id: str | None = None


def alive() -> Any:
    """Rows not past their expiry: an expired trace reads as gone even before evict() deletes it.

    A pinned trace is alive whatever its expiry (pinning a trace written with a TTL keeps it readable, as evict() keeps it).
    """
    return or_(traces.c.pinned.is_(True), traces.c.expires_at.is_(None), traces.c.expires_at > time.time())


def aad(namespace: str, trace_id: str, key_blob: bytes, created_at: float, ext_key: str | None) -> bytes:
    return crypto.canonical({"ns": namespace, "id": trace_id, "key": crypto.sha256_hex(key_blob), "t": repr(created_at), "ext": ext_key})


def seal_row(row: NewTrace, kek: bytes) -> tuple[bytes, bytes]:
    payload = crypto.canonical({"text": row.text, "slots": row.slots, "metadata": row.metadata,
                                "source": row.source.model_dump(exclude_none=True),
                                "f": base64.b64encode(row.features).decode("ascii")})
    return crypto.seal(payload, aad(row.namespace, row.id, row.key_blob, row.created_at, row.ext_key), kek)

def trace_values(row: NewTrace, blob: bytes) -> dict[str, Any]:
    return {"id": row.id, "namespace": row.namespace, "ext_key": row.ext_key, "key_blob": row.key_blob, "payload": blob,
            "created_at": row.created_at, "expires_at": row.expires_at, "pinned": row.pinned,
            "gate_score": row.gate_score, "recall_count": 0, "tier": 1 if row.cold else 0}

def write_record(row: NewTrace, blob: bytes, seq: int) -> dict[str, Any]:
    return {"content_hash": crypto.sha256_hex(blob, row.key_blob), "source": row.source.model_dump(exclude_none=True),
            "gate": row.gate, "created_at": repr(row.created_at), "pinned": row.pinned, "ext_key": row.ext_key,
            "seq": seq, "expires_at": repr(row.expires_at)}

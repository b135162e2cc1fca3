"""Does a trace row match its signed provenance? One definition for ``verify()`` and for every read.

``verify()`` walks the whole log once; reads (recall, get, list, replay) check only
the records of the traces they return, each with its link to the record before it,
so a row or record that ``verify()`` would name is never handed out.

A record is checked for JSON, hash, Ed25519 signature, indexed columns and link.
A live row is checked against the history of its write/pin/unpin/expiry/delete
records: content hash (ciphertext + key), namespace, created_at, ext_key, seq
(position), gate score, pinned flag and expiry. Recall counts are not signed on
purpose: they change on every recall and only steer eviction order.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from hei_nw_plugin.store import crypto
from hei_nw_plugin.store.keys import KeyProvider
from hei_nw_plugin.store.records import GENESIS
from hei_nw_plugin.store.schema import provenance

Problem = tuple[str, str]
"""(kind, detail): kind is one of bad_record, bad_hash, broken_chain, bad_signature, unexpected_row,
tampered_row, reordered_row, pin_mismatch, expiry_mismatch."""

GATE_SCORE_TOLERANCE = 1e-6
"""The write record keeps the gate score rounded to 6 decimals; the row keeps it unrounded."""


@dataclass
class TraceHistory:
    """What the signed records say a trace must look like now."""

    write: dict[str, Any] | None = None
    write_seq: int | None = None
    deleted: bool = False
    pinned: bool = False
    expires_at: str | None = None  # repr() of the signed expiry
    expiry_signed: bool = False  # write records older than the expiry field leave it unchecked

    def apply(self, record: dict[str, Any], seq: int) -> None:
        """Fold one record (already checked) into the history."""
        event = record.get("event")
        if event == "write":
            self.write, self.write_seq, self.deleted = record, seq, False
            self.pinned = bool(record.get("pinned"))
            self.expiry_signed = "expires_at" in record
            self.expires_at = record.get("expires_at")
        elif event == "delete":
            self.deleted = True
        elif event in ("pin", "unpin"):
            self.pinned = event == "pin"
        elif event == "expiry":
            self.expires_at, self.expiry_signed = record.get("expires_at"), True


class SignatureCache:
    """Signatures already verified, so a trace recalled again costs a lookup, not an Ed25519 check.

    Keyed by (signer, record hash, signature): the same triple verifies the same way wherever it
    appears, and the record text is still hashed and compared every time.
    """

    def __init__(self, size: int = 16384) -> None:
        self.size = size
        self._ok: OrderedDict[tuple[str, str, bytes], None] = OrderedDict()
        self._lock = threading.Lock()

    def verified(self, keys: KeyProvider, signer_id: str, record_hash: str, signature: bytes) -> bool:
        key = (signer_id, record_hash, bytes(signature))
        with self._lock:
            if key in self._ok:
                self._ok.move_to_end(key)
                return True
        pub = keys.public_key(signer_id)
        try:
            if pub is None:
                return False
            pub.verify(signature, bytes.fromhex(record_hash))
        except Exception:  # noqa: BLE001 - InvalidSignature, a malformed hash or key: all mean the same here
            return False
        with self._lock:
            self._ok[key] = None
            if len(self._ok) > self.size:
                self._ok.popitem(last=False)
        return True


def record_problems(p: Any, keys: KeyProvider, prev: str | None, signatures: SignatureCache | None = None,
                    ) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Check one provenance row; returns (its parsed record or None, problems).

    ``prev`` is the hash of the record before it (the genesis hash for the first); None skips the link check.
    """
    try:
        record = json.loads(p.record)
        if not isinstance(record, dict):
            raise ValueError("not an object")  # noqa: TRY004 - caught right below, like a JSON error
    except ValueError:
        return None, [("bad_record", "record is not a JSON object")]
    problems: list[Problem] = []
    if crypto.sha256_hex(p.record.encode("ascii", "replace")) != p.record_hash:
        problems.append(("bad_hash", "record does not match its hash"))
    if prev is not None and (p.prev_hash != prev or record.get("prev") != prev):
        problems.append(("broken_chain", "link to the previous record is wrong (row deleted, inserted or reordered)"))
    elif p.prev_hash != record.get("prev"):
        problems.append(("broken_chain", "link column disagrees with the signed record"))
    if not (signatures or SignatureCache(0)).verified(keys, p.signer_id, p.record_hash, p.signature):
        problems.append(("bad_signature", "signature does not verify"))
    if record.get("event") != p.event or record.get("trace_id") != p.trace_id or record.get("ns") != p.namespace:
        problems.append(("bad_record", "indexed columns disagree with the signed record"))
    return record, problems


def row_problems(r: Any, history: TraceHistory | None) -> list[Problem]:
    """Check one live trace row against its history; an empty list means it matches."""
    if history is None or history.write is None or history.deleted:
        return [("unexpected_row", "trace row has no write record")]
    rec = history.write
    if rec.get("ns") != r.namespace or crypto.sha256_hex(r.payload, r.key_blob) != rec.get("content_hash") \
            or rec.get("created_at") != repr(r.created_at) or rec.get("ext_key") != r.ext_key:
        return [("tampered_row", "row content differs from its signed write record")]
    problems: list[Problem] = []
    if "seq" in rec and rec["seq"] != int(r.seq):
        problems.append(("reordered_row", f"row sits at seq {r.seq}; its write record put it at {rec['seq']}"))
    score = (rec.get("gate") or {}).get("score")
    if isinstance(score, (int, float)) and abs(float(r.gate_score) - score) > GATE_SCORE_TOLERANCE:
        problems.append(("tampered_row", "gate score differs from the signed write record"))
    if bool(r.pinned) != history.pinned:
        problems.append(("pin_mismatch", "pinned flag differs from the signed pin history"))
    if history.expiry_signed and repr(r.expires_at) != history.expires_at:
        problems.append(("expiry_mismatch", "expiry differs from the signed expiry history"))
    return problems


class AttestedRows:
    """Row versions that already matched their signed provenance in this process (LRU).

    Keyed by a digest of the row's id, seq, namespace, times, caller key, gate score, pin flag,
    expiry and the hash of its ciphertext and key: any change to the row is a new version and is
    checked again. Rows this process wrote enter when their transaction commits (it sealed and
    signed those very bytes), so a recall of a just-written trace pays no signature check. A
    provenance record edited after its row was read here is found by ``verify()``, which always
    walks the whole log, not by later reads of that unchanged row.
    """

    def __init__(self, size: int = 262144) -> None:
        self.size = size
        self._ok: OrderedDict[bytes, None] = OrderedDict()  # 16-byte digests: ~0.1 kB an entry
        self._lock = threading.Lock()

    @staticmethod
    def version(r: Any) -> bytes:
        fields = (r.id, int(r.seq), r.namespace, repr(r.created_at), r.ext_key, repr(r.expires_at), bool(r.pinned),
                  float(r.gate_score), crypto.sha256_hex(r.payload, r.key_blob))
        return hashlib.blake2b(repr(fields).encode("utf-8"), digest_size=16).digest()

    def seen(self, r: Any) -> bool:
        key = self.version(r)
        with self._lock:
            if key in self._ok:
                self._ok.move_to_end(key)
                return True
        return False

    def add(self, r: Any) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._ok[self.version(r)] = None
            while len(self._ok) > self.size:
                self._ok.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._ok.clear()


def predecessors(conn: Connection, seqs: Sequence[int], chunk: int) -> dict[int, str]:
    """seq -> hash of the provenance record just before it (the genesis hash for the first record)."""
    want = sorted({s - 1 for s in seqs})
    found: dict[int, str] = {}
    for start in range(0, len(want), chunk):
        found.update(conn.execute(select(provenance.c.seq, provenance.c.record_hash).where(
            provenance.c.seq.in_(want[start:start + chunk]))).all())
    out: dict[int, str] = {}
    for s in seqs:
        if s - 1 in found:
            out[s] = found[s - 1]
        else:  # a gap: a rolled-back sequence value on PostgreSQL, or a deleted record
            prev = conn.execute(select(provenance.c.record_hash).where(provenance.c.seq < s)
                                .order_by(provenance.c.seq.desc()).limit(1)).scalar()
            out[s] = prev if prev is not None else GENESIS
    return out

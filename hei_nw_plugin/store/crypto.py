"""Envelope encryption (AES-256-GCM) and canonical hashing for provenance.

Each payload gets a fresh 256-bit data key (DEK); the DEK is wrapped with the
provider's current key-encryption key (KEK). Destroying the wrapped DEK makes
the ciphertext unrecoverable even with the KEK (crypto-shredding). The
associated data binds a ciphertext to its trace id, namespace and key hash, so
moving or editing a row makes decryption fail.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hei_nw_plugin.errors import DecryptionError

NONCE_BYTES = 12


def seal(plaintext: bytes, aad: bytes, kek: bytes) -> tuple[bytes, bytes]:
    """Encrypt; returns (nonce+ciphertext, wrapped DEK as nonce+ciphertext)."""
    dek = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(NONCE_BYTES)
    blob = nonce + AESGCM(dek).encrypt(nonce, plaintext, aad)
    return blob, wrap(dek, aad, kek)


def wrap(dek: bytes, aad: bytes, kek: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, dek, b"dek|" + aad)


def unwrap(wrapped: bytes, aad: bytes, kek: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], b"dek|" + aad)
    except (InvalidTag, ValueError) as err:
        raise DecryptionError("data key cannot be unwrapped: wrong key or tampered row") from err


def open_sealed(blob: bytes, wrapped: bytes, aad: bytes, kek: bytes) -> bytes:
    dek = unwrap(wrapped, aad, kek)
    try:
        return AESGCM(dek).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as err:
        raise DecryptionError("payload failed authentication: tampered ciphertext or row") from err


def canonical(record: dict[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, ASCII only."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sha256_hex(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()

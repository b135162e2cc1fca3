"""Key providers: where the envelope keys (KEKs) and the signing key live.

A KEK wraps each trace's data key (DEK); rotating makes a new current KEK and
the store re-wraps every DEK with it, then the old KEK is retired. The Ed25519
signing key signs provenance records; old public keys are kept so that records
signed before a rotation still verify. The default provider is a local JSON key
file written atomically with mode 0600.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hei_nw_plugin.errors import ConfigError, DecryptionError


class KeyProvider(Protocol):
    """Envelope keys and the provenance signing key."""

    def current_kek_id(self) -> str: ...
    def kek_ids(self) -> list[str]: ...
    def kek(self, kek_id: str) -> bytes: ...
    def new_kek(self) -> str: ...
    def retire_kek(self, kek_id: str) -> None: ...
    def signer(self) -> tuple[str, Ed25519PrivateKey]: ...
    def public_key(self, signer_id: str) -> Ed25519PublicKey | None: ...


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode("ascii"))


class LocalKeyFile:
    """Keys in one JSON file (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if self.path.exists():
            self._data = self._read()
        else:
            self._data = self._fresh()
            self._write()

    @staticmethod
    def _fresh() -> dict:
        kek_id = f"kek-{int(time.time())}-{secrets.token_hex(4)}"
        sk = Ed25519PrivateKey.generate()
        from cryptography.hazmat.primitives import serialization as ser

        raw = sk.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
        pub = sk.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
        sid = f"ed25519-{secrets.token_hex(4)}"
        return {
            "version": 1,
            "current": kek_id,
            "keks": {kek_id: _b64(secrets.token_bytes(32))},
            "signing": {"id": sid, "private": _b64(raw)},
            "public": {sid: _b64(pub)},
        }

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            assert data["current"] in data["keks"] and data["signing"]["id"] in data["public"]
            return data
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as err:
            raise ConfigError(f"key file {self.path} is unreadable or malformed: {err}") from err

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self._data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        # The rename must reach the disk before the store commits rows wrapped with a new KEK.
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def current_kek_id(self) -> str:
        return str(self._data["current"])

    def kek_ids(self) -> list[str]:
        """Every key-encryption key the file holds (current and not yet retired)."""
        return list(self._data["keks"])

    def kek(self, kek_id: str) -> bytes:
        try:
            return _unb64(self._data["keks"][kek_id])
        except KeyError as err:
            raise DecryptionError(f"key {kek_id!r} is not in the key provider (wrong or rotated-away key file?)") from err

    def new_kek(self) -> str:
        with self._lock:
            kek_id = f"kek-{int(time.time())}-{secrets.token_hex(4)}"
            self._data["keks"][kek_id] = _b64(secrets.token_bytes(32))
            self._data["current"] = kek_id
            self._write()
            return kek_id

    def retire_kek(self, kek_id: str) -> None:
        with self._lock:
            if kek_id == self._data["current"]:
                raise ConfigError("cannot retire the current key")
            self._data["keks"].pop(kek_id, None)
            self._write()

    def signer(self) -> tuple[str, Ed25519PrivateKey]:
        s = self._data["signing"]
        return s["id"], Ed25519PrivateKey.from_private_bytes(_unb64(s["private"]))

    def public_key(self, signer_id: str) -> Ed25519PublicKey | None:
        pub = self._data["public"].get(signer_id)
        return Ed25519PublicKey.from_public_bytes(_unb64(pub)) if pub else None

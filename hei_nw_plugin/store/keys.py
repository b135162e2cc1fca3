"""Key providers: where the envelope keys (KEKs) and the signing key live.

A KEK wraps each trace's data key (DEK); rotating makes a new current KEK and
the store re-wraps every DEK with it, then the old KEK is retired. The Ed25519
signing key signs provenance records; old public keys are kept so that records
signed before a rotation still verify. The default provider is a local JSON key
file written atomically with mode 0600.

Several processes may share one key file (server replicas, a consolidation worker,
an import job). Every change is a read-modify-write of the file under an exclusive
``flock`` on ``<file>.lock``, so two rotations at once keep both new keys; a
process re-reads the file when it changed (one ``stat``), before each write
transaction and whenever it meets a key id it does not hold, so a rotation by
another process neither hides rows from it nor leaves it wrapping new rows with a
retired key. The in-memory copy changes only once the file is on disk: a failed
write (a full disk) leaves both as they were.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hei_nw_plugin.errors import ConfigError, DecryptionError, DiskFullError, StoreUnavailableError


class KeyProvider(Protocol):
    """Envelope keys and the provenance signing key."""

    def current_kek_id(self) -> str: ...
    def kek_ids(self) -> list[str]: ...
    def kek(self, kek_id: str) -> bytes: ...
    def new_kek(self) -> str: ...
    def retire_kek(self, kek_id: str) -> None: ...
    def signer(self) -> tuple[str, Ed25519PrivateKey]: ...
    def public_key(self, signer_id: str) -> Ed25519PublicKey | None: ...
    def refresh(self) -> None: ...


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode("ascii"))


class LocalKeyFile:
    """Keys in one JSON file (created on first use), shared safely by the processes that open it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime ns, size) of the file last read
        with self._locked():
            if self.path.exists():
                self._data = self._read()
            else:
                self._data = self._fresh()
                self._write(self._data)

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

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _read(self) -> dict:
        try:
            stamp = self._stamp()
            data = json.loads(self.path.read_text())
            assert data["current"] in data["keks"] and data["signing"]["id"] in data["public"]
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as err:
            raise ConfigError(f"key file {self.path} is unreadable or malformed: {err}") from err
        self._seen = stamp
        return data

    def _write(self, data: dict) -> None:
        """Write ``data`` atomically (temp file, fsync, rename, fsync of the folder); errors are HEI-NW errors."""
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            # The rename must reach the disk before the store commits rows wrapped with a new KEK.
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            if err.errno == errno.ENOSPC:
                raise DiskFullError(f"no space left to write the key file {self.path}; no key was changed") from err
            raise StoreUnavailableError(f"cannot write the key file {self.path}: {err}") from err
        self._seen = self._stamp()

    class _FileLock:
        def __init__(self, path: Path) -> None:
            self.path = path
            self.fd = -1

        def __enter__(self) -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)

        def __exit__(self, *exc: object) -> None:
            os.close(self.fd)  # closing releases the lock (a killed process releases it too)

    def _locked(self) -> LocalKeyFile._FileLock:
        """Exclusive lock on ``<file>.lock`` across processes, for a read-modify-write of the file."""
        return LocalKeyFile._FileLock(self.path.with_name(self.path.name + ".lock"))

    def refresh(self) -> None:
        """Re-read the file if another process changed it since this one last read or wrote it.

        Keys this process held stay usable (a read in flight may still meet rows wrapped by them);
        the current key, the signing key and every key in the file come from the file.
        """
        if self._stamp() == self._seen:
            return
        with self._lock:
            if self._stamp() == self._seen:
                return
            data = self._read()
            data["keks"] = {**self._data["keks"], **data["keks"]}
            data["public"] = {**self._data["public"], **data["public"]}
            self._data = data

    def current_kek_id(self) -> str:
        return str(self._data["current"])

    def kek_ids(self) -> list[str]:
        """Every key-encryption key the file holds (current and not yet retired)."""
        return list(self._data["keks"])

    def kek(self, kek_id: str) -> bytes:
        if kek_id not in self._data["keks"]:
            self.refresh()  # another process may have rotated to it
        try:
            return _unb64(self._data["keks"][kek_id])
        except KeyError as err:
            raise DecryptionError(f"key {kek_id!r} is not in the key provider (wrong or rotated-away key file?)") from err

    def _change(self, edit: Callable[[dict], None]) -> None:
        """Apply ``edit`` to the file's current contents under the file lock; memory follows once it is on disk."""
        with self._lock, self._locked():
            data = self._read() if self.path.exists() else json.loads(json.dumps(self._data))
            edit(data)
            self._write(data)
            self._data = data

    def new_kek(self) -> str:
        kek_id = f"kek-{int(time.time())}-{secrets.token_hex(4)}"

        def add(data: dict) -> None:
            data["keks"][kek_id] = _b64(secrets.token_bytes(32))
            data["current"] = kek_id

        self._change(add)
        return kek_id

    def retire_kek(self, kek_id: str) -> None:
        def drop(data: dict) -> None:
            if kek_id == data["current"]:
                raise ConfigError("cannot retire the current key")
            data["keks"].pop(kek_id, None)

        self._change(drop)

    def signer(self) -> tuple[str, Ed25519PrivateKey]:
        s = self._data["signing"]
        return s["id"], Ed25519PrivateKey.from_private_bytes(_unb64(s["private"]))

    def public_key(self, signer_id: str) -> Ed25519PublicKey | None:
        pub = self._data["public"].get(signer_id)
        if pub is None:
            self.refresh()
            pub = self._data["public"].get(signer_id)
        return Ed25519PublicKey.from_public_bytes(_unb64(pub)) if pub else None

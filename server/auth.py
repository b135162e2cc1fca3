"""API keys, hashed at rest, mapped to tenants; a token bucket per key.

Keys are long random strings (``hei_`` + 32 url-safe bytes), so a plain SHA-256
is enough to store them (the salted scrypt form is accepted too, for keys that
people chose). Presented keys are checked in constant time; a scrypt match is
remembered by the key's SHA-256 so scrypt runs once per key and process, not
once per request. Logs name a key by ``key_id`` (the first 12 hex digits of its
SHA-256), never by the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from server.settings import TenantKey

KEY_PREFIX = "hei_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant and a loggable id of the key used."""

    tenant: str
    key_id: str


def new_api_key() -> str:
    """A fresh random API key (show it once, store only :func:`hash_key` of it)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str, *, scheme: str = "sha256") -> str:
    """The at-rest form of ``key``: ``sha256:<hex>`` or ``scrypt:n:r:p:salt:hash``."""
    if scheme == "sha256":
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    if scheme == "scrypt":
        n, r, p, salt = 2**14, 8, 1, secrets.token_bytes(16)
        digest = hashlib.scrypt(key.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
        return f"scrypt:{n}:{r}:{p}:{_b64(salt)}:{_b64(digest)}"
    raise ValueError(f"unknown key hash scheme {scheme!r}; use 'sha256' or 'scrypt'")


def key_id(key: str) -> str:
    """Loggable name of a key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class KeyRing:
    """Maps presented API keys to principals."""

    def __init__(self, keys: list[TenantKey]) -> None:
        self._sha: dict[str, str] = {}
        self._scrypt: list[tuple[TenantKey, tuple[int, int, int, bytes, bytes]]] = []
        for k in keys:
            scheme, rest = k.hash.split(":", 1)
            if scheme == "sha256":
                self._sha[rest] = k.tenant
            else:
                n, r, p, salt, digest = rest.split(":")
                self._scrypt.append((k, (int(n), int(r), int(p), _unb64(salt), _unb64(digest))))
        self._verified: dict[str, str] = {}  # sha256 of a key that matched a scrypt entry -> tenant
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sha) + len(self._scrypt)

    def authenticate(self, key: str, *, slow: bool = True) -> Principal | None:
        """The principal for ``key``, or None when no configured key matches.

        ``slow=False`` skips the scrypt entries for a key not seen before (the caller
        is throttling an address that keeps presenting wrong keys).
        """
        if not key or len(key) > 512:
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        tenant = None
        for stored, t in self._sha.items():  # every entry, constant time each: no early exit on a prefix match
            if hmac.compare_digest(stored, digest):
                tenant = t
        if tenant is None:
            with self._lock:
                tenant = self._verified.get(digest)
        if tenant is None and slow:
            for entry, (n, r, p, salt, want) in self._scrypt:
                got = hashlib.scrypt(key.encode(), salt=salt, n=n, r=r, p=p, dklen=len(want))
                if hmac.compare_digest(got, want):
                    tenant = entry.tenant
                    with self._lock:
                        self._verified[digest] = tenant
                    break
        return Principal(tenant=tenant, key_id=digest[:12]) if tenant is not None else None


class TokenBucket:
    """``rate`` tokens per second up to ``burst``, one bucket per key id."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill, monotonic s)
        self._lock = threading.Lock()

    def available(self, key: str, now: float | None = None) -> float:
        """Tokens ``key`` has now, without taking one."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            return min(float(self.burst), tokens + (now - last) * self.rate)

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token; returns 0.0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode("ascii").rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

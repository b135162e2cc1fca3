"""One exception tree for HEI-NW.

Caller mistakes and runtime faults are separate branches, so an integration can
map the first to HTTP 4xx / a tool error and the second to 5xx / a retry::

    HeiNwError
    ├── InputError                  caller mistake; nothing was changed
    │   ├── InvalidEventError       empty text, wrong types, bad slots
    │   ├── PayloadTooLargeError    text or slots over the configured limit
    │   ├── InvalidNamespaceError   malformed namespace string
    │   ├── UnknownNamespaceError   namespace has never been written
    │   ├── TraceNotFoundError      no such trace in that namespace
    │   └── ConfigError             a setting is missing or out of range
    └── RuntimeFault                the system, not the caller, failed
        ├── StoreUnavailableError   database cannot be reached (after waiting store.reconnect_s)
        │   ├── DiskFullError       no space left for the store or its key file; nothing was stored
        │   └── CommitUnknownError  the connection dropped during COMMIT: the change may or may not be stored
        ├── IndexCorruptError       ANN index file unreadable (rebuilt from store)
        ├── IntegrityError          signature / hash chain / ciphertext check failed
        ├── DecryptionError         wrong or missing key for a payload
        └── MissingExtraError       an optional dependency is not installed

``MissingExtraError`` also subclasses ``ImportError`` so ``except ImportError``
keeps working for code that probes optional features.
"""

from __future__ import annotations


class HeiNwError(Exception):
    """Root of every error HEI-NW raises on purpose."""


class InputError(HeiNwError, ValueError):
    """The caller passed something wrong; no stored data was changed."""


class InvalidEventError(InputError):
    """An event or cue is malformed (empty text, wrong types, bad slots)."""


class PayloadTooLargeError(InputError):
    """Text or slots exceed the configured size limit."""


class InvalidNamespaceError(InputError):
    """A namespace string is empty, too long or has forbidden characters."""


class UnknownNamespaceError(InputError):
    """The namespace has never been written to."""


class TraceNotFoundError(InputError, KeyError):
    """No trace with that id exists in the given namespace."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "trace not found"


class ConfigError(InputError):
    """A setting is missing, of the wrong type or out of range."""


class RuntimeFault(HeiNwError, RuntimeError):
    """Something outside the caller's control failed."""


class StoreUnavailableError(RuntimeFault):
    """The trace store (SQLite file or PostgreSQL server) cannot be used.

    ``transient`` is true when the connection dropped before anything was committed
    (a server restart, a terminated backend, a deadlock victim), so the same call may be
    repeated as is; the store itself repeats such calls for ``store.reconnect_s`` first.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class DiskFullError(StoreUnavailableError):
    """No space is left on the disk that holds the store, its WAL or its key file; the call stored nothing."""


class CommitUnknownError(StoreUnavailableError):
    """The connection dropped while the COMMIT was in flight: the change may or may not be stored.

    Writes resolve this themselves (they look their new trace ids up once the store is back);
    a delete, pin or expiry change raises it: read the trace before repeating the call.
    """


class IndexCorruptError(RuntimeFault):
    """The ANN index file is unreadable; the engine rebuilds it from the store."""


class IntegrityError(RuntimeFault):
    """A signature, hash-chain link or ciphertext failed verification."""


class DecryptionError(RuntimeFault):
    """A payload could not be decrypted with the available keys."""


class MissingExtraError(RuntimeFault, ImportError):
    """An optional dependency is missing; the message has the pip line."""


def require_extra(module: str, extra: str) -> MissingExtraError:
    """Build the error for a missing optional dependency.

    Usage: ``except ImportError as err: raise require_extra("torch", "model") from err``.
    """
    return MissingExtraError(
        f"{module!r} is not installed; install it with: pip install \"hei-nw[{extra}]\""
    )

"""How database errors become HEI-NW errors, and which store calls wait out an outage.

A PostgreSQL restart or a terminated backend reaches the store as a dropped
connection: psycopg's OperationalError with SQLSTATE 57P01-57P03 or class 08, or
with none when the socket died. The pool's pre-ping replaces dead pooled
connections at checkout; :func:`retrying` re-runs a store call whose connection
failed before its COMMIT was sent, with exponential backoff from 50 ms to 1 s,
for up to ``store.reconnect_s``, and then raises a :class:`StoreUnavailableError`
that names the server and how long it was unreachable. A call whose COMMIT was
in flight is not re-run, since the change may have been made: it raises
:class:`CommitUnknownError`.
Deadlock and serialisation victims are retried the same way: they commit nothing.

SQLite calls are never retried here (SQLite's busy timeout has already waited for
the write lock). A full disk (SQLite's SQLITE_FULL, PostgreSQL's SQLSTATE 53100,
``ENOSPC``) is a :class:`DiskFullError`, never retried either.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from hei_nw_plugin.errors import CommitUnknownError, DiskFullError, StoreUnavailableError

log = logging.getLogger(__name__)

Stage = Literal["connect", "transaction", "commit", "read"]

_TRANSIENT_STATES = ("57P01", "57P02", "57P03", "40001", "40P01")
"""admin_shutdown, crash_shutdown, cannot_connect_now, serialization_failure, deadlock_detected (and class 08)."""
_SQLITE_FULL = 13
_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 1.0


class _Retryable(Protocol):
    is_sqlite: bool
    reconnect_s: float
    where: str


P = ParamSpec("P")
R = TypeVar("R")
_depth = threading.local()  # nested store calls retry only at the outermost one


def describe(url: str) -> str:
    """Where the store lives, for error messages: 'PostgreSQL at host:port/db' or 'SQLite at path' (no password)."""
    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL fails at create_engine with its own error
        return "the trace store"
    if u.get_backend_name() == "sqlite":
        return f"SQLite at {u.database or ':memory:'}"
    return f"PostgreSQL at {u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"


def _sqlstate(err: BaseException) -> str | None:
    state = getattr(getattr(err, "orig", None), "sqlstate", None)
    return state if isinstance(state, str) else None


def is_disk_full(err: BaseException) -> bool:
    """SQLITE_FULL, PostgreSQL's disk_full, or ENOSPC anywhere in the chain."""
    seen: BaseException | None = err
    while seen is not None:
        orig = getattr(seen, "orig", None)
        if getattr(orig, "sqlite_errorcode", None) == _SQLITE_FULL or "database or disk is full" in str(orig or ""):
            return True
        if _sqlstate(seen) == "53100" or (isinstance(seen, OSError) and seen.errno == errno.ENOSPC):
            return True
        seen = seen.__cause__
    return False


def _transient(err: DBAPIError) -> bool:
    """A dropped connection or a deadlock victim: nothing of the transaction was committed."""
    if err.connection_invalidated:
        return True
    state = _sqlstate(err)
    if state is not None:
        return state.startswith("08") or state in _TRANSIENT_STATES
    orig = getattr(err, "orig", None)
    # psycopg raises its OperationalError without a SQLSTATE when the socket failed (refused, closed, reset).
    return isinstance(err, (OperationalError, InterfaceError)) and type(orig).__module__.startswith("psycopg")


def _reason(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__


def store_error(err: DBAPIError | OSError, where: str, stage: Stage) -> StoreUnavailableError:
    """The HEI-NW error for a database (or file system) failure at ``stage`` of a store call."""
    reason = _reason(err)
    if is_disk_full(err):
        return DiskFullError(f"no space left on the disk of {where} ({reason}); nothing from this call was stored; "
                             "free space and repeat the call")
    transient = isinstance(err, DBAPIError) and _transient(err)
    if stage == "commit":
        # The COMMIT may have reached the server before the connection dropped: never repeated blindly.
        return CommitUnknownError(f"connection to {where} lost while committing ({reason}); the change may or may not "
                                  "be stored")
    if stage == "connect":
        return StoreUnavailableError(f"cannot connect to {where} ({reason})", transient=transient)
    if transient:
        return StoreUnavailableError(f"connection to {where} lost ({reason}); nothing from this call was committed",
                                     transient=True)
    return StoreUnavailableError(f"{where} failed: {reason}")


def retrying(method: Callable[P, R]) -> Callable[P, R]:
    """Re-run a store method while it fails with a transient error, for up to ``self.reconnect_s`` seconds.

    The method must be safe to repeat after a failure that committed nothing (every
    store call is one transaction, or a read). Only the outermost decorated call of
    a thread retries, so nested store calls do not multiply the wait.
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store: _Retryable = args[0]  # type: ignore[assignment]
        nested: int = getattr(_depth, "n", 0)
        if store.is_sqlite or nested:
            return method(*args, **kwargs)
        _depth.n = 1
        try:
            return _with_retries(store, method, args, kwargs)
        finally:
            _depth.n = nested

    return wrapper


@contextlib.contextmanager
def no_retry() -> Iterator[None]:
    """Store calls of this thread inside the block fail at once instead of waiting out an outage (readiness probes)."""
    before: int = getattr(_depth, "n", 0)
    _depth.n = before + 1
    try:
        yield
    finally:
        _depth.n = before


def _with_retries(store: _Retryable, method: Callable[..., R], args: Any, kwargs: Any) -> R:
    start = time.monotonic()
    delay, attempts = _FIRST_DELAY_S, 0
    while True:
        attempts += 1
        try:
            result = method(*args, **kwargs)
        except StoreUnavailableError as err:
            waited = time.monotonic() - start
            if not err.transient:
                raise
            if waited + delay > store.reconnect_s:
                raise StoreUnavailableError(
                    f"{store.where} unreachable for {waited:.1f} s ({attempts} attempts, store.reconnect_s = "
                    f"{store.reconnect_s:g}): {err}", transient=True) from err
            if attempts == 1:
                log.warning("%s: %s; retrying for up to %.1f s", method.__name__, err, store.reconnect_s)
            time.sleep(delay * random.uniform(0.5, 1.0))  # jitter: replicas must not reconnect in lockstep
            delay = min(delay * 2, _MAX_DELAY_S)
            continue
        if attempts > 1:
            log.warning("%s: %s reachable again after %.1f s (%d attempts)", method.__name__, store.where,
                        time.monotonic() - start, attempts)
        return result

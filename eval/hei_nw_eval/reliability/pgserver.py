"""The real PostgreSQL server the checks use: a fresh schema per run, and the faults done to the server.

A run's store lives in its own schema of the given database (dropped afterwards), reached
through a URL whose ``application_name`` tags every connection of the run, so
``pg_terminate_backend`` hits this run's backends and nobody else's. Restarting and
stopping go through Debian's ``pg_ctlcluster`` (the cluster that listens on the URL's
port); a stopped server is always started again, even when the check fails midway.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Schema:
    """One run's schema: ``url`` reaches it, tagged ``tag``; ``admin`` is the server URL for the checker's own queries."""

    admin: str
    name: str
    tag: str

    @property
    def url(self) -> str:
        sep = "&" if "?" in self.admin else "?"
        return f"{self.admin}{sep}options=-csearch_path%3D{self.name}&application_name={self.tag}"


def _engine(url: str) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})


def _sql(url: str, statement: str) -> Any:
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            result = conn.exec_driver_sql(statement)
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_schema(admin: str = DEFAULT_URL, *, prefix: str = "hei_rel", keep: bool = False) -> Iterator[Schema]:
    """A new schema for one run (dropped on exit unless ``keep``); raises when the server cannot be reached."""
    suffix = uuid.uuid4().hex[:10]
    schema = Schema(admin, f"{prefix}_{suffix}", f"{prefix}-{suffix}")
    _sql(admin, f"CREATE SCHEMA {schema.name}")
    try:
        yield schema
    finally:
        if not keep:
            ensure_up(admin)
            _sql(admin, f"DROP SCHEMA {schema.name} CASCADE")


def reachable(admin: str = DEFAULT_URL) -> str | None:
    """None when the server answers, else why not."""
    try:
        _sql(admin, "SELECT 1")
    except Exception as err:  # noqa: BLE001 - any failure means: not usable here
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


def terminate(schema: Schema) -> int:
    """``pg_terminate_backend`` every backend of the run (by its application_name); returns how many."""
    return int(_sql(schema.admin, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  f"WHERE application_name = '{schema.tag}'") or 0)


def cluster(admin: str = DEFAULT_URL) -> tuple[str, str] | None:
    """(version, cluster name) of the local cluster listening on the URL's port, from ``pg_lsclusters``; None without it."""
    from sqlalchemy.engine import make_url

    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        return None
    port = str(make_url(admin).port or 5432)
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == port:
            return parts[0], parts[1]
    return None


def ctl(action: str, admin: str = DEFAULT_URL) -> float:
    """Run ``pg_ctlcluster <version> <cluster> <action>`` (start, stop, restart); returns the seconds it took."""
    found = cluster(admin)
    if found is None:
        raise RuntimeError("pg_ctlcluster or a cluster on the URL's port is not available")
    t0 = time.monotonic()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", found[0], found[1], action], check=True,
                   capture_output=True, timeout=120)
    return time.monotonic() - t0


def ensure_up(admin: str = DEFAULT_URL, timeout_s: float = 60.0) -> None:
    """Start the cluster if it does not answer, and wait until it does."""
    if reachable(admin) is None:
        return
    if cluster(admin) is not None:
        with contextlib.suppress(subprocess.CalledProcessError):
            ctl("start", admin)
    deadline = time.monotonic() + timeout_s
    while reachable(admin) is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not come back: {reachable(admin)}")
        time.sleep(0.5)

"""Saving derived files (HNSW graphs, lexical indexes): atomic, one process at a time, never failing the caller.

These files are caches of the trace store, the source of truth: a file that is missing or
stale is rebuilt or caught up when its namespace is opened. So a save that fails (a full
disk) is logged and reported, not raised, since the write or delete that caused it has
already committed. Processes sharing a folder (server replicas, an import job) take turns
with an exclusive ``flock`` on ``<file>.lock`` around the temp file, so two saves never
write one temp file at once; a failed save that would leave removed entries in the old
file removes that file as well.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` across processes (released on close, and when the holder dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def save_atomically(path: Path, write: Callable[[Path], None], *, holds_removed: bool, what: str) -> bool:
    """``write(temp)`` then rename it over ``path``, under the folder's lock; False (and a warning) when it failed.

    ``holds_removed``: entries were removed since the file was last written, so on failure the old
    file goes too rather than keep them (it is rebuilt from the store at the next open).
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(path.name + ".lock")):
            write(tmp)
            os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # usearch reports a failed write as RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
            if holds_removed:
                path.unlink(missing_ok=True)
        log.warning("%s %s not saved (%s: %s); %s", what, path, type(err).__name__, err,
                    "removed the old file, which held removed entries; it is rebuilt from the store at the next open"
                    if holds_removed else "the old file stays and is caught up from the store at the next open")
        return False
    return True

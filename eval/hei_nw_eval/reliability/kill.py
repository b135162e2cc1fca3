"""Child processes that are killed on purpose: fork, acknowledge, kill at a random moment.

A child is forked from the checking process, so whatever that process has
loaded (an embedder, a language model) costs nothing per child. The child
appends one JSON line per event to an ack file with a single ``write(2)``,
which a SIGKILL cannot tear: ``{"begin": ...}`` before an operation and
``{"op": ...}`` after it returns. The checker reads them back to know what was
acknowledged and which one operation may have been in flight.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Summary:
    """Outcome of one group of kill trials (seconds as named)."""

    trials: int = 0
    failed: int = 0
    killed_mid_operation: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def ack(fd: int, obj: dict[str, Any]) -> None:
    """Append one event line to the ack file (one write(2): a kill cannot tear it)."""
    os.write(fd, (json.dumps(obj) + "\n").encode())


def fork_child(body: Callable[[int], None], ack_file: Path) -> int:
    """Run ``body(ack_fd)`` in a forked child that never returns into the caller; returns its pid."""
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        fd = -1
        try:
            fd = os.open(ack_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            body(fd)
        except BaseException as err:  # noqa: BLE001 - a child must never unwind into the parent's stack
            code = 1
            if fd >= 0:
                ack(fd, {"error": f"{type(err).__name__}: {err}"})
        finally:
            os._exit(code)
    return pid


def _acked(ack_file: Path) -> int:
    try:
        return ack_file.read_bytes().count(b'"op"')
    except FileNotFoundError:
        return 0


def kill_at_random_moment(pid: int, ack_file: Path, rng: random.Random, *, after_ops: int, stall_s: float = 600.0) -> tuple[float, bool]:
    """SIGKILL ``pid`` at a random moment of its operation number ``after_ops + 1``.

    Waits until the child has acknowledged ``after_ops`` operations, then a further
    random fraction (0..1.5) of the time one operation has been taking, so the kill
    lands anywhere inside an operation whatever the machine's load. Returns
    (seconds from fork to kill, whether the child was still running).
    """
    t0 = time.monotonic()
    gaps = wait_for_acks(pid, ack_file, after_ops, stall_s)
    if gaps is None:
        return time.monotonic() - t0, False
    time.sleep(rng.uniform(0.0, 1.5) * float(np.median(gaps[-8:])))
    return _kill(pid, t0)


def wait_for_acks(pid: int, ack_file: Path, n: int, stall_s: float = 600.0) -> list[float] | None:
    """Wait until the child has acknowledged ``n`` operations; returns the seconds each took (None: it exited)."""
    seen, last, gaps = 0, time.monotonic(), [0.05]
    while True:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return None
        count = _acked(ack_file)
        now = time.monotonic()
        if count > seen:
            gaps.append((now - last) / (count - seen))
            seen, last = count, now
        if seen >= n or now - last > stall_s:
            return gaps
        time.sleep(0.002)


def kill_after(pid: int, delay: float) -> tuple[float, bool]:
    """SIGKILL ``pid`` ``delay`` seconds from now; returns (seconds to the kill, whether it was still running)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < delay:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return time.monotonic() - t0, False
        time.sleep(0.005)
    return _kill(pid, t0)


def _kill(pid: int, t0: float) -> tuple[float, bool]:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
    return time.monotonic() - t0, True


def read_acks(ack_file: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None, str | None]:
    """(acknowledged operations, the begun-but-unacknowledged one or None, the child's own error or None)."""
    acks: list[dict[str, Any]] = []
    begun: dict[str, Any] | None = None
    error: str | None = None
    for line in ack_file.read_text().splitlines() if ack_file.exists() else []:
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # never a torn line in practice; ignored if it were
        if "begin" in obj:
            begun = obj
        elif "error" in obj:
            error = str(obj["error"])
        else:
            acks.append(obj)
            begun = None
    return acks, begun, error

"""Input checks at the engine's boundary: every caller value is validated before anything is stored or read.

Bad input raises an :class:`~hei_nw_plugin.errors.InputError` subclass whose message names
the field and the limit, so a caller (HTTP, MCP, CLI, Python) can show it as is. Limits
come from :class:`~hei_nw_plugin.config.LimitSettings`, read at each call.
"""

from __future__ import annotations

import json
import math
import time
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from hei_nw_plugin.config import LimitSettings
from hei_nw_plugin.errors import InvalidEventError, InvalidNamespaceError, PayloadTooLargeError
from hei_nw_plugin.types import Cue, MemoryEvent

_M = TypeVar("_M", bound=BaseModel)


def _as_model(value: Any, model: type[_M], what: str) -> _M:
    """``value`` (the model itself, its text alone, or a mapping of its fields) as ``model``, or InvalidEventError."""
    try:
        if isinstance(value, model):
            return value
        if isinstance(value, str):
            return model.model_validate({"text": value})
        if isinstance(value, Mapping):
            return model.model_validate(dict(value))
    except ValidationError as err:
        raise InvalidEventError(f"invalid {what}: {pydantic_message(err)}") from err
    raise InvalidEventError(f"{what} must be a {model.__name__}, str or mapping, got {type(value).__name__}")


def check_namespace(namespace: Any, limits: LimitSettings) -> str:
    """A valid namespace, or InvalidNamespaceError naming what is wrong."""
    if not isinstance(namespace, str):
        raise InvalidNamespaceError(f"namespace must be a string, got {type(namespace).__name__}")
    if not namespace or len(namespace) > limits.max_namespace_chars:
        raise InvalidNamespaceError(
            f"namespace must be 1..{limits.max_namespace_chars} characters, got {len(namespace)}")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in namespace):
        raise InvalidNamespaceError("namespace must not contain control characters")
    return namespace


def check_event(event: MemoryEvent | str | Mapping[str, Any], limits: LimitSettings) -> MemoryEvent:
    """The event as a validated :class:`MemoryEvent` (within ``limits``), or an InputError naming the field."""
    lim = limits
    ev = _as_model(event, MemoryEvent, "event")
    if not ev.text.strip():
        raise InvalidEventError("event text is empty")
    if len(ev.text) > lim.max_text_chars:
        raise PayloadTooLargeError(f"event text has {len(ev.text)} characters; the limit is {lim.max_text_chars}")
    check_slots(ev.slots, limits)
    try:
        meta_size = len(json.dumps(ev.metadata, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise InvalidEventError(f"event metadata must be JSON-serialisable: {err}") from err
    if meta_size > 4 * lim.max_text_chars:
        raise PayloadTooLargeError(f"event metadata is {meta_size} bytes as JSON; the limit is {4 * lim.max_text_chars}")
    if "\x00" in ev.text:
        raise InvalidEventError("event text must not contain NUL characters")
    try:
        created = timestamp_s(ev.timestamp) if ev.timestamp else time.time()
    except OverflowError as err:
        raise InvalidEventError(f"timestamp {ev.timestamp} is out of range") from err
    if not representable(created) or (ev.ttl_s is not None and not representable(created + ev.ttl_s)):
        raise InvalidEventError("timestamp and ttl_s must put the trace's creation and expiry within years 1..9999")
    return ev


def check_slots(slots: Mapping[str, Any], limits: LimitSettings) -> None:
    """Slot count, name and value sizes within ``limits``; finite numbers."""
    lim = limits
    if len(slots) > lim.max_slots:
        raise PayloadTooLargeError(f"{len(slots)} slots; the limit is {lim.max_slots}")
    for k, v in slots.items():
        if not k.strip():
            raise InvalidEventError("slot names must not be empty")
        if len(k) > lim.max_slot_chars or len(str(v)) > lim.max_slot_chars:
            raise PayloadTooLargeError(f"slot {k[:40]!r} is longer than {lim.max_slot_chars} characters")
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidEventError(f"slot {k!r} must be a finite number")


def check_cue(cue: Cue | str | Mapping[str, Any], limits: LimitSettings) -> Cue:
    """The cue as a validated :class:`Cue`, or an InputError naming the field."""
    c = _as_model(cue, Cue, "cue")
    if not c.text.strip() and not c.slots:
        raise InvalidEventError("cue is empty: give text or at least one slot")
    if len(c.text) > limits.max_text_chars:
        raise PayloadTooLargeError(f"cue has {len(c.text)} characters; the limit is {limits.max_text_chars}")
    check_slots(c.slots, limits)
    return c


def check_int(name: str, value: Any, *, minimum: int) -> int:
    # The upper bound is the store's: SQL integers are 64-bit.
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value < 2**63:
        raise InvalidEventError(f"{name} must be an integer in {minimum}..2**63-1, got {value!r}")
    return value


def check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidEventError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_where(where: Any) -> None:
    if where is not None and not (isinstance(where, Mapping) and all(isinstance(k, str) for k in where)):
        raise InvalidEventError("where must be a mapping from slot or metadata names to values")


def check_trace_id(trace_id: Any) -> str:
    if not isinstance(trace_id, str) or not trace_id or len(trace_id) > 64:
        raise InvalidEventError(f"trace id must be a non-empty string of at most 64 characters, got {trace_id!r}")
    return trace_id


def timestamp_s(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def representable(ts: float) -> bool:
    """Whether a Unix time (s) reads back as a datetime; a stored one that does not would break every recall of it."""
    try:
        datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return False
    return True


def pydantic_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ())) or "event"
        parts.append(f"{loc}: {e.get('msg')}")
    return "; ".join(parts)

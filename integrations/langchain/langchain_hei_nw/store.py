"""HEINWStore: a LangGraph ``BaseStore`` whose items are HEI-NW traces.

An item is one trace: the item's key is the trace's caller key (newest wins),
its value dict is the trace's metadata (stored encrypted), and the text the
trace is keyed and recalled by comes from the value's ``index`` fields, or by
default from every string in the value. ``search(prefix, query=...)`` is an
HEI-NW recall in each namespace under the prefix, merged by recall score;
without a query it lists items in write order. Namespace tuples map to HEI-NW
namespace strings as described in :mod:`langchain_hei_nw.namespaces`, so the
store also sees traces written by the middleware, the tools or HEIMemory
directly (their value is their slots and metadata plus ``"text"``, their key
their caller key or trace id).

Two choices shape the rest:

* **The write gate decides.** With ``gate="gate"`` (the default) a ``put`` of a
  new key is offered to HEI-NW's write gate and may be rejected (chit-chat,
  near-duplicates): the put then stores nothing and ``get`` returns None. A value
  with ``"_pin": True``, or a store built with ``gate="always"``, pins the trace
  (always written, never evicted). A put to a key that is already stored is an
  update of an admitted memory and is always written.
* **TTL is the store's.** LangGraph TTLs (minutes) slide on every read, while a
  pinned HEI-NW trace never expires, so the store keeps each item's expiry beside
  its value, hides expired items and deletes them as it meets them (or in
  :meth:`HEINWStore.sweep_ttl`). The TTL is also handed to the engine as
  ``MemoryEvent.ttl_s`` so ``HEIMemory.evict`` drops an unpinned item that is
  never read again. Refreshing a TTL rewrites the trace (same key, text and
  value), because the engine has no call that moves an expiry.

The key ``"__hei_nw_store__"`` inside stored metadata is reserved for the
store's own timestamps and TTL; a value may not use it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    get_text_at_path,
    validate_op_namespace,
)

from hei_nw_plugin import HEIMemory, MemoryEvent, Trace
from hei_nw_plugin.errors import ConfigError, InvalidEventError, TraceNotFoundError, UnknownNamespaceError
from langchain_hei_nw.namespaces import from_hei_namespace, to_hei_namespace

logger = logging.getLogger(__name__)

RESERVED = "__hei_nw_store__"
"""Metadata key holding the store's created_at, updated_at, ttl_min and expires_at (epoch seconds)."""
PIN_FIELD = "_pin"
"""A value with this field set to True is pinned: written whatever the gate says and never evicted."""
_PAGE = 500  # traces fetched per page when listing


class HEINWStore(BaseStore):
    """LangGraph long-term memory backed by HEI-NW. Pass it as ``create_agent(..., store=...)``.

    Args:
        memory: The HEI-NW memory to store items in (the store does not close it).
        gate: ``"gate"``: new keys pass the write gate (see the module docstring);
            ``"always"``: every put is pinned, which makes the store a plain key-value store.
        fields: Default JSON paths of the value whose text is embedded (LangGraph's
            ``IndexConfig.fields`` syntax, e.g. ``["text", "notes[*].body"]``); None or
            ``["$"]``: every string in the value. ``put(..., index=[...])`` overrides it per
            item; ``index=False`` is treated as the default because every trace is indexed.
        ttl: LangGraph ``TTLConfig``: ``default_ttl`` (minutes) and ``refresh_on_read``.
            Background sweeping is not run; call :meth:`sweep_ttl` from your scheduler.
        clock: Seconds since the epoch; only tests replace it.
    """

    supports_ttl = True

    def __init__(
        self,
        memory: HEIMemory,
        *,
        gate: Literal["gate", "always"] = "gate",
        fields: list[str] | None = None,
        ttl: TTLConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if gate not in ("gate", "always"):
            raise ConfigError(f"gate must be 'gate' or 'always', got {gate!r}")
        if ttl and ttl.get("sweep_interval_minutes"):
            raise ConfigError("HEINWStore runs no background sweep; leave sweep_interval_minutes unset and call sweep_ttl()")
        self.memory = memory
        self.gate = gate
        self.fields = fields
        self.ttl_config = ttl
        self._clock = clock

    # ----------------------------------------------------------------- batches
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations in order; results line up with ``ops``."""
        ops = list(ops)
        for op in ops:
            validate_op_namespace(op)  # ops handed to batch() skip BaseStore's label checks
        return [self._run(op) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """:meth:`batch` in a worker thread (the engine's calls are blocking)."""
        return await asyncio.to_thread(self.batch, list(ops))

    def _run(self, op: Op) -> Result:
        if isinstance(op, GetOp):
            return self._get(op)
        if isinstance(op, SearchOp):
            return self._search(op)
        if isinstance(op, ListNamespacesOp):
            return self._list_namespaces(op)
        if isinstance(op, PutOp):
            self._put(op)
            return None
        raise ValueError(f"Unknown operation type: {type(op).__name__}")

    # --------------------------------------------------------------------- get
    def _get(self, op: GetOp) -> Item | None:
        ns = to_hei_namespace(op.namespace)
        trace = self._find(ns, op.key)
        if trace is None:
            return None
        if self._expired(trace):
            self._drop(ns, trace)
            return None
        if op.refresh_ttl:
            trace = self._refresh(ns, trace)
        found = _item(trace, op.namespace)
        return Item(namespace=found.namespace, key=found.key, value=found.value, created_at=found.created_at,
                    updated_at=found.updated_at)

    def _find(self, ns: str, key: str) -> Trace | None:
        """The trace stored under ``key``, or a key-less trace whose id is ``key``."""
        trace = self.memory.get_by_key(key, namespace=ns)
        if trace is not None or len(key) > 64:
            return trace
        try:
            by_id = self.memory.get(key, namespace=ns)
        except (TraceNotFoundError, UnknownNamespaceError):
            return None
        return by_id if by_id.key is None else None

    # --------------------------------------------------------------------- put
    def _put(self, op: PutOp) -> None:
        ns = to_hei_namespace(op.namespace)
        if op.value is None:
            trace = self._find(ns, op.key)
            if trace is not None:
                self._drop(ns, trace)
            return
        value = dict(op.value)
        if RESERVED in value:
            raise InvalidEventError(f"item values may not contain the reserved field {RESERVED!r}")
        now = self._clock()
        existing = self.memory.get_by_key(op.key, namespace=ns)
        if existing is not None and self._expired(existing):
            self._drop(ns, existing)
            existing = None
        before = existing.metadata.get(RESERVED) if existing is not None else None
        info = {
            "created_at": before["created_at"] if isinstance(before, dict) else now,
            "updated_at": now,
            "ttl_min": op.ttl,
            "expires_at": None if op.ttl is None else now + 60.0 * op.ttl,
        }
        pinned = self.gate == "always" or value.get(PIN_FIELD) is True
        forced = pinned or existing is not None  # an update of an admitted memory is not re-gated
        event = MemoryEvent(
            text=self._text(value, op.index), key=op.key, metadata={**value, RESERVED: info}, pin=forced,
            ttl_s=None if op.ttl is None else 60.0 * op.ttl,
        )
        decision = self.memory.write(event, namespace=ns)
        if not decision.accepted:
            logger.debug("write gate rejected put %r in %r: %s (S=%.3f)", op.key, ns, decision.reason, decision.score)
        elif forced and not pinned and decision.trace_id:
            self.memory.unpin(decision.trace_id, namespace=ns)  # pin was only the engine's way to force the write

    def _text(self, value: dict[str, Any], index: Literal[False] | list[str] | None) -> str:
        """The text a value is keyed, recalled and packed by."""
        paths = index if isinstance(index, list) else self.fields
        if paths and any(p != "$" for p in paths):
            texts = [t for p in paths for t in (_value_text(value) if p == "$" else get_text_at_path(value, p))]
            text = "\n".join(t for t in texts if t.strip())
            if text:
                return text
        return _value_text(value)

    # ------------------------------------------------------------------ search
    def _search(self, op: SearchOp) -> list[SearchItem]:
        prefix = tuple(op.namespace_prefix)
        spaces = [(ns, labels) for ns in self.memory.namespaces()
                  if (labels := from_hei_namespace(ns)) is not None and labels[: len(prefix)] == prefix]
        if op.limit <= 0 or not spaces:
            return []
        where = _engine_where(op.filter)
        expired: list[tuple[str, Trace]] = []
        hits: list[tuple[str, Trace, SearchItem]] = []
        if op.query:
            k = max(1, min(self.memory.settings.limits.max_k, op.offset + op.limit))
            for ns, labels in spaces:
                for recalled in self.memory.recall(op.query, k, namespace=ns, where=where).traces:
                    if self._expired(recalled.trace):
                        expired.append((ns, recalled.trace))
                        continue
                    item = _item(recalled.trace, labels, score=recalled.score)
                    if _filter_matches(item.value, op.filter):
                        hits.append((ns, recalled.trace, item))
            hits.sort(key=lambda hit: -(hit[2].score or 0.0))
            page = hits[op.offset: op.offset + op.limit]
        else:
            page, skipped = [], 0
            for ns, labels in spaces:
                for trace in self._traces(ns, where):
                    if self._expired(trace):
                        expired.append((ns, trace))
                        continue
                    item = _item(trace, labels)
                    if not _filter_matches(item.value, op.filter):
                        continue
                    if skipped < op.offset:
                        skipped += 1
                        continue
                    page.append((ns, trace, item))
                    if len(page) == op.limit:
                        break
                if len(page) == op.limit:
                    break
        for ns, trace in expired:
            self._drop(ns, trace)
        if not op.refresh_ttl:
            return [item for _, _, item in page]
        return [_item(self._refresh(ns, trace), item.namespace, score=item.score) for ns, trace, item in page]

    def _traces(self, ns: str, where: dict[str, Any] | None) -> Iterator[Trace]:
        offset = 0
        while True:
            batch = self.memory.list_traces(namespace=ns, limit=_PAGE, offset=offset, where=where)
            yield from batch
            if len(batch) < _PAGE:
                return
            offset += _PAGE

    # --------------------------------------------------------- list_namespaces
    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        found: set[tuple[str, ...]] = set()
        for ns in self.memory.namespaces():
            labels = from_hei_namespace(ns)
            if labels is None or not all(_condition_matches(c, labels) for c in op.match_conditions or ()):
                continue
            if not self.memory.list_traces(namespace=ns, limit=1):
                continue  # every item deleted: LangGraph lists only namespaces that hold items
            found.add(labels if op.max_depth is None else labels[: op.max_depth])
        return sorted(found)[op.offset: op.offset + op.limit]

    # --------------------------------------------------------------------- TTL
    def sweep_ttl(self) -> int:
        """Delete every expired item in every namespace; returns how many were deleted."""
        gone = 0
        for ns in self.memory.namespaces():
            for trace in [t for t in self._traces(ns, None) if self._expired(t)]:
                gone += self._drop(ns, trace)
        return gone

    async def asweep_ttl(self) -> int:
        return await asyncio.to_thread(self.sweep_ttl)

    def _expired(self, trace: Trace) -> bool:
        info = trace.metadata.get(RESERVED)
        if isinstance(info, dict):
            expires = info.get("expires_at")
            return expires is not None and expires <= self._clock()
        return trace.expires_at is not None and not trace.pinned and trace.expires_at.timestamp() <= self._clock()

    def _refresh(self, ns: str, trace: Trace) -> Trace:
        """Slide the item's expiry to now + its TTL (a rewrite of the same trace)."""
        info = trace.metadata.get(RESERVED)
        if not isinstance(info, dict) or info.get("ttl_min") is None:
            return trace
        metadata = {**trace.metadata, RESERVED: {**info, "expires_at": self._clock() + 60.0 * info["ttl_min"]}}
        event = MemoryEvent(text=trace.text, slots=trace.slots, key=trace.key, metadata=metadata, source=trace.source,
                            timestamp=trace.created_at, pin=True)
        decision = self.memory.write(event, namespace=ns)
        if decision.trace_id is None:  # cannot happen for a pinned write; keep the old expiry if it does
            return trace
        if not trace.pinned:
            self.memory.unpin(decision.trace_id, namespace=ns)
        return trace.model_copy(update={"id": decision.trace_id, "metadata": metadata})

    def _drop(self, ns: str, trace: Trace) -> int:
        try:
            self.memory.delete(trace.id, namespace=ns)
        except TraceNotFoundError:  # deleted meanwhile by another caller
            return 0
        return 1


def _item(trace: Trace, labels: tuple[str, ...], *, score: float | None = None) -> SearchItem:
    """The LangGraph search item of a trace."""
    metadata = dict(trace.metadata)
    info = metadata.pop(RESERVED, None)
    if isinstance(info, dict):
        value, key = metadata, trace.key or trace.id
        created, updated = _utc(info["created_at"]), _utc(info["updated_at"])
    else:  # written by something other than the store
        value = {**metadata, **trace.slots, "text": trace.text}
        key, created, updated = trace.key or trace.id, trace.created_at, trace.created_at
    return SearchItem(namespace=labels, key=key, value=value, created_at=created, updated_at=updated, score=score)


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _value_text(value: Mapping[str, Any]) -> str:
    """Every string in the value, in order, one per line; the value as JSON when it holds none."""
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            if node.strip():
                texts.append(node)
        elif isinstance(node, Mapping):
            for child in node.values():
                walk(child)
        elif isinstance(node, (list, tuple)):
            for child in node:
                walk(child)

    walk(value)
    return "\n".join(texts) if texts else json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _engine_where(filter: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of a LangGraph filter the engine's ``where`` (top-level equality) can apply itself."""
    where = {k: v for k, v in (filter or {}).items() if isinstance(v, (str, int, float, bool))}
    return where or None


def _filter_matches(value: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    """LangGraph's filter semantics: equality, nested dicts, lists, and $eq/$ne/$gt/$gte/$lt/$lte."""
    return all(_compare(value.get(k), want) for k, want in (filter or {}).items())


def _compare(have: Any, want: Any) -> bool:
    if isinstance(want, Mapping):
        if any(k.startswith("$") for k in want):
            return all(_operator(have, op, operand) for op, operand in want.items())
        return isinstance(have, Mapping) and all(_compare(have.get(k), v) for k, v in want.items())
    if isinstance(want, (list, tuple)):
        return (isinstance(have, (list, tuple)) and len(have) == len(want)
                and all(_compare(h, w) for h, w in zip(have, want, strict=True)))
    return bool(have == want)


def _operator(have: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(have == operand)
    if op == "$ne":
        return bool(have != operand)
    if have is None:
        return False
    comparisons: dict[str, Callable[[float, float], bool]] = {
        "$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}
    if op not in comparisons:
        raise ValueError(f"Unsupported operator: {op}")
    return comparisons[op](float(have), float(operand))


def _condition_matches(condition: MatchCondition, labels: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(labels) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(labels, path, strict=False)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(labels), reversed(path), strict=False)
    else:
        raise ValueError(f"Unsupported match type: {condition.match_type}")
    return all(p == "*" or label == p for label, p in pairs)

"""Property-based checks over the public API: any input either works or raises InputError, and a
rejected call leaves the stored data exactly as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.errors import InputError
from hei_nw_plugin.memory import HEIMemory

scalars = st.one_of(st.text(max_size=40), st.integers(), st.floats(allow_nan=True), st.booleans(), st.none(),
                    st.lists(st.integers(), max_size=3))
events = st.one_of(
    st.text(max_size=200),
    st.dictionaries(st.sampled_from(["text", "slots", "pin", "reward", "key", "metadata", "ttl_s", "force", "bogus"]),
                    st.one_of(scalars, st.dictionaries(st.text(max_size=10), scalars, max_size=4)), max_size=6),
    scalars,
)


def _snapshot(db: Path) -> list[Any]:
    with sqlite3.connect(db) as c:
        return c.execute("select id, payload, pinned, expires_at from hei_traces order by seq").fetchall()


def _mem(tmp: Path) -> HEIMemory:
    return HEIMemory(HeiNwSettings.build(store={"data_dir": tmp}), embedder=HashingEmbedder(dim=64), persist_index=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=events, namespace=st.one_of(st.text(max_size=20), st.integers()))
def test_write_accepts_or_rejects_cleanly(tmp_path_factory: Any, event: Any, namespace: Any) -> None:
    tmp = tmp_path_factory.mktemp("p")
    mem = _mem(tmp)
    mem.write({"text": "Baseline fact about the brass lantern", "force": True}, namespace="base")
    before = _snapshot(tmp / "traces.db")
    try:
        d = mem.write(event, namespace=namespace)
    except InputError:
        assert _snapshot(tmp / "traces.db") == before
    else:
        assert d.namespace == namespace
    assert mem.verify().ok
    mem.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cue=events, k=st.one_of(st.integers(-5, 300), st.booleans(), st.text(max_size=3)),
       where=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), scalars, max_size=3)))
def test_recall_never_crashes_or_writes(tmp_path_factory: Any, cue: Any, k: Any, where: Any) -> None:
    tmp = tmp_path_factory.mktemp("r")
    mem = _mem(tmp)
    mem.write({"text": "Baseline fact about the brass lantern", "slots": {"who": "Ada"}, "force": True}, namespace="n")
    before = _snapshot(tmp / "traces.db")
    try:
        r = mem.recall(cue, k, namespace="n", where=where)
        assert len(r.traces) <= k
    except InputError:
        pass
    assert _snapshot(tmp / "traces.db") == before
    mem.close()

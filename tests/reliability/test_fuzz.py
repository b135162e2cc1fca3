"""Bad input (issue 8, part 4): CI-sized runs of the three fuzz suites, and one regression test per
defect the full-size run found (each reproduces the generated case that broke the property)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from hei_nw_plugin.errors import InputError
from hei_nw_plugin.memory import HEIMemory


# ------------------------------------------------------------ regressions: Python API
@pytest.mark.parametrize("call", [
    lambda m: m.recall("brass lantern", 3, namespace="n", where=("who",)),
    lambda m: m.recall("brass lantern", 3, namespace="n", where=[None, 1.0]),
    lambda m: m.recall("brass lantern", 3, namespace="n", where={1: "Ada"}),
    lambda m: m.recall("brass lantern", 3, namespace="n", min_similarity=(("",),)),
    lambda m: m.recall("brass lantern", 3, namespace="n", min_similarity=math.nan),
    lambda m: m.recall("brass lantern", 3, namespace="n", max_tokens="12"),
    lambda m: m.recall("brass lantern", 3, namespace="n", max_tokens=0),
    lambda m: m.list_traces(namespace="n", offset=({"a": 1.0},)),
    lambda m: m.list_traces(namespace="n", limit=[3]),
    lambda m: m.list_traces(namespace="n", limit=None, offset=None),
    lambda m: m.list_traces(namespace="n", limit=True),
    lambda m: m.list_traces(namespace="n", where=["who"]),
    lambda m: m.stats(namespace=({},)),
    lambda m: m.stats(namespace=[73]),
    lambda m: m.evict(namespace="n", now={"": None}),
    lambda m: m.evict(now=[]),
    lambda m: m.evict(now=math.inf),
], ids=["where-tuple", "where-list", "where-int-key", "min-sim-tuple", "min-sim-nan", "max-tokens-str", "max-tokens-0",
        "offset-tuple", "limit-list", "limit-none", "limit-bool", "list-where-list", "stats-ns-tuple", "stats-ns-list",
        "evict-now-dict", "evict-now-list", "evict-now-inf"])
def test_api_arguments_of_the_wrong_type_are_input_errors(mem: HEIMemory, call: Callable[[HEIMemory], Any]) -> None:
    """Found by the fuzz: these raised TypeError, AttributeError, numpy's UFuncTypeError or SQLAlchemy's
    StatementError from deep inside the engine instead of the caller's InputError."""
    mem.write({"text": "Ada keeps the brass lantern in the blue shed", "slots": {"who": "Ada"}, "force": True}, namespace="n")
    with pytest.raises(InputError):
        call(mem)
    assert mem.verify().ok

"""What the three fuzz suites share: the tally of cases and failures, the stored-data snapshot, the
hypothesis driver and the strategies for arbitrary values.

A suite does not let hypothesis stop at the first failing case: each case's body catches what the
system under test raises, records it and carries on, so one run counts every failing case and keeps
the first example of each distinct failure.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

# Recall counts are advisory (they steer eviction only) and are written off the request path by a
# background thread, so a successful recall may land them while a later, rejected call runs.
ADVISORY_COLUMNS = {"hei_traces": {"recall_count", "last_recalled_at"}}
MAX_EXAMPLES_KEPT = 40


@dataclass
class Failure:
    """One distinct broken property, with the first case that showed it."""

    kind: str = field(metadata={"help": "crash, traceback, server_error, schema, changed_on_reject, integrity, ..."})
    where: str = field(metadata={"help": "API method, CLI command or HTTP operation"})
    detail: str
    example: str
    count: int = 1


@dataclass
class SuiteResult:
    """Cases one suite ran and what came of them."""

    suite: str
    cases: int = 0
    accepted: int = 0
    rejected: int = 0
    failures: int = 0
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    distinct_failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Tally:
    """Counts cases, outcomes and failures of one suite."""

    def __init__(self, suite: str) -> None:
        self.result = SuiteResult(suite=suite)
        self._outcomes: Counter[str] = Counter()
        self._seen: dict[tuple[str, str, str], Failure] = {}

    def case(self, outcome: str, *, rejected: bool) -> None:
        self.result.cases += 1
        self._outcomes[outcome] += 1
        if rejected:
            self.result.rejected += 1
        else:
            self.result.accepted += 1

    def fail(self, kind: str, where: str, detail: str, example: Any) -> None:
        self.result.failures += 1
        sig = (kind, where, detail.splitlines()[0][:120] if detail else "")
        if sig in self._seen:
            self._seen[sig].count += 1
        elif len(self._seen) < MAX_EXAMPLES_KEPT:
            self._seen[sig] = Failure(kind, where, detail[:600], _short(example))

    def finish(self, seconds: float) -> SuiteResult:
        self.result.seconds = round(seconds, 2)
        self.result.outcomes = dict(sorted(self._outcomes.items()))
        self.result.distinct_failures = list(self._seen.values())
        return self.result


def _short(example: Any, limit: int = 500) -> str:
    text = example if isinstance(example, str) else repr(example)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def snapshot(db: Path, key_file: Path | None = None) -> dict[str, Any]:
    """Every stored row of a SQLite trace store (and the key file's bytes), for byte-for-byte comparison."""
    out: dict[str, Any] = {}
    if db.exists():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table' order by name")]
            for t in tables:
                cols = [r[1] for r in conn.execute(f"pragma table_info('{t}')")
                        if r[1] not in ADVISORY_COLUMNS.get(t, set())]
                rows = conn.execute(f"select {', '.join(repr(c) for c in cols)} from '{t}'").fetchall()
                out[t] = sorted(rows, key=repr)
    if key_file is not None and key_file.exists():
        out["<key file>"] = key_file.read_bytes()
    return out


def changed_tables(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Names of the tables (or the key file) that differ between two snapshots."""
    return sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))


def check_integrity(mem: Any, tally: Tally, where: str) -> None:
    """Count a failure when ``mem.verify()`` raises or finds problems."""
    try:
        report = mem.verify()
    except Exception as err:  # noqa: BLE001 - a verify that raises is a finding too
        tally.fail("integrity", where, f"verify raised {type(err).__name__}: {err}", "")
        return
    if not report.ok:
        tally.fail("integrity", where, f"verify found {len(report.problems)} problems: {report.problems[:3]}", "")


def drive(body: Callable[[Any], None], strategy: st.SearchStrategy[Any], examples: int, seed: int) -> None:
    """Run ``body`` on up to ``examples`` generated values (generation only: no shrinking, no example database)."""
    if examples <= 0:
        return

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(strategy)
    def run(value: Any) -> None:
        body(value)

    try:
        run()
    except Unsatisfiable:  # an operation with nothing to vary (e.g. no parameters to negate)
        pass


def known(pool: list[str]) -> st.SearchStrategy[str]:
    """One of ``pool``'s values (ids, namespaces) as the pool is when drawn; "t" while it is empty."""
    # An index, not sampled_from(pool): the pool grows, and hypothesis needs the same draws to mean the same shape.
    return st.integers(0, 2**16).map(lambda i: pool[i % len(pool)] if pool else "t")


NASTY_TEXT = ["", " ", "\n", "\x00", "a\x00b", "\ud800", "\u202e\u0301", "-", "--", "-h", "=", "a=b", "k=", "=v",
              "🧠" * 3, "x" * 300, "x" * 17000, "null", "None", "0", "-1", "1e309", "nan", "' OR 1=1 --", "../../etc/passwd",
              "default", "a/b", "\t\r", "\x7f", "%00", "{}", "[]"]

texts = st.one_of(st.text(max_size=60), st.sampled_from(NASTY_TEXT), st.text(st.characters(exclude_categories=()), max_size=20))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 300),
                    st.floats(allow_nan=True, allow_infinity=True), texts, st.binary(max_size=8))
anything = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                        max_leaves=6)

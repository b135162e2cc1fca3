"""What one check's JSON says, as the reliability report shows it: findings, tables, images, and the cells.

:mod:`.summary` builds the report from these; :mod:`.summary_faults` holds the sections of the
PostgreSQL-fault, disk-full, concurrency and tenant checks. A cell whose figure the JSON does not
hold reads '–', never a filled-in value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    """A PNG shown in the report: drawn here (written to ``figures/<slug>.png``) or an existing file."""

    title: str
    slug: str
    png: bytes
    existing: Path | None = None


@dataclass(frozen=True)
class Findings:
    """What one check's JSON says.

    ``status`` is what the summary table shows: 'passed', 'FAILED', 'target met',
    'target missed', 'measured', 'not run' or 'unreadable'.
    """

    status: str
    headline: str
    tables: list[Table] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    """One check's part of the report: its findings, the file they came from and the command that writes it."""

    check: str
    title: str
    source: str
    command: str
    findings: Findings


# ---------------------------------------------------------------------------
# Cell formatting: '–' for a figure the JSON does not hold
# ---------------------------------------------------------------------------


def at(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def fmt_int(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else "–"


def fmt_num(v: Any, digits: int = 1) -> str:
    return f"{v:,.{digits}f}" if isinstance(v, int | float) and not isinstance(v, bool) else "–"


def fmt_rate(v: Any) -> str:
    return fmt_num(v, 3)


def fmt_ints(d: dict[str, Any], *keys: str) -> str:
    return " / ".join(fmt_int(d.get(k)) for k in keys)


def fmt_yes(v: Any) -> str:
    return "–" if v is None else ("yes" if v else "no")


def status_word(ok: bool) -> str:
    return "passed" if ok else "FAILED"


def kv_table(caption: str, rows: list[tuple[str, str]]) -> Table:
    return Table(caption, ["figure", "value"], [[k, v] for k, v in rows])

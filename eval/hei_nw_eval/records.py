"""Typed result records: every evaluation run writes one JSON file.

A :class:`RunRecord` holds what is needed to reproduce and to plot a run:
the task (scenario + condition, or dataset), the mode (B0…B3, long-context,
rag, or a retrieval-check configuration), model id, seeds, git commit, the
full config, metrics with confidence intervals, paired comparisons between
modes, and curves (time lag, calibration, interference). Reports are built
from these files alone (:mod:`hei_nw_eval.report`).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hei_nw_eval.metrics import Estimate, LagBin

SCHEMA_VERSION = 1


class MetricValue(BaseModel):
    """A metric with its interval; ``low``/``high`` are None when no CI was computed."""

    model_config = ConfigDict(extra="forbid")

    value: float | None = Field(description="Point estimate (None when undefined, e.g. precision with no writes).")
    low: float | None = None
    high: float | None = None
    n: int | None = Field(None, description="Number of queries / items behind the value.")
    unit: str | None = Field(None, description="'ms', 'tokens', 'MB', 'per 1k tokens' …; None for rates in [0, 1].")

    @field_validator("value", "low", "high")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("metric values must be finite (use None for undefined)")
        return v

    @classmethod
    def of(cls, estimate: Estimate, unit: str | None = None) -> MetricValue:
        return cls(value=estimate.value, low=estimate.low, high=estimate.high, n=estimate.n, unit=unit)


class Comparison(BaseModel):
    """A paired difference ``metric(mode) − metric(baseline)`` over the same items."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    mode: str
    baseline: str
    diff: MetricValue
    excludes_zero: bool = Field(description="True when the 95% CI lies strictly above or below 0.")
    seed: int = Field(description="Seed of the paired bootstrap.")


class CurvePoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: float
    y: float | None
    low: float | None = None
    high: float | None = None
    n: int | None = None
    label: str | None = Field(None, description="Tick label when x is a bin (e.g. '16-63').")


class Curve(BaseModel):
    """A series to plot: accuracy vs time lag, reliability diagram, precision vs store size…"""

    model_config = ConfigDict(extra="forbid")

    x_label: str
    y_label: str
    points: list[CurvePoint]
    log_x: bool = False

    @classmethod
    def from_lag_bins(cls, bins: list[LagBin], y_label: str) -> Curve:
        points = []
        for b in bins:
            if math.isinf(b.high_lag):
                label = f"{b.low_lag:g}+"
            elif b.high_lag - 1 <= b.low_lag:
                label = f"{b.low_lag:g}"
            else:
                label = f"{b.low_lag:g}-{b.high_lag - 1:g}"
            est = b.estimate
            points.append(
                CurvePoint(
                    x=b.low_lag,
                    y=None if est is None else est.value,
                    low=None if est is None else est.low,
                    high=None if est is None else est.high,
                    n=0 if est is None else est.n,
                    label=label,
                )
            )
        return cls(x_label="time lag (episodes)", y_label=y_label, points=points)


class RunRecord(BaseModel):
    """One evaluation run, as written to ``<folder>/<run_id>.json``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    run_id: str = Field(description="File stem; letters, digits, '-', '_' and '.' only.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    task: str = Field(description="'scenario:A', 'babi:qa1', 'locomo', 'retrieval:A' …")
    condition: str | None = Field(None, description="Scenario condition or dataset split.")
    mode: str = Field(description="'B0'…'B3', 'long-context', 'rag', or a retrieval-check configuration.")
    model_id: str | None = None
    seeds: dict[str, int] = Field(default_factory=dict, description="Every seed used: data, model, bootstrap…")
    git_commit: str | None = Field(None, description="HEAD of the repository that ran it; '+dirty' when modified.")
    config: dict[str, Any] = Field(default_factory=dict, description="Settings and options of the run.")
    n_items: int = Field(ge=0)
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    breakdown: dict[str, dict[str, MetricValue]] = Field(
        default_factory=dict, description="Metrics per group (LoCoMo category, lag bin …): group -> name -> value."
    )
    comparisons: list[Comparison] = Field(default_factory=list)
    curves: dict[str, Curve] = Field(default_factory=dict)
    notes: str = ""

    @field_validator("run_id")
    @classmethod
    def _safe_id(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", v):
            raise ValueError("run_id must be 1-200 characters of letters, digits, '.', '_' or '-'")
        return v


def write_record(record: RunRecord, folder: str | Path) -> Path:
    """Write ``record`` to ``<folder>/<run_id>.json`` (folder created) and return the path.

    Written to a temporary file and renamed, so runs writing into one folder at once
    never read each other's half-written records.
    """
    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{record.run_id}.json"
    tmp = out_dir / f".{record.run_id}.{os.getpid()}.tmp"
    tmp.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_records(folder: str | Path) -> list[RunRecord]:
    """Every ``*.json`` run record in ``folder``, sorted by task, condition, mode, run id.

    Files that are not run records raise ValueError naming the file.
    """
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            records.append(RunRecord.model_validate_json(path.read_text(encoding="utf-8")))
        except ValueError as err:
            raise ValueError(f"{path} is not a run record: {err}") from err
    return sorted(records, key=lambda r: (r.task, r.condition or "", r.mode, r.run_id))


def git_commit(repo: str | Path | None = None) -> str | None:
    """HEAD commit of ``repo`` (default: this checkout), with '+dirty' if tracked files changed.

    None when git or the repository is unavailable (an installed wheel).
    """
    cwd = Path(repo) if repo is not None else Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head

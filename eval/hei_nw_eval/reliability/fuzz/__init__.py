"""``hei-nw reliability fuzz``: bad input through every door (issue 8, part 4).

Four hypothesis-driven suites, each with its own share of the case budget:

* ``python_api`` (:mod:`.engine_api`): HEIMemory's public methods with arbitrary arguments;
* ``cli`` (:mod:`.cli_argv`): ``hei-nw`` run in-process on generated argv;
* ``http_api`` (:mod:`.http_api`): schemathesis cases from the server's published OpenAPI schema,
  sent in-process to the FastAPI app (with a fake generation backend on loopback);
* ``mcp`` (:mod:`.mcp_tools`): MCP tool calls and resource reads through the SDK's ClientSession.

The properties are the same at every door: bad input is refused as the caller's mistake (InputError,
exit status 2 with one error line, HTTP 4xx, an MCP tool error), never a crash, a traceback or a 5xx;
a refused request changes no stored byte; the store still verifies. Every case that breaks one is counted, and the first
example of each distinct failure is kept in the JSON report.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hei_nw_eval.reliability.fuzz.common import SuiteResult

SUITES = ("http_api", "cli", "mcp", "python_api")  # run order: the Python suite, last, makes up any shortfall
# Shares of the budget. An HTTP case costs ~20x a Python one (schemathesis generation, a request, two
# snapshots), and operations with nothing to vary (GET /healthz) yield one case each, so the HTTP suite
# may fall short of its share; the Python API suite then runs the rest so the total reaches ``cases``.
SHARES = {"http_api": 0.25, "cli": 0.15, "mcp": 0.15, "python_api": 0.45}


@dataclass
class FuzzReport:
    """What ``hei-nw reliability fuzz`` writes to JSON."""

    cases_requested: int
    cases_total: int
    failures_total: int
    ok: bool
    seed: int
    suites: list[SuiteResult]
    seconds: float
    started_at: str
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(cases: int = 10_000, *, out: Path | None = None, seed: int = 0, suites: tuple[str, ...] = SUITES) -> FuzzReport:
    """Run the chosen suites on ``cases`` generated cases in all (split by :data:`SHARES`); write JSON to ``out``."""
    unknown = set(suites) - set(SUITES)
    if unknown:
        raise ValueError(f"unknown fuzz suites {sorted(unknown)}; choose from {SUITES}")
    total_share = sum(SHARES[s] for s in suites)
    budget = {s: max(1, round(cases * SHARES[s] / total_share)) for s in suites}
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    results: list[SuiteResult] = []
    for name in [s for s in SUITES if s in suites]:
        if name == "python_api":
            from hei_nw_eval.reliability.fuzz.engine_api import run_engine_api

            results.append(run_engine_api(max(budget[name], cases - sum(r.cases for r in results)), seed=seed))
        elif name == "cli":
            from hei_nw_eval.reliability.fuzz.cli_argv import run_cli

            results.append(run_cli(budget[name], seed=seed))
        elif name == "mcp":
            from hei_nw_eval.reliability.fuzz.mcp_tools import run_mcp

            results.append(run_mcp(budget[name], seed=seed))
        else:
            from hei_nw_eval.reliability.fuzz.http_api import run_http

            results.append(run_http(budget[name], seed=seed))
    total = sum(r.cases for r in results)
    failures = sum(r.failures for r in results)
    report = FuzzReport(cases_requested=cases, cases_total=total, failures_total=failures,
                        ok=failures == 0 and total >= cases, seed=seed, suites=results,
                        seconds=round(time.perf_counter() - t0, 1), started_at=started, versions=_versions())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), indent=2, default=str, ensure_ascii=True) + "\n")
    return report


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for pkg in ("hypothesis", "schemathesis", "mcp", "hei-nw"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def register(subparsers: Any) -> None:
    """Add ``fuzz`` under ``hei-nw reliability``."""
    p = subparsers.add_parser("fuzz", help="property-based bad-input tests of the Python API, the CLI, the HTTP API and the MCP tools")
    p.add_argument("--cases", type=int, default=10_000, help="generated cases in all (split across the suites)")
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed (the same seed replays the same cases)")
    p.add_argument("--suite", action="append", choices=SUITES, help="run only this suite (repeatable; default all)")
    p.add_argument("--out", default="reports/reliability/fuzz.json", help="JSON report path")
    p.set_defaults(func=_cmd)


def _cmd(args: Any) -> None:
    report = run(args.cases, out=Path(args.out), seed=args.seed, suites=tuple(args.suite or SUITES))
    for r in report.suites:
        print(f"{r.suite:<11} cases={r.cases:<6} accepted={r.accepted:<6} rejected={r.rejected:<6} "
              f"failures={r.failures:<5} {r.seconds:.0f}s")
    print(f"total       cases={report.cases_total} failures={report.failures_total} -> {args.out}")
    if not report.ok:
        raise SystemExit(1)

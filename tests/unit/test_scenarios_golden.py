"""Scenario generators: pinned golden items plus the properties every item must keep.

The golden hashes pin whole items (episodes, timestamps, labels, question). A
deliberate generator change must update them here, in the same commit, and say
so: published numbers were computed on the old items.
"""

from __future__ import annotations

import hashlib
from itertools import pairwise

import pytest
from hei_nw_eval.items import Episode, Item, Split
from hei_nw_eval.scenarios import conditions, eval_vocabulary, generate, load_split, save_split
from hei_nw_eval.scenarios.filler import filler_templates

GOLDEN = [
    ("A", "full_cue", 0, "Where did Zenobia drop the wicker basket on Saturday morning?", "north pier", 0, 7,
     "Zenobia dropped the wicker basket at the north pier on Saturday morning.", "153750159f81e87e"),
    ("A", "partial_cue", 3, "When did someone unpack the mahogany stool at the ferry terminal?", "Sunday afternoon", 32, 41,
     "Euphemia unpacked the mahogany stool on Sunday afternoon, at the ferry terminal.", "c3e9eb4c300872dc"),
    ("B", "multi_update", 1, "What is Rafferty's locker number now?", "130", 2, 23,
     "Update: Rafferty's locker is now 130.", "3431a33bf0ce2715"),
    ("C", "lag_long", 0, "Which seat do I want on flights?", "bulkhead seat", 64, 70,
     "When you book my flights, get me the bulkhead seat.", "ae069043cb050e4b"),
    ("D", "1k", 2, "Who photographed the ebony cane at the spice bazaar on Saturday afternoon?", "Imelda", 807, 0,
     "On Saturday afternoon, Imelda photographed the ebony cane at the spice bazaar.", "2ed5acf903716a82"),
    ("E", "turns_100", 0, "What did Ambrose hide on Friday evening?", "pewter tankard", 7, 100,
     "Ludmila: Did I tell you? At the weaving room on Friday evening, Ambrose hid the pewter tankard.", "64a33a8bf2afb9dd"),
]


def _episodes(split: Split, item: Item) -> dict[str, Episode]:
    return {e.id: e for e in (split.shared_episodes or item.episodes)}


@pytest.mark.parametrize("scenario,condition,index,cue,answer,lag,n_episodes,evidence_text,digest", GOLDEN)
def test_golden_items(scenario: str, condition: str, index: int, cue: str, answer: str, lag: int,
                      n_episodes: int, evidence_text: str, digest: str) -> None:
    split = generate(scenario, index + 1, seed=0, condition=condition)
    item = split.items[index]
    assert item.question.cue == cue
    assert item.question.answer == answer
    assert item.time_lag == lag
    assert len(item.episodes) == n_episodes
    assert _episodes(split, item)[item.question.evidence[0]].text == evidence_text
    assert hashlib.sha256(item.model_dump_json().encode()).hexdigest()[:16] == digest


@pytest.mark.parametrize("scenario", list("ABCE"))
def test_items_do_not_depend_on_n_and_are_reproducible(scenario: str) -> None:
    small = generate(scenario, 3, seed=5)
    large = generate(scenario, 6, seed=5)
    assert small.items == large.items[:3]
    assert generate(scenario, 3, seed=6).items != small.items


@pytest.mark.parametrize("scenario", list("ABCDE"))
def test_every_condition_emits_500_items(scenario: str) -> None:
    # the plan requires >= 500 items per condition on request; the cheapest condition of each is checked
    cond = conditions(scenario)[0]
    split = generate(scenario, 500, seed=1, condition=cond)
    assert len(split.items) == 500
    assert len({it.question.id for it in split.items}) == 500


def _check_item(split: Split, item: Item) -> None:
    q = item.question
    eps = _episodes(split, item)
    stream = split.shared_episodes or item.episodes
    assert q.evidence and all(e in eps for e in q.evidence)
    evidence = eps[q.evidence[-1]]
    assert evidence.should_remember is True and evidence.role in ("fact", "update", "context")
    assert q.answer_slot is not None and evidence.slots[q.answer_slot] == q.answer
    assert q.answer.lower() in evidence.text.lower()
    assert 1 <= len(q.answer.split()) <= 2
    # the cue names only true slots of the evidence, and no other episode matches every one of them
    assert all(evidence.slots.get(k) == v for k, v in q.cue_slots.items())
    if split.scenario != "B":  # in B the superseded statements share the cue by design
        same_cue = [e for e in stream if e.slots and all(e.slots.get(k) == v for k, v in q.cue_slots.items())]
        assert [e.id for e in same_cue] == [evidence.id]
    # confusers share all but at most one cue slot; outside D's near-twins they also answer differently
    for cid in q.confusers:
        c = eps[cid]
        shared = sum(c.slots.get(k) == v for k, v in q.cue_slots.items())
        assert shared >= len(q.cue_slots) - 1
        if split.scenario != "D":
            assert c.slots[q.answer_slot] != q.answer
    # time lag counts the episodes written after the evidence
    position = [e.id for e in stream].index(evidence.id)
    assert item.time_lag == len(stream) - 1 - position
    # labels: filler is never to be remembered, facts always
    for e in stream:
        assert e.should_remember is (e.role != "filler")
    times = [e.timestamp for e in stream]
    assert all(a is not None and b is not None and a < b for a, b in pairwise(times))


@pytest.mark.parametrize("scenario", list("ABCDE"))
def test_item_invariants_hold_for_every_condition(scenario: str) -> None:
    for cond in conditions(scenario):
        n = 4 if scenario in "DE" else 25
        if scenario == "D" and cond != "1k":
            continue  # 10k/100k stores are too slow for a unit test; same code path
        if scenario == "E" and cond == "turns_1600":
            continue
        split = generate(scenario, n, seed=3, condition=cond)
        for item in split.items:
            _check_item(split, item)


def test_hard_negatives_and_updates_are_present() -> None:
    a = generate("A", 20, seed=0).items
    assert all(2 <= len(it.question.confusers) <= 4 for it in a)
    b = generate("B", 20, seed=0, condition="multi_update").items
    for it in b:
        chain = [e for e in it.episodes if e.key == it.episode(it.question.evidence[0]).key]
        assert [e.role for e in chain][-1] == "update" and len(chain) >= 3
        assert chain[-1].id == it.question.evidence[0]
        assert len({e.slots["value"] for e in chain}) == len(chain)


def test_lags_are_balanced_and_configurable() -> None:
    lags = [it.time_lag for it in generate("A", 10, seed=0).items]
    assert lags == [0, 2, 8, 32, 128] * 2
    assert {it.time_lag for it in generate("C", 4, seed=0, lags=(7,)).items} == {7}


def test_filler_is_realistic_chitchat() -> None:
    items = generate("C", 10, seed=0, condition="lag_long").items
    filler = [e.text for it in items for e in it.episodes if e.role == "filler"]
    assert len(filler) > 500 and len(set(filler)) > 100
    assert any(t.startswith(("Hey", "Morning", "Hi")) for t in filler)
    assert any(t in ("Got it.", "Sounds good.", "Thanks!") or t.startswith("Thanks") for t in filler)
    assert len(filler_templates()) >= 60


def test_eval_vocabulary_covers_every_slot_value() -> None:
    vocab = eval_vocabulary()
    for scenario in "ABCDE":
        split = generate(scenario, 5, seed=2)
        for e in split.shared_episodes + [e for it in split.items for e in it.episodes]:
            for key, value in e.slots.items():
                if key not in ("attribute", "category") and value != "user":
                    assert value.lower() in vocab, (scenario, key, value)
        for it in split.items:
            assert it.one_shot.answer.lower() in vocab
            assert it.one_shot.answer != it.question.answer


def test_one_shot_never_names_an_item_entity() -> None:
    from hei_nw_eval.scenarios.vocab import CITIES, OBJECTS, PEOPLE, PLACES, PREFERENCE_VALUES, TEAMS

    entities = {s.lower() for s in (*PEOPLE, *OBJECTS, *PLACES, *CITIES, *TEAMS)}
    entities |= {v.lower() for values in PREFERENCE_VALUES.values() for v in values}
    for scenario in "ABCDE":
        shot = generate(scenario, 1).items[0].one_shot
        text = f" {shot.context} {shot.question} {shot.answer} ".lower().replace(".", " ").replace("?", " ")
        assert not [w for w in entities if f" {w} " in text], scenario


def test_split_round_trips_through_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    split = generate("D", 3, seed=0)
    assert load_split(save_split(split, tmp_path / "d.json")) == split


def test_unknown_scenario_or_condition_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        generate("Z", 1)
    with pytest.raises(ValueError, match="condition"):
        generate("A", 1, condition="nope")

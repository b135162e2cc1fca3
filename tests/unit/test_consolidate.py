"""Consolidation with a tiny random Llama: versions, lineage, rollback, deletion, drift guard, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import load_file
from sqlalchemy import select
from tiny_lm import tiny_model, tiny_tokenizer

import hei_nw_plugin.consolidate as consolidate_mod
from hei_nw_plugin.consolidate import ConsolidationConfig, ConsolidationWorker
from hei_nw_plugin.consolidation_rows import base_form, build_rows, slot_questions
from hei_nw_plugin.drift import BaseTask, DriftGuard, DriftScore
from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.store.schema import provenance
from hei_nw_plugin.wrapper import HeiNwForCausalLM

STORIES = [
    {"who": "Ada", "action": "dropped", "what": "oak lantern", "where": "weaving room", "when": "Sunday evening"},
    {"who": "Bram", "action": "sold", "what": "tin whistle", "where": "fish market", "when": "Friday morning"},
    {"who": "Cleo", "action": "measured", "what": "birch canoe", "where": "seed vault", "when": "Monday noon"},
    {"who": "Dov", "action": "buried", "what": "iron key", "where": "rose garden", "when": "Tuesday dawn"},
]
CFG = ConsolidationConfig(replay_size=2, rehearse=8, max_steps=4, batch_size=4, lr=5e-3, lora_r=4, lora_alpha=8,
                          drift_check=False, checkpoint_every=100, anchors=0)


def _text(s: dict[str, str]) -> str:
    return f"{s['who']} {s['action']} the {s['what']} at the {s['where']} on {s['when']}."


def _factory() -> tuple[Any, Any]:
    return tiny_model(seed=0), tiny_tokenizer()


@pytest.fixture
def filled(mem: HEIMemory) -> tuple[HEIMemory, list[str]]:
    ids = [mem.write({"text": _text(s), "slots": s, "force": True}, namespace="u").trace_id for s in STORIES]
    return mem, [i for i in ids if i]


def _worker(mem: HEIMemory, out: Path, cfg: ConsolidationConfig = CFG, **kw: Any) -> ConsolidationWorker:
    torch.set_num_threads(1)
    return ConsolidationWorker(mem, _factory, out_dir=out, namespaces=["u"], config=cfg, one_shot=None,
                               progress=False, **kw)


def _adapter(folder: Path) -> dict[str, Any]:
    return load_file(str(folder / "adapter_model.safetensors"))


# ---------------------------------------------------------------------- rows


def test_base_form_of_regular_and_irregular_verbs() -> None:
    assert [base_form(v) for v in ("dropped", "measured", "buried", "sold", "weighed", "mended", "painted")] == \
        ["drop", "measure", "bury", "sell", "weigh", "mend", "paint"]


def test_slot_questions_ask_each_slot_from_the_others() -> None:
    qs = {slot: (q, a) for slot, q, a in slot_questions(STORIES[0])}
    assert qs["where"] == ("Where did Ada drop the oak lantern on Sunday evening?", "weaving room")
    assert qs["who"] == ("Who dropped the oak lantern at the weaving room on Sunday evening?", "Ada")
    assert set(qs) == {"who", "what", "where", "when"}
    generic = slot_questions({"city": "Oslo", "team": "blue"})
    assert ("city", "What is the city of the event with team blue?", "Oslo") in generic
    assert slot_questions({"only": "one"}) == []


def test_rows_hold_text_and_answers(filled: tuple[HEIMemory, list[str]]) -> None:
    mem, ids = filled
    traces = [mem.get(i, namespace="u") for i in ids[:2]]
    rows = build_rows(traces + traces, one_shot=None)
    assert [r.kind for r in rows] == ["lm", "qa", "qa", "qa", "qa"] * 2  # duplicates dropped
    assert rows[0].text == _text(STORIES[0])
    assert {r.answer for r in rows if r.trace_id == ids[0] and r.kind == "qa"} == {
        "Ada", "oak lantern", "weaving room", "Sunday evening"}


# ---------------------------------------------------------------------- worker


def test_step_writes_version_lineage_provenance_and_replay_counts(filled: tuple[HEIMemory, list[str]], tmp_path: Path) -> None:
    mem, _ = filled
    w = _worker(mem, tmp_path / "c")
    r = w.step()
    assert r.status == "accepted" and r.version == "v0001" and len(r.trace_ids) == 2 and r.steps == 4
    assert w.active == tmp_path / "c" / "v0001"
    lin = json.loads((tmp_path / "c" / "v0001" / "lineage.json").read_text())
    assert sorted(t for _, t in lin["traces"]) == sorted(r.trace_ids)
    assert lin["base_model"]["weights_sha256"] == w.base_hash and lin["config"]["replay_size"] == 2
    assert (tmp_path / "c" / "v0001" / "adapter_config.json").is_file()
    with mem.store.engine.connect() as conn:
        events = [json.loads(row.record) for row in conn.execute(
            select(provenance.c.record).where(provenance.c.event == "consolidation"))]
    assert len(events) == 1 and sorted(events[0]["trace_ids"]) == sorted(r.trace_ids)
    assert mem.verify().ok  # the lineage is inside the signed hash chain
    counts = {row.trace_seq: row.replay_count for row in mem.store.replay_rows("u")}
    assert sorted(counts.values()) == [0, 0, 1, 1]


def test_later_step_starts_from_previous_and_rehearses_it(filled: tuple[HEIMemory, list[str]], tmp_path: Path) -> None:
    mem, _ = filled
    w = _worker(mem, tmp_path / "c")
    first = w.step()
    second = w.step()
    assert second.version == "v0002" and w.lineage("v0002")["parent"] == "v0001"
    assert set(second.rehearsed_ids) == set(first.trace_ids)
    assert not set(second.trace_ids) & set(first.trace_ids)  # fresh traces first: every trace gets its turn


def test_rollback_restores_outputs_exactly(filled: tuple[HEIMemory, list[str]], tmp_path: Path) -> None:
    mem, _ = filled
    w = _worker(mem, tmp_path / "c")
    w.step()
    tok = tiny_tokenizer()
    ids = tok("Where did Ada drop the oak lantern?", return_tensors="pt")["input_ids"]

    def logits(folder: Path) -> Any:
        lm = HeiNwForCausalLM(tiny_model(seed=0), tok, mode="B0")
        lm.load_consolidated(folder)
        lm.mode = "B3"
        with lm._loras(["consolidated"]), torch.no_grad():
            return lm.model(input_ids=ids).logits

    before = logits(w.active)  # type: ignore[arg-type]
    w.step()
    assert w.active == tmp_path / "c" / "v0002"
    assert not torch.equal(before, logits(w.active))  # type: ignore[arg-type]
    assert w.rollback() == "v0001"
    assert torch.equal(before, logits(w.active))  # type: ignore[arg-type]
    assert w.rollback() is None and w.active is None
    assert w.status()["rollbacks"][0] == {**w.status()["rollbacks"][0], "from": "v0002", "to": "v0001"}


def test_deleted_trace_never_appears_in_later_training_rows(filled: tuple[HEIMemory, list[str]], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    mem, ids = filled
    seen: list[list[str]] = []
    real = consolidate_mod.build_rows

    def spy(traces: Any, **kw: Any) -> Any:
        rows = real(traces, **kw)
        seen.append([r.trace_id for r in rows])
        return rows

    monkeypatch.setattr(consolidate_mod, "build_rows", spy)
    w = _worker(mem, tmp_path / "c", CFG.model_copy(update={"replay_size": 4}))
    first = w.step()
    assert set(first.trace_ids) == set(ids)
    gone = ids[1]
    mem.delete(gone, namespace="u")
    assert w.status()["holds_deleted"] == ["v0001"]
    for fresh in (False, True):
        w.step(fresh=fresh)  # rehearsal of v0001 (continual) and a rebuild from the base (fresh)
    assert len(seen) == 3 and gone in seen[0]
    assert all(gone not in s for s in seen[1:]) and all(seen[1:])
    for v in ("v0002", "v0003"):
        lin = w.lineage(v)
        assert gone not in {t for _, t in lin["traces"] + lin["rehearsed"]}


class _ScriptedGuard(DriftGuard):
    """Scores from a script: the base model first, then each candidate."""

    def __init__(self, correct: list[int]) -> None:
        super().__init__([BaseTask("q", ["a"])] * 10, max_drop=1)
        self.script = list(correct)

    def score(self, answer: Any) -> DriftScore:
        return DriftScore(correct=self.script.pop(0), n=10, seconds=0.0)


def test_drift_guard_rejects_and_keeps_previous_active(filled: tuple[HEIMemory, list[str]], tmp_path: Path) -> None:
    mem, _ = filled
    cfg = CFG.model_copy(update={"drift_check": True})
    w = _worker(mem, tmp_path / "c", cfg, drift=_ScriptedGuard([10, 9, 8]))
    ok = w.step()  # 10 -> 9: one question lost, allowed
    assert ok.status == "accepted" and ok.drift["change_questions"] == -1  # type: ignore[index]
    bad = w.step()  # 10 -> 8: rejected
    assert bad.status == "rejected" and w.active == tmp_path / "c" / "v0001"
    assert w.status()["versions"][1]["status"] == "rejected"
    counts = sorted(r.replay_count for r in mem.store.replay_rows("u"))
    assert counts == [0, 0, 1, 1]  # a rejected version replays nothing


def test_drift_judge_threshold_is_in_questions() -> None:
    g = DriftGuard([BaseTask("q", ["a"])] * 50, max_drop=1)
    ref = DriftScore(correct=50, n=50, seconds=0)
    assert g.judge(ref, DriftScore(correct=49, n=50, seconds=0)).accepted
    assert not g.judge(ref, DriftScore(correct=48, n=50, seconds=0)).accepted
    assert g.judge(ref, DriftScore(correct=50, n=50, seconds=0)).to_dict()["change_em"] == 0.0


def test_interrupted_step_resumes_to_the_same_adapter(filled: tuple[HEIMemory, list[str]], tmp_path: Path) -> None:
    mem, _ = filled
    straight = _worker(mem, tmp_path / "a").step()
    # A second memory with the same traces, so the replay queue starts equal.
    mem2 = HEIMemory(mem.settings.model_copy(update={"store": mem.settings.store.model_copy(
        update={"data_dir": tmp_path / "m2"})}), embedder=mem.embedder)
    for s in STORIES:
        mem2.write({"text": _text(s), "slots": s, "force": True}, namespace="u")
    w = _worker(mem2, tmp_path / "b", CFG.model_copy(update={"max_seconds": 1e-9}))
    cut = w.step()
    assert cut.status == "interrupted" and cut.steps == 1 and w.status()["checkpoint"]
    w.config = CFG
    done = w.step()
    assert done.status == "accepted" and done.version == "v0001" and not w.status()["checkpoint"]
    assert [t for t in done.trace_ids] != [] and len(done.trace_ids) == len(straight.trace_ids)
    a, b = _adapter(tmp_path / "a" / "v0001"), _adapter(tmp_path / "b" / "v0001")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    mem2.close()


def test_wrapper_swaps_and_unloads_consolidated_versions(filled: tuple[HEIMemory, list[str]], tmp_path: Path) -> None:
    mem, _ = filled
    w = _worker(mem, tmp_path / "c")
    w.step()
    w.step()
    tok = tiny_tokenizer()
    lm = HeiNwForCausalLM(tiny_model(seed=0), tok, mode="B0")
    lm.load_consolidated(tmp_path / "c" / "v0001")
    lm.mode = "B3"
    first = lm.generate_answer("Where?", one_shot=None, max_new_tokens=4).raw
    lm.load_consolidated(tmp_path / "c" / "v0002")  # replaces v0001 under the same name
    lm.load_consolidated(tmp_path / "c" / "v0001")
    assert lm.generate_answer("Where?", one_shot=None, max_new_tokens=4).raw == first
    lm.unload_consolidated()
    assert lm.mode == "B0"
    with pytest.raises(Exception, match="consolidated"):
        lm.mode = "B3"


def test_anchor_rows_rehearse_reference_answers_outside_the_drift_set(filled: tuple[HEIMemory, list[str]], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mem, _ = filled
    seen: list[Any] = []
    real = consolidate_mod.anchor_rows
    monkeypatch.setattr(consolidate_mod, "anchor_rows", lambda pairs, **kw: seen.append(pairs) or real(pairs, **kw))
    guard = DriftGuard([BaseTask("What is the capital of France?", ["Paris"])], max_drop=1)  # the first candidate
    w = _worker(mem, tmp_path / "c", CFG.model_copy(update={"anchors": 3}), drift=guard)
    w.step()
    w.step()
    assert seen[0] == [("What is the capital of Italy?", "Rome"), ("What is the capital of Germany?", "Berlin"),
                       ("What is the capital of Spain?", "Madrid")]  # drift set held out, reference answers
    assert seen[1] == seen[0]
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
from hei_nw_plugin.drift import BaseTask, DriftGuard, DriftScore, ProbeItem, general_prompts, held_texts, load_base_tasks, \
    normalize, probe_items
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
                          drift_check=False, checkpoint_every=100, kl_weight=0.0)


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
    rows = build_rows(traces + traces, one_shot=None, paraphrase=False)
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
    w = _worker(mem, tmp_path / "c", CFG.model_copy(update={"rehearse_paraphrase": True}))
    first = w.step()
    second = w.step()
    assert second.version == "v0002" and w.lineage("v0002")["parent"] == "v0001"
    assert set(second.rehearsed_ids) == set(first.trace_ids)
    assert not set(second.trace_ids) & set(first.trace_ids)  # fresh traces first: every trace gets its turn
    both = [mem.get(t, namespace="u") for t in second.trace_ids + second.rehearsed_ids]
    assert second.rows == len(build_rows(both, one_shot=None, lm_rows=CFG.lm_rows))  # rehearsed in every wording too
    assert second.rows > len(build_rows(both, one_shot=None, lm_rows=CFG.lm_rows, paraphrase=False))


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
        seen[-1] += [r.trace_id for r in rows]
        return rows

    monkeypatch.setattr(consolidate_mod, "build_rows", spy)
    w = _worker(mem, tmp_path / "c", CFG.model_copy(update={"replay_size": 4}))
    seen.append([])
    first = w.step()
    assert set(first.trace_ids) == set(ids)
    gone = ids[1]
    mem.delete(gone, namespace="u")
    assert w.status()["holds_deleted"] == ["v0001"]
    for fresh in (False, True):
        seen.append([])
        w.step(fresh=fresh)  # rehearsal of v0001 (continual) and a rebuild from the base (fresh)
    assert len(seen) == 3 and gone in seen[0]
    assert all(gone not in s for s in seen[1:]) and all(seen[1:])
    for v in ("v0002", "v0003"):
        lin = w.lineage(v)
        assert gone not in {t for _, t in lin["traces"] + lin["rehearsed"]}


def _score(accuracy: float, perplexity: float = 10.0) -> DriftScore:
    return DriftScore(accuracy=accuracy, n=200, mean_ll=-1.0, perplexity=perplexity, seconds=0.0)


class _ScriptedGuard(DriftGuard):
    """Scores from a script: the base model first, then each candidate."""

    def __init__(self, scores: list[DriftScore]) -> None:
        super().__init__([ProbeItem("q", ["a", "b"], 0)], ["text"], max_drop=1.0, max_ppl_rise=0.02)
        self.script = list(scores)

    def score(self, model: Any, tokenizer: Any) -> DriftScore:
        return self.script.pop(0)


def test_drift_guard_rejects_and_keeps_previous_active(filled: tuple[HEIMemory, list[str]], tmp_path: Path) -> None:
    mem, _ = filled
    cfg = CFG.model_copy(update={"drift_check": True})
    w = _worker(mem, tmp_path / "c", cfg, drift=_ScriptedGuard([_score(80.0), _score(79.0), _score(78.5)]))
    ok = w.step()  # 80 -> 79: one point lost, allowed
    assert ok.status == "accepted" and ok.drift["change_points"] == -1.0  # type: ignore[index]
    bad = w.step()  # 80 -> 78.5: rejected
    assert bad.status == "rejected" and w.active == tmp_path / "c" / "v0001"
    assert w.status()["versions"][1]["status"] == "rejected"
    counts = sorted(r.replay_count for r in mem.store.replay_rows("u"))
    assert counts == [0, 0, 1, 1]  # a rejected version replays nothing


def test_drift_judge_thresholds_are_points_and_relative_perplexity() -> None:
    g = DriftGuard([ProbeItem("q", ["a", "b"], 0)], ["text"], max_drop=1.0, max_ppl_rise=0.02)
    ref = _score(80.0, 10.0)
    assert g.judge(ref, _score(79.0, 10.2)).accepted  # -1 point, +2%: on the limits
    assert not g.judge(ref, _score(78.9, 10.0)).accepted
    assert not g.judge(ref, _score(85.0, 10.21)).accepted  # better accuracy does not excuse perplexity
    assert g.judge(ref, _score(80.0, 9.0)).to_dict()["ppl_change"] == -0.1


def test_probe_items_use_neighbouring_answers_as_distractors() -> None:
    tasks = load_base_tasks()
    items = probe_items(tasks)
    assert len(items) == len(tasks) >= 200
    france = items[0]
    assert france.question == "What is the capital of France?" and france.options[france.right] == "Paris"
    assert len(france.options) == 4 and set(france.options) <= {"Paris", "Rome", "Berlin", "Madrid", "Tokyo"}
    assert all(len({normalize(o) for o in it.options}) == 4 for it in items)
    assert len({it.right for it in items}) == 4  # the right answer is not always in the same place


def test_distillation_prompts_are_disjoint_from_the_probe_and_the_held_text() -> None:
    questions, texts = general_prompts()
    probe = {normalize(t.question) for t in load_base_tasks()}
    assert len(questions) >= 80 and not {normalize(q) for q in questions} & probe
    assert not set(texts) & set(held_texts())


def test_drift_score_on_a_model_is_deterministic_and_sees_a_change() -> None:
    torch.set_num_threads(1)
    tok = tiny_tokenizer()
    items = probe_items([BaseTask("Capital of France?", ["Paris"]), BaseTask("Capital of Italy?", ["Rome"]),
                         BaseTask("Capital of Spain?", ["Madrid"]), BaseTask("Capital of Peru?", ["Lima"])])
    guard = DriftGuard(items, ["The river runs to the sea.", "Bread is made from flour."])
    model = tiny_model(seed=0)
    a, b = guard.score(model, tok), guard.score(model, tok)
    assert a.accuracy == b.accuracy and a.perplexity == b.perplexity > 1 and a.mean_ll < 0 and a.n == 4
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(3.0)
    assert guard.score(model, tok).perplexity != a.perplexity


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



"""HeiNwForCausalLM on a tiny random Llama: modes, routes, memory, reader LoRA, pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from tiny_lm import tiny_model, tiny_tokenizer

from hei_nw_plugin.adapter import AdapterConfig, EpisodicAdapter
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.errors import ConfigError
from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.wrapper import HeiNwForCausalLM

FACT = "Nadia keeps the key in the attic."


def _adapter(model, gate: float = 1.0) -> EpisodicAdapter:  # type: ignore[no-untyped-def]
    torch.manual_seed(3)
    ad = EpisodicAdapter(AdapterConfig.for_model(model.config))
    with torch.no_grad():
        ad.gate.fill_(gate)
    return ad


def _lora(tmp_path: Path, name: str) -> Path:
    """A real peft LoRA with non-zero weights, saved to disk."""
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    wrapped = peft.get_peft_model(tiny_model(), cfg)
    wrapped.save_pretrained(str(tmp_path / name))
    return tmp_path / name


def _lm(route: str = "prefix", **kw):  # type: ignore[no-untyped-def]
    model = tiny_model()
    settings = HeiNwSettings.build(model={"memory_route": route, "answer_max_new_tokens": 4})
    return HeiNwForCausalLM(model, tiny_tokenizer(), settings=settings, **kw)


def test_modes_validate() -> None:
    lm = _lm(mode="B0")
    with pytest.raises(ConfigError, match="mode must be one of"):
        lm.mode = "B9"
    for mode in ("B2", "B3"):
        with pytest.raises(ConfigError, match="consolidated"):
            lm.mode = mode
    with pytest.raises(ConfigError, match="adapter"):
        _lm(route="adapter")


def test_b1_with_empty_memory_is_b0() -> None:
    lm = _lm(mode="B0")
    b0 = lm.generate_answer("Where is the key?")
    lm.mode = "B1"
    b1 = lm.generate_answer("Where is the key?", memory_text="")
    assert (b1.raw, b1.route, b1.reader) == (b0.raw, None, False)
    assert 1 <= b0.new_tokens <= 4


def test_b1_needs_memory_or_memory_text() -> None:
    lm = _lm(mode="B1")
    with pytest.raises(ConfigError, match="attach a HEIMemory"):
        lm.generate_answer("Where is the key?")


def test_b1_recalls_and_writes_back_through_the_model_gate(mem: HEIMemory) -> None:
    lm = _lm(mode="B1", memory=mem)
    assert mem.write(FACT, namespace="u").components.surprise_source.startswith("model_nll")
    ans = lm.generate_answer("Where does Nadia keep the key?", namespace="u", write_back=True)
    assert FACT in ans.memory_text and len(ans.trace_ids) == 1
    assert ans.route == "prefix" and ans.write is not None and ans.write.namespace == "u"
    assert {"recall", "generate", "total"} <= set(ans.timings_ms)
    lm.mode = "B0"
    assert lm.generate_answer("Where does Nadia keep the key?", namespace="u").memory_text == ""


def test_adapter_route_reads_memory_and_leaves_b0_alone() -> None:
    lm = _lm(route="adapter", adapter=_adapter(tiny_model()), mode="B1")
    ids = lm.tokenizer("Where is it?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base = lm.model(input_ids=ids).logits
    state = lm.hook.encode_memory(lm.tokenizer, [FACT])
    with torch.no_grad(), lm.hook.memory(state):
        read = lm.model(input_ids=ids).logits
    assert (read - base).abs().max() > 1e-3
    ans = lm.generate_answer("Where is it?", memory_text=FACT)
    assert ans.route == "adapter" and "encode_memory" in ans.timings_ms


def test_reader_lora_is_active_only_with_memory(tmp_path: Path) -> None:
    reader = _lora(tmp_path, "reader")
    lm = _lm(mode="B1", reader=reader)
    plain = _lm(mode="B1")
    ids = lm.tokenizer("Where is it?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        with lm._loras(lm._plan("")[2]):
            no_memory = lm.model(input_ids=ids).logits
        with lm._loras(lm._plan(FACT)[2]):
            with_memory = lm.model(input_ids=ids).logits
        base = plain.model(input_ids=ids).logits
    assert torch.equal(no_memory, base)
    assert (with_memory - base).abs().max() > 1e-4
    assert lm.generate_answer("Where?", memory_text=FACT).reader is True
    assert lm.generate_answer("Where?", memory_text="").reader is False
    lm.settings.model.memory_reader = False
    assert lm.generate_answer("Where?", memory_text=FACT).reader is False


def test_consolidated_weights_unlock_b2_b3(tmp_path: Path) -> None:
    lm = _lm(mode="B0")
    lm.load_consolidated(_lora(tmp_path, "cons"))
    lm.mode = "B3"
    assert lm.generate_answer("Where?").route is None
    lm.mode = "B2"
    assert lm.generate_answer("Where?", memory_text=FACT).route == "prefix"


def test_consolidated_weights_setting_loads_at_construction(tmp_path: Path) -> None:
    folder = _lora(tmp_path, "cons")
    settings = HeiNwSettings.build(model={"consolidated_weights": str(folder), "answer_max_new_tokens": 4})
    lm = HeiNwForCausalLM(tiny_model(), tiny_tokenizer(), settings=settings, mode="B3")
    assert lm.mode == "B3" and lm.generate_answer("Where?").route is None


def test_surprise_ignores_loras(tmp_path: Path) -> None:
    lm = _lm(mode="B1", reader=_lora(tmp_path, "reader"))
    plain = _lm(mode="B1")
    assert lm.surprise.nll(FACT) == pytest.approx(plain.surprise.nll(FACT), rel=1e-6)


def test_pipeline_and_record() -> None:
    lm = _lm(mode="B1")
    qa = lm.pipeline()
    out = qa("Where is the key?", memory_text=FACT)
    assert out["memory"] == FACT and out["mode"] == "B1" and isinstance(out["answer"], str)
    rec = lm.generation_record()
    assert rec["mode"] == "B1" and rec["memory_route"] == "prefix" and rec["seed"] == 0
    assert rec["do_sample"] is False


def test_chat_puts_memory_in_the_system_message(mem: HEIMemory) -> None:
    lm = _lm(mode="B1", memory=mem)
    mem.write(FACT, namespace="u")
    reply = lm.chat([{"role": "user", "content": "Where does Nadia keep the key?"}], namespace="u", max_new_tokens=3)
    assert FACT in reply.memory_text and reply.new_tokens <= 3
    with pytest.raises(ConfigError, match="user message"):
        lm.chat([{"role": "assistant", "content": "hi"}])


def test_cached_prompt_head_gives_the_same_answers_as_a_full_prompt(tmp_path: Path) -> None:
    reader = _lora(tmp_path, "reader")
    lm = _lm(mode="B1", reader=reader)
    lm.settings.model.answer_max_new_tokens = 6
    questions = ["Where is the key?", "Who keeps the key?", "Where?"]
    fresh = []
    lm.settings.model.prefix_cache = False
    for q in questions:
        for memory in (FACT, ""):  # reader on, then off: two LoRA sets, two heads
            fresh.append(lm.generate_answer(q, memory_text=memory).raw)
    assert not lm._heads
    lm.settings.model.prefix_cache = True
    cached = [lm.generate_answer(q, memory_text=m).raw for q in questions for m in (FACT, "")]
    assert cached == fresh
    assert len(lm._heads) == 2 and {key[1] for key in lm._heads} == {("reader",), ()}
    again = [lm.generate_answer(q, memory_text=m).raw for q in questions for m in (FACT, "")]
    assert again == fresh  # the cached head is copied, never extended in place
    lm.load_consolidated(_lora(tmp_path, "consolidated"))
    assert not lm._heads  # new LoRA weights: heads are recomputed


def test_adapter_reads_never_use_a_cached_head() -> None:
    model = tiny_model()
    lm = _lm("adapter", mode="B1", adapter=_adapter(model))
    lm.generate_answer("Where is the key?", memory_text=FACT)
    assert not lm._heads
    lm.generate_answer("Where is the key?", memory_text="")  # no memory: the adapter is idle
    assert len(lm._heads) == 1


def test_abstain_gate_forbids_an_unsure_abstention_at_the_first_answer_token_only() -> None:
    from hei_nw_plugin.model.abstain import AbstainGate

    gate = AbstainGate([2, 3], prompt_len=5, minimum=0.9)
    # row 0: abstention tokens 2+3 hold 0.8 of the mass (unsure) -> forbidden; row 1: 0.97 -> kept
    probs = torch.tensor([[0.1, 0.1, 0.5, 0.3], [0.01, 0.02, 0.9, 0.07]])
    out = gate(torch.zeros(2, 5, dtype=torch.long), probs.log().clone())
    assert torch.isinf(out[0, 2:]).all() and int(out[0].argmax()) in (0, 1)
    assert int(out[1].argmax()) == 2 and torch.isfinite(out[1]).all()
    later = gate(torch.zeros(2, 6, dtype=torch.long), probs.log().clone())
    assert torch.isfinite(later).all()  # later tokens are never touched
    assert torch.equal(AbstainGate([2, 3], 5, 0.0)(torch.zeros(1, 5, dtype=torch.long), probs[:1].log().clone()),
                       probs[:1].log())

"""The real SmolLM2-135M-Instruct: conversion, logit identity, KV cache, B0 vs B1, surprise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from hei_nw_plugin.adapter import AdapterConfig, AdapterHook, EpisodicAdapter
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.model.loading import CONVERSION_RECORD, load_base_model
from hei_nw_plugin.model.prompting import answer_messages
from hei_nw_plugin.wrapper import SHIPPED_WEIGHTS, HeiNwForCausalLM

pytestmark = [pytest.mark.integration, pytest.mark.model]

PROMPTS = [
    ("Where does Nadia keep the spare key?", ""),
    ("Who gave the red bicycle to Jonas?", "1. [2023-04-02] Priya gave the red bicycle to Jonas."),
    ("Tell me a short story about a lighthouse.", ""),
]
MEMORY = "1. [2023-05-01] Nadia keeps the spare key in the garden shed.\n2. [2023-06-11] Viktor moved to Krakow."


HAVE_WEIGHTS = (SHIPPED_WEIGHTS / "adapter.safetensors").is_file()


def test_the_trained_weights_ship_with_the_package() -> None:
    assert HAVE_WEIGHTS and (SHIPPED_WEIGHTS / "reader_lora" / "reader" / "adapter_model.safetensors").is_file()


@pytest.fixture(scope="module")
def lm() -> HeiNwForCausalLM:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    route = "both" if HAVE_WEIGHTS else "prefix"
    return HeiNwForCausalLM.from_settings(HeiNwSettings.build(model={"memory_route": route}), mode="B0")


def _enc(lm: HeiNwForCausalLM, question: str, memory: str) -> dict[str, torch.Tensor]:
    return dict(lm.tokenizer.apply_chat_template(
        answer_messages(question, memory), add_generation_prompt=True, return_tensors="pt", return_dict=True))


def test_embedded_model_is_converted_once_into_a_complete_folder(lm: HeiNwForCausalLM) -> None:
    folder = Path(lm.model_path)
    for name in ("model.safetensors", "config.json", "tokenizer.json", CONVERSION_RECORD):
        assert (folder / name).is_file(), name
    assert "chat_template" in (folder / "tokenizer_config.json").read_text() or (folder / "chat_template.jinja").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]  # no half-written temp


def test_untrained_adapter_with_memory_keeps_base_logits() -> None:
    loaded = load_base_model()
    model, tok = loaded.model, loaded.tokenizer
    hook = AdapterHook(model, EpisodicAdapter(AdapterConfig.for_model(model.config)))
    state = hook.encode_memory(tok, [MEMORY])
    worst = 0.0
    for question, memory in PROMPTS:
        enc = dict(tok.apply_chat_template(answer_messages(question, memory), add_generation_prompt=True, return_tensors="pt", return_dict=True))
        with torch.no_grad():
            base = model(**enc).logits
            with hook.memory(state):
                with_adapter = model(**enc).logits
        worst = max(worst, (with_adapter - base).abs().max().item())
    assert worst <= 1e-5


def test_trained_adapter_and_reader_without_memory_keep_base_logits(lm: HeiNwForCausalLM) -> None:
    assert lm.adapter is not None and lm.has_reader, "shipped weights should load for the embedded model"
    assert lm.adapter.gate.abs().max() > 0  # really trained
    for question, memory in PROMPTS:
        enc = _enc(lm, question, memory)
        with torch.no_grad():
            with lm.base_only():
                base = lm.model(**enc).logits
            with lm._loras(lm._plan("")[2]), lm.hook.memory(None):  # what B1 runs with nothing recalled
                b1_empty = lm.model(**enc).logits
        assert (b1_empty - base).abs().max().item() <= 1e-5


def test_generate_with_kv_cache_matches_full_recompute(lm: HeiNwForCausalLM) -> None:
    enc = _enc(lm, "Where does Nadia keep the spare key?", "(attached)")
    state = lm.hook.encode_memory(lm.tokenizer, [MEMORY])
    with torch.no_grad(), lm.base_only(), lm.hook.memory(state):
        cached = lm.model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
        full = lm.model.generate(**enc, max_new_tokens=8, do_sample=False, use_cache=False, pad_token_id=lm.tokenizer.pad_token_id)
    assert torch.equal(cached, full)


def test_b0_misses_b1_recalls_a_fact_written_by_the_gate(lm: HeiNwForCausalLM, tmp_path: Path) -> None:
    from hei_nw_plugin.memory import HEIMemory

    with HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path})) as mem:
        lm.memory = mem
        decision = mem.write("Nadia keeps the spare key in the garden shed.", namespace="u")
        assert decision.accepted and decision.components.surprise_source.startswith("model_nll")
        mem.write("Viktor moved to Krakow last spring.", namespace="u")
        question = "Where does Nadia keep the spare key?"
        lm.mode = "B0"
        b0 = lm.generate_answer(question, namespace="u")
        lm.mode = "B1"
        answers = {}
        lm.route = "prefix"
        answers["prefix"] = lm.generate_answer(question, namespace="u")
        lm.route = "adapter"
        lm.settings.model.memory_reader = False
        answers["adapter alone"] = lm.generate_answer(question, namespace="u")  # memory only through cross-attention
        lm.settings.model.memory_reader = True
        lm.memory = None
    assert b0.text.lower() != "garden shed"
    assert answers["prefix"].text.lower() == "garden shed", answers["prefix"]
    assert answers["adapter alone"].text.lower() == "garden shed", answers["adapter alone"]
    assert not answers["adapter alone"].reader and "garden shed" in answers["adapter alone"].memory_text
    assert "garden shed" in answers["prefix"].memory_text


def test_reader_abstains_when_the_best_turn_is_another_speakers(lm: HeiNwForCausalLM, tmp_path: Path) -> None:
    from hei_nw_plugin.memory import HEIMemory

    turns = [("Melanie", "Melanie: I ran a charity race for mental health last Saturday."),
             ("Caroline", "Caroline: I painted a sunset with my kids.")]
    with HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path})) as mem:
        for who, text in turns:
            mem.write({"text": text, "slots": {"speaker": who}, "force": True}, namespace="u")
        lm.memory, lm.mode, lm.route = mem, "B1", "prefix"
        swapped = lm.generate_answer("What charity race for mental health did Caroline run last Saturday?", namespace="u")
        own = lm.generate_answer("What did Melanie run last Saturday?", namespace="u")
        lm.settings.model.reader_speaker_check = False
        unchecked = lm.generate_answer("What charity race for mental health did Caroline run last Saturday?", namespace="u")
        lm.settings.model.reader_speaker_check = True
        lm.memory = None
    assert swapped.reader and swapped.other_speaker == "Melanie" and swapped.text == "Not mentioned"
    assert own.other_speaker is None and own.new_tokens > 0 and own.text != "Not mentioned", own
    assert unchecked.other_speaker is None and unchecked.new_tokens > 0


def test_model_surprise_ranks_gibberish_above_plain_text(lm: HeiNwForCausalLM) -> None:
    plain = lm.surprise.nll("The cat sat on the mat and went to sleep.")
    odd = lm.surprise.nll("Zq7 vorp klaxed umbly 93xx frin the dwomp.")
    assert 0.5 < plain < odd


def test_shipped_weights_exist() -> None:
    for name in ("adapter.safetensors", "adapter_config.json", "loss_curve.json", "train_summary.json"):
        assert (SHIPPED_WEIGHTS / name).is_file(), name


def test_transformers_pipeline_entry(tmp_path: Path) -> None:
    """`from transformers import pipeline` with the converted folder gets the shipped adapter and reader."""
    from transformers import pipeline

    from hei_nw_plugin.config import ModelSettings
    from hei_nw_plugin.memory import HEIMemory
    from hei_nw_plugin.model.loading import resolve_model_path
    from hei_nw_plugin.wrapper import register_pipeline

    register_pipeline()
    with HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path})) as mem:
        qa = pipeline("hei-nw-qa", model=resolve_model_path(ModelSettings()), memory=mem, mode="B1", device="cpu")
        assert qa.hei_nw.has_reader and qa.hei_nw.adapter is not None
        mem.write("Nadia keeps the spare key in the garden shed.", namespace="u")
        out = qa("Where does Nadia keep the spare key?", namespace="u")
    assert out["answer"].lower() == "garden shed" and out["mode"] == "B1" and out["trace_ids"]


@pytest.mark.slow
def test_training_is_deterministic(tmp_path: Path) -> None:
    """Two short runs of the training script with one seed write byte-identical weights."""
    from hei_nw_plugin.adapter import weights_sha256
    from hei_nw_plugin.train_adapter import TrainConfig, train

    cfg = TrainConfig(adapter_steps=2, reader_steps=1, batch_size=2, warmup_steps=1)
    hashes = []
    for run in ("a", "b"):
        train(cfg, tmp_path / run)
        reader = (tmp_path / run / "reader_lora" / "reader" / "adapter_model.safetensors").read_bytes()
        hashes.append((weights_sha256(tmp_path / run), reader))
    assert hashes[0] == hashes[1]

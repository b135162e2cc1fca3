"""Episodic Adapter on a tiny random Llama: placement, zero-gate identity, KV cache, MQA/GQA."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_lm import tiny_model, tiny_tokenizer

from hei_nw_plugin.adapter import AdapterConfig, AdapterHook, EpisodicAdapter
from hei_nw_plugin.errors import ConfigError

MEMORY = ["1. [2023-01-01] Nadia keeps the key in the attic.", "2. Viktor met Greta at the pier."]


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    return tiny_tokenizer()


def _adapter(model, *, depth: float = 0.6, kv_heads: int | None = 1, gate: float = 0.0, cap: int = 128, seed: int = 1):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    ad = EpisodicAdapter(AdapterConfig.for_model(model.config, depth=depth, kv_heads=kv_heads, max_mem_tokens=cap))
    with torch.no_grad():
        ad.gate.fill_(gate)
    return ad


def _ids(tok, text: str = "Where does Nadia keep the key?"):  # type: ignore[no-untyped-def]
    return tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]


def test_layer_is_round_depth_times_L() -> None:
    model = tiny_model()
    assert AdapterConfig.for_model(model.config, depth=0.6).layer == 3  # round(0.6 * 5)
    assert AdapterConfig.for_model(model.config, depth=0.0).layer == 0
    assert AdapterConfig.for_model(model.config, depth=1.0).layer == 5


def test_zero_gate_keeps_base_logits_exactly_with_memory(tok) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model()
    ids = _ids(tok)
    with torch.no_grad():
        base = model(input_ids=ids).logits
    hook = AdapterHook(model, _adapter(model, gate=0.0))
    state = hook.encode_memory(tok, MEMORY[:1])
    with torch.no_grad(), hook.memory(state):
        with_memory = model(input_ids=ids).logits
    assert torch.equal(base, with_memory)


def test_open_gate_changes_logits_only_while_memory_is_attached(tok) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model()
    ids = _ids(tok)
    with torch.no_grad():
        base = model(input_ids=ids).logits
    hook = AdapterHook(model, _adapter(model, gate=1.0))
    state = hook.encode_memory(tok, MEMORY[:1])
    with torch.no_grad(), hook.memory(state):
        read = model(input_ids=ids).logits
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert (read - base).abs().max() > 1e-3
    assert torch.equal(after, base)
    with torch.no_grad(), hook.memory(hook.encode_memory(tok, [""])):  # empty memory: no read
        empty = model(input_ids=ids).logits
    assert torch.equal(empty, base)
    hook.remove()
    with torch.no_grad(), hook.memory(state):  # a removed hook never fires
        removed = model(input_ids=ids).logits
    assert torch.equal(removed, base)


def test_memory_vectors_are_hidden_states_after_layer_n(tok) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model()
    ad = _adapter(model)
    hook = AdapterHook(model, ad)
    state = hook.encode_memory(tok, MEMORY[:1])
    ids = torch.tensor([[tok.bos_token_id, *tok(MEMORY[0], add_special_tokens=False)["input_ids"]]])
    with torch.no_grad():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    # hidden_states[n] is the output of the first n layers (n < L, so before the final norm)
    torch.testing.assert_close(state.vectors, hs[ad.config.layer][:, 1:], rtol=0, atol=1e-6)


def test_memory_is_capped_at_max_mem_tokens(tok) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model()
    hook = AdapterHook(model, _adapter(model, cap=16))
    state = hook.encode_memory(tok, ["x" * 100, "short"])
    assert state.vectors.shape[1] == 16
    assert state.mask.sum(dim=1).tolist() == [16, 5]


def test_padded_memory_batch_matches_single_rows(tok) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model()
    hook = AdapterHook(model, _adapter(model, gate=1.0))
    ids = _ids(tok).repeat(3, 1)
    batch_state = hook.encode_memory(tok, [MEMORY[0], MEMORY[1], ""])
    with torch.no_grad(), hook.memory(batch_state):
        batched = model(input_ids=ids).logits
    for row, text in enumerate([MEMORY[0], MEMORY[1]]):
        with torch.no_grad(), hook.memory(hook.encode_memory(tok, [text])):
            single = model(input_ids=ids[:1]).logits
        torch.testing.assert_close(batched[row : row + 1], single, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        base = model(input_ids=ids[:1]).logits
    torch.testing.assert_close(batched[2:], base, rtol=0, atol=1e-6)  # the row without memory is untouched


@pytest.mark.parametrize("kv_heads", [1, 2, None])
def test_kv_cache_generation_matches_full_recompute(tok, kv_heads) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model()
    ad = _adapter(model, kv_heads=kv_heads, gate=2.0)
    assert ad.config.kv_heads == (4 if kv_heads is None else kv_heads)
    hook = AdapterHook(model, ad)
    state = hook.encode_memory(tok, MEMORY[:1])
    ids = _ids(tok)
    with torch.no_grad(), hook.memory(state):
        cached = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=257)
        uncached = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False, use_cache=False, pad_token_id=257)
        # step logits: incremental with the cache vs one full forward
        full = model(input_ids=cached).logits
        out = model(input_ids=cached[:, :-3], use_cache=True)
        step = model(input_ids=cached[:, -3:], past_key_values=out.past_key_values, use_cache=True).logits
    assert torch.equal(cached, uncached)
    torch.testing.assert_close(step, full[:, -3:], rtol=1e-5, atol=1e-5)


def test_beams_expand_a_single_memory_row(tok) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model()
    hook = AdapterHook(model, _adapter(model, gate=1.0))
    with torch.no_grad(), hook.memory(hook.encode_memory(tok, MEMORY[:1])):
        out = model.generate(input_ids=_ids(tok), max_new_tokens=3, num_beams=2, num_return_sequences=2, do_sample=False, pad_token_id=257)
    assert out.shape[0] == 2


def test_adapter_before_the_first_layer(tok) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model()
    ad = _adapter(model, depth=0.0, gate=1.0)
    hook = AdapterHook(model, ad)
    state = hook.encode_memory(tok, MEMORY[:1])
    embeds = model.get_input_embeddings()(torch.tensor([tok(MEMORY[0], add_special_tokens=False)["input_ids"]]))
    torch.testing.assert_close(state.vectors, embeds, rtol=0, atol=0)
    with torch.no_grad(), hook.memory(state):
        read = model(input_ids=_ids(tok)).logits
    with torch.no_grad():
        base = model(input_ids=_ids(tok)).logits
    assert (read - base).abs().max() > 1e-3


def test_kv_heads_must_divide_query_heads() -> None:
    model = tiny_model()
    with pytest.raises(ConfigError, match="must divide"):
        AdapterConfig.for_model(model.config, kv_heads=3)


def test_adapter_for_another_model_is_refused() -> None:
    small, deep = tiny_model(), tiny_model(num_hidden_layers=6)
    with pytest.raises(ConfigError, match="layers"):
        AdapterHook(deep, _adapter(small))


def test_save_load_round_trip(tok, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model()
    ad = _adapter(model, gate=0.7)
    ad.save(tmp_path, extra={"note": "x"})
    loaded, meta = EpisodicAdapter.load(tmp_path)
    assert meta["note"] == "x" and loaded.config == ad.config
    ids = _ids(tok)
    outs = []
    for adapter in (ad, loaded):
        hook = AdapterHook(model, adapter)
        with torch.no_grad(), hook.memory(hook.encode_memory(tok, MEMORY[:1])):
            outs.append(model(input_ids=ids).logits)
        hook.remove()
    assert torch.equal(outs[0], outs[1])


def test_gradients_reach_only_the_adapter(tok) -> None:  # type: ignore[no-untyped-def]
    model = tiny_model()
    for p in model.parameters():
        p.requires_grad_(False)
    ad = _adapter(model)
    hook = AdapterHook(model, ad)
    with hook.memory(hook.encode_memory(tok, MEMORY[:1])):
        loss = model(input_ids=_ids(tok)).logits[:, -1].logsumexp(-1).sum()
    loss.backward()
    assert ad.gate.grad is not None and ad.gate.grad.abs().sum() > 0  # a zero gate still learns
    assert all(p.grad is None for p in model.parameters())


def test_init_from_attention_keeps_the_layers_head_grouping(tok) -> None:  # type: ignore[no-untyped-def]
    """Copied as GQA (the layer's own 2 K/V heads) or expanded to MHA, the block computes the same read."""
    model = tiny_model()
    layer = model.model.layers[3]
    reads = []
    for kv_heads in (2, None):
        ad = _adapter(model, kv_heads=kv_heads, gate=1.0)
        ad.init_from_attention(layer)
        torch.testing.assert_close(ad.q_proj.weight, layer.self_attn.q_proj.weight, rtol=0, atol=0)
        hook = AdapterHook(model, ad)
        with torch.no_grad(), hook.memory(hook.encode_memory(tok, MEMORY[:1])):
            reads.append(model(input_ids=_ids(tok)).logits)
        hook.remove()
    torch.testing.assert_close(reads[0], reads[1], rtol=1e-5, atol=1e-5)
    mqa = _adapter(model, kv_heads=1)
    mqa.init_from_attention(layer)  # averaged K/V heads
    torch.testing.assert_close(mqa.k_proj.weight, layer.self_attn.k_proj.weight.view(2, 16, 64).mean(0))


def test_copy_path_mixes_the_memory_token_embeddings(tok) -> None:  # type: ignore[no-untyped-def]
    """With uniform attention the copy path adds scale·tanh(c)·mean(embeddings incl. the empty null slot)."""
    from dataclasses import replace

    model = tiny_model()
    ad = _adapter(model)
    ad.config = replace(ad.config, copy_scale=4.0)
    hook = AdapterHook(model, ad)
    state = hook.encode_memory(tok, MEMORY[:1])
    assert state.embeds is not None
    with torch.no_grad():
        ad.q_proj.weight.zero_()  # every score 0: uniform over null + M slots
        ad.copy_gate.fill_(1.0)
        hidden = torch.randn(1, 3, 64)
        out = ad(hidden, ad.project_memory(state))
    m = state.embeds.shape[1]
    expected = 4.0 * torch.tanh(torch.tensor(1.0)) * state.embeds.sum(dim=1, keepdim=True) / (m + 1)
    torch.testing.assert_close(out - hidden, expected.expand(1, 3, 64), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        ad.copy_gate.zero_()
        assert torch.equal(ad(hidden, ad.project_memory(state)), hidden)


def test_memory_is_encoded_with_base_weights_under_a_lora(tok) -> None:  # type: ignore[no-untyped-def]
    """A consolidated LoRA (B2/B3) changes the decoder, not the memory vectors the adapter reads."""
    peft = pytest.importorskip("peft")
    base_model = tiny_model()
    plain = AdapterHook(base_model, _adapter(base_model, gate=1.0))
    want = plain.encode_memory(tok, MEMORY)
    plain.remove()
    model = peft.get_peft_model(tiny_model(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    ids = _ids(tok)
    with torch.no_grad():
        with_lora = model(input_ids=ids).logits
        with model.disable_adapter():
            without = model(input_ids=ids).logits
    assert not torch.allclose(with_lora, without)  # the LoRA does change the decoder
    hook = AdapterHook(model, _adapter(model, gate=1.0))
    got = hook.encode_memory(tok, MEMORY)
    assert torch.equal(got.vectors, want.vectors) and torch.equal(got.mask, want.mask)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, with_lora)  # the LoRA is back on afterwards
    assert {n: p.requires_grad for n, p in model.named_parameters() if "hei" not in n} == grads
    model.merge_adapter()
    with pytest.raises(ConfigError, match="unmerge"):
        hook.encode_memory(tok, MEMORY)

"""The vLLM plugin's adapter arithmetic equals the Episodic Adapter's (no vLLM needed).

``server.vllm_plugin.block`` re-expresses :class:`hei_nw_plugin.adapter.EpisodicAdapter`
around one attention call (null slot, gate, copy path as extra heads) so vLLM's
``CrossAttention`` can run the middle; here a plain softmax attention runs it and
the result must be the adapter's own forward, with the shipped weights.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from hei_nw_plugin.adapter import AdapterConfig, EpisodicAdapter, MemoryState
from server.vllm_plugin import SHIPPED_ADAPTER
from server.vllm_plugin.block import EpisodicBlock, attend


def _pair(cfg: dict, seed: int = 0) -> tuple[EpisodicAdapter, EpisodicBlock]:
    torch.manual_seed(seed)
    ref = EpisodicAdapter(AdapterConfig(**cfg))
    with torch.no_grad():  # open the gates: a zero gate would hide a wrong read
        for p in (ref.gate, ref.copy_gate, ref.copy_log_scale, ref.null_kv):
            p.normal_(0, 0.5)
    block = EpisodicBlock(cfg)
    block.load_state_dict(ref.state_dict())
    return ref, block


def _read(block: EpisodicBlock, hidden: torch.Tensor, vectors: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
    k, v = block.split_kv(block.memory_kv(vectors, embeds))
    out = attend(block.queries(hidden), k, v, heads=block.attn_heads, kv_heads=block.attn_kv_heads, head_dim=block.head_dim)
    return hidden + block.read(out)


@pytest.mark.parametrize("copy_scale,kv_heads", [(0.0, 3), (2.5, 3), (2.5, 1), (2.5, 9)])
def test_block_around_plain_attention_is_the_adapter(copy_scale: float, kv_heads: int) -> None:
    cfg = {"hidden_size": 48, "num_heads": 9, "head_dim": 16, "kv_heads": kv_heads, "layer": 2, "num_layers": 4,
           "max_mem_tokens": 16, "rms_eps": 1e-5, "copy_scale": copy_scale}
    ref, block = _pair(cfg)
    hidden, vectors, embeds = torch.randn(5, 48), torch.randn(7, 48), torch.randn(7, 48)
    want = ref(hidden[None], ref.project_memory(MemoryState(vectors[None], torch.ones(1, 7, dtype=torch.bool), embeds[None])))[0]
    got = _read(block, hidden, vectors, embeds)
    assert (got - hidden).abs().max() > 1e-3  # the read is not trivially zero
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_shipped_weights_load_into_the_block_and_match() -> None:
    from safetensors.torch import load_file

    cfg = json.loads((SHIPPED_ADAPTER / "adapter_config.json").read_text())["adapter"]
    ref, _ = EpisodicAdapter.load(SHIPPED_ADAPTER)
    block = EpisodicBlock(cfg)
    block.load_state_dict(load_file(str(SHIPPED_ADAPTER / "adapter.safetensors")))  # strict: same names
    assert block.chunks == cfg["hidden_size"] // cfg["head_dim"] and block.attn_heads % block.attn_kv_heads == 0
    torch.manual_seed(1)
    hidden, vectors, embeds = torch.randn(3, cfg["hidden_size"]) * 3, torch.randn(6, cfg["hidden_size"]), torch.randn(6, cfg["hidden_size"]) * 0.05
    want = ref(hidden[None], ref.project_memory(MemoryState(vectors[None], torch.ones(1, 6, dtype=torch.bool), embeds[None])))[0]
    torch.testing.assert_close(_read(block, hidden, vectors, embeds), want, rtol=1e-4, atol=1e-4)

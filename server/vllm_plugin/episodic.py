"""The Episodic Adapter as a vLLM model: Llama plus one gated cross-attention block.

Imported only inside vLLM (0.32, V1 engine, CPU backend included). The block is
the one of :mod:`hei_nw_plugin.adapter`, re-expressed with vLLM's layers, and
reads the same ``adapter.safetensors``; it sits after decoder layer ``n``.

Per-request memory uses vLLM's encoder-decoder path, the one Whisper uses: the
model is declared ``is_encoder_decoder`` and multimodal. A request carries its
memory as the input embeddings of the packed memory tokens (an ``image_embeds``
chat part, see :data:`server.vllm_plugin.MEMORY_MODALITY`); the processor turns
that into an encoder prompt of ``1 + M`` placeholder positions (a null slot plus
the memory tokens); :meth:`embed_multimodal` is the "encoder": it runs the base
model's own first ``n`` layers over ``[BOS] + memory`` (plain causal attention,
no KV cache) and returns the adapter's keys and values per memory position; at a
request's prefill vLLM hands those to :meth:`forward`, where a ``CrossAttention``
layer writes them into its cross-attention KV cache, so every decode step reads
memory without recomputing it. Requests without memory have no encoder input;
the block adds nothing for their tokens, so they get the base model exactly.

The block's arithmetic around the attention call (null slot, gate, copy path as
extra heads) is :class:`server.vllm_plugin.block.EpisodicBlock`, which the unit
tests check against :class:`hei_nw_plugin.adapter.EpisodicAdapter` without vLLM.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import BatchFeature
from vllm.config import VllmConfig
from vllm.config.multimodal import MultiModalDummyOptions
from vllm.forward_context import get_forward_context, is_forward_context_available
from vllm.inputs import MultiModalDataDict
from vllm.model_executor.layers.attention import CrossAttention
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsMultiModal
from vllm.model_executor.models.llama import LlamaForCausalLM
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import ImageEmbeddingItems, MultiModalDataItems
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseProcessingInfo,
    EncDecMultiModalProcessor,
    PromptReplacement,
    PromptUpdate,
)
from vllm.v1.attention.backend import AttentionType

from server.vllm_plugin import ARCHITECTURE, MEMORY_MODALITY, SHIPPED_ADAPTER
from server.vllm_plugin.block import EpisodicBlock

PLACEHOLDER = 0
"""Token id of the encoder prompt's positions (never embedded: the encoder reads the memory tensor)."""
FIELD = f"{MEMORY_MODALITY}_embeds"


def adapter_meta(config: Any) -> tuple[Path, dict[str, Any]]:
    folder = Path(getattr(config, "hei_adapter_weights", None) or SHIPPED_ADAPTER)
    return folder, json.loads((folder / "adapter_config.json").read_text())["adapter"]


class EpisodicCrossAttention(EpisodicBlock):
    """The block with vLLM's ``CrossAttention`` in the middle (its KV cache holds each request's memory)."""

    def __init__(self, cfg: dict[str, Any], *, vllm_config: VllmConfig, prefix: str) -> None:
        super().__init__(cfg)
        self.attn = CrossAttention(self.attn_heads, self.head_dim, self.head_dim**-0.5, num_kv_heads=self.attn_kv_heads,
                                   cache_config=vllm_config.cache_config, prefix=f"{prefix}.attn",
                                   attn_type=AttentionType.ENCODER_DECODER)

    def _has_memory(self, num_tokens: int, device: torch.device) -> torch.Tensor | None:
        """Per token: does its request have memory? (None without metadata, e.g. a dummy run.)"""
        if not is_forward_context_available():
            return None
        md = get_forward_context().attn_metadata
        md = md.get(self.attn.layer_name) if isinstance(md, dict) else None
        if md is None:
            return None
        qsl = md.query_start_loc
        per_req = md.seq_lens[: qsl.numel() - 1] > 0  # the cross-attention's seq_lens are encoder lengths
        has = torch.repeat_interleave(per_req, qsl[1:] - qsl[:-1])
        out = torch.zeros(num_tokens, dtype=torch.bool, device=device)
        out[: min(num_tokens, has.numel())] = has[:num_tokens]
        return out

    def forward(self, hidden: torch.Tensor, encoder_outputs: torch.Tensor | None) -> torch.Tensor:
        k = v = None
        if encoder_outputs is not None and encoder_outputs.numel():
            k, v = self.split_kv(encoder_outputs)  # a prefill: written to the cross-attention KV cache
        read = self.read(self.attn(self.queries(hidden), k, v).view(hidden.shape[0], -1))
        has = self._has_memory(hidden.shape[0], hidden.device)
        if has is not None:
            read = torch.where(has[:, None], read, torch.zeros_like(read))  # where, not *: no NaN leaks
        return hidden + read.to(hidden.dtype)


class EpisodicProcessingInfo(BaseProcessingInfo):
    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {MEMORY_MODALITY: 1}

    @property
    def skip_prompt_length_check(self) -> bool:
        return True  # the encoder prompt is the memory, not text

    def max_memory_tokens(self) -> int:
        return int(adapter_meta(self.get_hf_config())[1].get("max_mem_tokens", 128))


class EpisodicDummyInputs(BaseDummyInputsBuilder[EpisodicProcessingInfo]):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return ""

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int],
                          mm_options: Mapping[str, MultiModalDummyOptions] | None = None) -> MultiModalDataDict:
        hidden = int(self.info.get_hf_config().hidden_size)
        n = mm_counts.get(MEMORY_MODALITY, 0)
        return {MEMORY_MODALITY: [torch.zeros(self.info.max_memory_tokens(), hidden) for _ in range(n)]}


class EpisodicMemoryProcessor(EncDecMultiModalProcessor[EpisodicProcessingInfo]):
    """Encoder prompt: ``1 + M`` placeholders (null slot + memory tokens); decoder prompt: the chat as sent."""

    skip_decoder_start_token = True  # the chat template already starts the sequence

    def create_encoder_prompt(self, prompt: list[int], mm_items: MultiModalDataItems) -> list[int]:
        return [PLACEHOLDER] if mm_items.get_all_counts().get(MEMORY_MODALITY) else []

    def _get_mm_fields_config(self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]
                              ) -> Mapping[str, MultiModalFieldConfig]:
        return {FIELD: MultiModalFieldConfig.batched(MEMORY_MODALITY)}

    def _get_prompt_updates(self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs: Mapping[str, object],
                            out_mm_kwargs: MultiModalKwargsItems) -> Sequence[PromptUpdate]:
        items = mm_items.get_items(MEMORY_MODALITY, ImageEmbeddingItems)
        return [PromptReplacement(modality=MEMORY_MODALITY, target=[PLACEHOLDER],
                                  replacement=lambda i: [PLACEHOLDER] * (1 + items.get_feature_size(i)))]


def _base(linear: torch.nn.Module) -> torch.nn.Module:
    """The plain linear layer under a vLLM LoRA wrapper (the layer itself when LoRA is off).

    Memory is encoded with the base weights, as the in-process AdapterHook does: a tenant's LoRA
    (B2/B3) changes the decoder, not the memory the adapter was trained to read. vLLM's LoRA layers
    could not run here anyway: their batch metadata describes the decoder's tokens, not memory's.
    """
    return getattr(linear, "base_layer", linear)


@MULTIMODAL_REGISTRY.register_processor(EpisodicMemoryProcessor, info=EpisodicProcessingInfo,
                                        dummy_inputs=EpisodicDummyInputs)
class HeiNwEpisodicLlamaForCausalLM(LlamaForCausalLM, SupportsMultiModal):
    """Llama with the Episodic Adapter after decoder layer ``n`` and per-request memory."""

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        config = vllm_config.model_config.hf_config
        self.adapter_folder, cfg = adapter_meta(config)
        if cfg["num_layers"] != config.num_hidden_layers or cfg["hidden_size"] != config.hidden_size:
            raise ValueError(f"adapter in {self.adapter_folder} was trained for {cfg['num_layers']} layers of width "
                             f"{cfg['hidden_size']}; this model has {config.num_hidden_layers} of {config.hidden_size}")
        self.adapter_layer = int(cfg["layer"])
        self.bos_id = int(config.bos_token_id if config.bos_token_id is not None else config.eos_token_id)
        # vLLM orders KV caches by the one integer in an attention layer's name: name the block's
        # cross-attention after the decoder layer it follows (CPU and CUDA allow two per index).
        self.hei_adapter = EpisodicCrossAttention(
            cfg, vllm_config=vllm_config, prefix=f"{prefix}model.layers.{max(self.adapter_layer - 1, 0)}.hei_adapter")

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith(MEMORY_MODALITY):  # the chat parser asks for "image_embeds"
            return None  # memory is not part of the decoder's text
        raise ValueError(f"{ARCHITECTURE} takes memory ({MEMORY_MODALITY}_embeds) only")

    # ------------------------------------------------------------------ memory encoder
    @torch.inference_mode()
    def _encode(self, embeds: torch.Tensor) -> torch.Tensor:
        """Hidden states of ``[BOS] + memory`` after the first ``n`` layers (BOS row dropped)."""
        m = self.model
        x = torch.cat([m.embed_input_ids(torch.tensor([self.bos_id], device=embeds.device)), embeds.to(m.norm.weight.dtype)])
        pos = torch.arange(x.shape[0], device=x.device)
        for layer in list(m.layers)[: self.adapter_layer]:
            attn = layer.self_attn
            qkv, _ = _base(attn.qkv_proj)(layer.input_layernorm(x))
            q, k, v = qkv.split([attn.q_size, attn.kv_size, attn.kv_size], dim=-1)
            q, k = attn.rotary_emb(pos, q, k)
            t, group = x.shape[0], attn.num_heads // attn.num_kv_heads
            q = q.view(t, attn.num_heads, attn.head_dim).transpose(0, 1)
            k = k.view(t, attn.num_kv_heads, attn.head_dim).transpose(0, 1).repeat_interleave(group, dim=0)
            v = v.view(t, attn.num_kv_heads, attn.head_dim).transpose(0, 1).repeat_interleave(group, dim=0)
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=attn.scaling)
            o, _ = _base(attn.o_proj)(o.transpose(0, 1).reshape(t, -1))
            x = x + o
            mlp = layer.mlp
            gate_up, _ = _base(mlp.gate_up_proj)(layer.post_attention_layernorm(x))
            down, _ = _base(mlp.down_proj)(mlp.act_fn(gate_up))
            x = x + down
        return x[1:]

    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        items = kwargs.get(FIELD)
        if items is None:
            return []
        tensors = list(items.unbind(0)) if isinstance(items, torch.Tensor) else list(items)  # type: ignore[attr-defined]
        return [self.hei_adapter.memory_kv(self._encode(e), e) for e in tensors]

    def embed_input_ids(self, input_ids: torch.Tensor, multimodal_embeddings: Any = None, *,
                        is_multimodal: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.embed_input_ids(input_ids)  # memory never enters the decoder's token stream

    # ------------------------------------------------------------------ decoder
    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor, intermediate_tensors: Any = None,
                inputs_embeds: torch.Tensor | None = None, encoder_outputs: list[torch.Tensor] | None = None,
                **kwargs: object) -> torch.Tensor:
        m = self.model
        h = inputs_embeds if inputs_embeds is not None else m.embed_input_ids(input_ids)
        enc = torch.cat(encoder_outputs) if encoder_outputs else None
        residual = None
        if self.adapter_layer == 0:
            h = self.hei_adapter(h, enc)
        for i, layer in enumerate(m.layers):
            h, residual = layer(positions, h, residual)
            if i + 1 == self.adapter_layer:
                h, residual = self.hei_adapter(h + residual, enc), None  # the block reads the full residual stream
        h, _ = m.norm(h, residual)
        return h

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        from safetensors.torch import load_file

        loaded = super().load_weights(weights)
        state = load_file(str(self.adapter_folder / "adapter.safetensors"))
        missing, unexpected = EpisodicBlock.load_state_dict(self.hei_adapter, state, strict=False)
        missing = [k for k in missing if not k.startswith("attn.")]  # the attention layer holds no weights of ours
        if missing or unexpected:
            raise ValueError(f"adapter weights in {self.adapter_folder} do not fit: missing {missing}, unexpected {unexpected}")
        return loaded | {f"hei_adapter.{k}" for k, _ in self.hei_adapter.named_parameters()}


"""Per-answer inference cost from the model's shape: attention FLOPs and KV-cache size.

Both are computed, not measured, from the decoder config (layers L, query heads
H, key/value heads H_kv, head dim d) and the sequence length T = prompt tokens +
generated tokens, so they compare prompt strategies (memory tokens vs a whole
transcript vs retrieved chunks) independently of the machine.

* Attention FLOPs count the context-dependent part of self-attention only: the
  scores QKᵀ and the weighted sum AV, one multiply-add = 2 FLOPs. With a KV
  cache, position i (1-based) attends to i positions, so one sequence costs
  Σᵢ 4·L·H·d·i = 2·L·H·d·T·(T+1). Projections and MLPs grow linearly in T and
  are the same for every mode at equal T, so they are left out.
* KV cache = 2 (K and V) · L · H_kv · d · T · bytes per value, in MiB (2²⁰ bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1}


@dataclass(frozen=True)
class AttentionShape:
    """The decoder dimensions that set attention cost."""

    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    bytes_per_value: int = 4

    def __post_init__(self) -> None:
        if min(self.layers, self.heads, self.kv_heads, self.head_dim, self.bytes_per_value) < 1:
            raise ValueError("attention shape values must be positive")

    @classmethod
    def from_config(cls, config: Any, dtype: str | None = None) -> AttentionShape:
        """From a Hugging Face config (``num_hidden_layers``, ``num_attention_heads``…).

        ``dtype`` names the KV-cache dtype (default: the config's ``torch_dtype``, else float32).
        """
        heads = int(config.num_attention_heads)
        head_dim = getattr(config, "head_dim", None) or int(config.hidden_size) // heads
        name = str(dtype or getattr(config, "torch_dtype", None) or "float32").replace("torch.", "")
        return cls(
            layers=int(config.num_hidden_layers),
            heads=heads,
            kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
            head_dim=int(head_dim),
            bytes_per_value=_DTYPE_BYTES.get(name, 4),
        )


def attention_flops(shape: AttentionShape, prompt_tokens: int, new_tokens: int) -> float:
    """Self-attention score and value FLOPs for one answer (prefill + decode with a KV cache)."""
    if prompt_tokens < 0 or new_tokens < 0:
        raise ValueError("token counts must be non-negative")
    t = prompt_tokens + new_tokens
    return 2.0 * shape.layers * shape.heads * shape.head_dim * t * (t + 1)


def kv_cache_mb(shape: AttentionShape, tokens: int) -> float:
    """KV-cache size in MiB when ``tokens`` positions are cached."""
    if tokens < 0:
        raise ValueError("token counts must be non-negative")
    return 2.0 * shape.layers * shape.kv_heads * shape.head_dim * tokens * shape.bytes_per_value / 2**20

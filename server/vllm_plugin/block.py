"""The Episodic Adapter's arithmetic around one attention call (torch only, no vLLM).

:class:`EpisodicBlock` holds the adapter's parameters under the names of
``adapter.safetensors`` and splits :class:`hei_nw_plugin.adapter.EpisodicAdapter`'s
forward into the three parts an attention kernel leaves outside itself:
:meth:`~EpisodicBlock.memory_kv` (keys and values of one request's memory, null
slot first), :meth:`~EpisodicBlock.queries` and :meth:`~EpisodicBlock.read`
(gate, output projection, copy path). Whatever computes
``softmax(q·kᵀ/√d)·v`` per head in between (vLLM's ``CrossAttention`` in
:mod:`server.vllm_plugin.episodic`, :func:`attend` in the tests) gives the
adapter's output.

The copy path needs each head's attention weights, which attention kernels do
not return, so it rides as extra heads: for every query head, ``hidden/head_dim``
more heads share its query and key but carry one ``head_dim`` slice of the
memory tokens' input embeddings as values; their outputs summed over query heads
and divided by ``num_heads`` are ``mean_h(probs_h) @ E``. Query head ``i`` reads
key/value head ``i // group`` as in grouped-query attention: the adapter's own
heads first (``num_heads`` queries over ``kv_heads``), then the copy heads
ordered (kv head, slice, query head in its group).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _RMSNorm(nn.Module):
    """The adapter's RMSNorm (float32 math, as in hei_nw_plugin.adapter)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * x32).to(x.dtype)


class EpisodicBlock(nn.Module):
    """Parameters and pre/post attention steps of the Episodic Adapter (``cfg``: adapter_config.json's ``adapter``)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        hidden, heads, hd, kv = int(cfg["hidden_size"]), int(cfg["num_heads"]), int(cfg["head_dim"]), int(cfg["kv_heads"])
        if heads % kv:
            raise ValueError(f"kv_heads ({kv}) must divide num_heads ({heads})")
        self.hidden, self.heads, self.head_dim, self.kv_heads, self.group = hidden, heads, hd, kv, heads // kv
        self.copy_scale = float(cfg.get("copy_scale") or 0.0)
        if self.copy_scale and hidden % hd:
            raise ValueError(f"the copy path needs hidden_size ({hidden}) to be a multiple of head_dim ({hd})")
        self.chunks = hidden // hd if self.copy_scale else 0
        """Value slices of the copy path per kv head (0 without it)."""
        eps = float(cfg.get("rms_eps", 1e-5))
        self.query_norm = _RMSNorm(hidden, eps)
        self.memory_norm = _RMSNorm(hidden, eps)
        self.q_proj = nn.Linear(hidden, heads * hd, bias=False)
        self.k_proj = nn.Linear(hidden, kv * hd, bias=False)
        self.v_proj = nn.Linear(hidden, kv * hd, bias=False)
        self.o_proj = nn.Linear(heads * hd, hidden, bias=False)
        self.null_kv = nn.Parameter(torch.zeros(2, kv, hd))
        self.gate = nn.Parameter(torch.zeros(hidden))
        self.copy_gate = nn.Parameter(torch.zeros(()))
        self.copy_log_scale = nn.Parameter(torch.zeros(()))

    @property
    def attn_heads(self) -> int:
        """Query heads of the attention call."""
        return self.heads * (1 + self.chunks)

    @property
    def attn_kv_heads(self) -> int:
        """Key/value heads of the attention call."""
        return self.kv_heads * (1 + self.chunks)

    @property
    def kv_width(self) -> int:
        return self.attn_kv_heads * self.head_dim

    def memory_kv(self, vectors: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        """One request's memory as ``[1+M, 2·kv_width]``: keys then values, null slot first.

        ``vectors``: the memory tokens' hidden states after the adapter's layer ``[M, hidden]``;
        ``embeds``: their input embeddings ``[M, hidden]`` (the copy path's values).
        """
        m = self.memory_norm(vectors.to(self.q_proj.weight.dtype))
        n, hd, kv = m.shape[0], self.head_dim, self.kv_heads
        k = torch.cat([self.null_kv[0].unsqueeze(0), self.k_proj(m).view(n, kv, hd)])
        v = torch.cat([self.null_kv[1].unsqueeze(0), self.v_proj(m).view(n, kv, hd)])
        if self.chunks:
            e = torch.cat([torch.zeros_like(embeds[:1]), embeds.to(m.dtype)]).view(n + 1, 1, self.chunks, hd)
            k = torch.cat([k, k.unsqueeze(2).expand(n + 1, kv, self.chunks, hd).reshape(n + 1, -1, hd)], dim=1)
            v = torch.cat([v, e.expand(n + 1, kv, self.chunks, hd).reshape(n + 1, -1, hd)], dim=1)
        return torch.cat([k.reshape(n + 1, -1), v.reshape(n + 1, -1)], dim=1)

    def split_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``[N, kv_width]`` each, from :meth:`memory_kv` rows."""
        return memory[:, : self.kv_width], memory[:, self.kv_width:]

    def queries(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[T, attn_heads·head_dim]`` queries for hidden states ``[T, hidden]``."""
        t, hd = hidden.shape[0], self.head_dim
        q = self.q_proj(self.query_norm(hidden.to(self.q_proj.weight.dtype)))
        if not self.chunks:
            return q
        qc = q.view(t, self.kv_heads, 1, self.group, hd).expand(t, self.kv_heads, self.chunks, self.group, hd)
        return torch.cat([q, qc.reshape(t, -1)], dim=1)

    def read(self, attn_out: torch.Tensor) -> torch.Tensor:
        """The gated memory read ``[T, hidden]`` from the attention output ``[T, attn_heads·head_dim]``."""
        t, main = attn_out.shape[0], self.heads * self.head_dim
        read = torch.tanh(self.gate) * self.o_proj(attn_out[:, :main])
        if self.chunks:
            copy = attn_out[:, main:].reshape(t, self.kv_heads, self.chunks, self.group, self.head_dim).sum(dim=(1, 3))
            scale = torch.tanh(self.copy_gate) * self.copy_scale * self.copy_log_scale.exp()
            read = read + scale * copy.reshape(t, self.hidden) / self.heads
        return read


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, heads: int, kv_heads: int, head_dim: int) -> torch.Tensor:
    """Reference non-causal attention of ``[T, heads·d]`` queries over ``[N, kv_heads·d]`` keys/values (GQA)."""
    t, n, g = q.shape[0], k.shape[0], heads // kv_heads
    qh = q.view(t, heads, head_dim).transpose(0, 1)
    kh = k.view(n, kv_heads, head_dim).transpose(0, 1).repeat_interleave(g, dim=0)
    vh = v.view(n, kv_heads, head_dim).transpose(0, 1).repeat_interleave(g, dim=0)
    probs = (qh @ kh.transpose(-1, -2) / head_dim**0.5).softmax(dim=-1)
    return (probs @ vh).transpose(0, 1).reshape(t, heads * head_dim)

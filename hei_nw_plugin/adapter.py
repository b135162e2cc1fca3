"""Episodic Adapter: one gated cross-attention block from the LM's hidden states to memory.

The block sits after decoder layer ``n = round(depth·L)`` (the output of the
first ``n`` layers; ``n = 0`` means on the input embeddings). It is installed with
a forward hook, so the base model's modules, weights and ``save_pretrained`` stay
untouched, and ``generate()`` with the KV cache just works: memory is constant
for a generation, its keys and values are projected once, and each decode step's
new positions attend to them (no positions, no causal mask: every query sees
every memory token).

Memory-token vectors are the base model's own hidden states of the packed memory
text after the same ``n`` layers (run with the adapter off). They live in the
space the queries come from, and, unlike raw input embeddings, each token already
carries its sentence context ("drawer" knows it is where Nadia keeps the key),
which is what a single attention hop needs to pick the answer. At most
``max_mem_tokens`` tokens are kept (the packer puts the best trace first).

Besides the usual value/output projections the block has a copy path: the
attention weights (averaged over heads) also mix the memory tokens' own input
embeddings, scaled to the residual stream's size. With tied embeddings that
moves the LM head straight towards the attended token, which is what answering
from memory mostly is (measured on SmolLM2: adding ~0.6 of the residual norm of
a token's embedding at layer 18 makes the model emit that token).

The output is ``h + tanh(g) ⊙ o + tanh(c)·s·copy`` with a per-channel gate ``g``
and a copy gate ``c`` both initialised to zero, so an untrained adapter, or any
adapter with no memory attached, leaves the base logits exactly unchanged. A learned null key/value lets a query attend
to "nothing" when no memory token is relevant. ``kv_heads=1`` is multi-query
attention, ``kv_heads=num_heads`` multi-head, anything dividing ``num_heads`` GQA.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

try:
    import torch
    from torch import nn
except ImportError as err:  # pragma: no cover - exercised only without the extra
    from hei_nw_plugin.errors import require_extra

    raise require_extra("torch", "model") from err

from hei_nw_plugin.errors import ConfigError

WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter_config.json"


@dataclass(frozen=True)
class AdapterConfig:
    """Shape and placement of the Episodic Adapter."""

    hidden_size: int
    num_heads: int
    head_dim: int
    kv_heads: int
    layer: int
    """n: the block reads the output of the first n decoder layers."""
    num_layers: int
    max_mem_tokens: int = 128
    rms_eps: float = 1e-5
    copy_scale: float = 0.0
    """Scale of the copy path (≈ residual norm at layer n / token-embedding norm); 0 turns it off."""

    @classmethod
    def for_model(
        cls, model_config: Any, *, depth: float = 0.6, kv_heads: int | None = 1, max_mem_tokens: int = 128
    ) -> AdapterConfig:
        """Derive the adapter's shape from a transformers model config."""
        num_layers = int(model_config.num_hidden_layers)
        num_heads = int(model_config.num_attention_heads)
        hidden = int(model_config.hidden_size)
        head_dim = int(getattr(model_config, "head_dim", None) or hidden // num_heads)
        kv = num_heads if kv_heads is None else kv_heads
        if num_heads % kv:
            raise ConfigError(f"adapter_kv_heads ({kv}) must divide the model's {num_heads} attention heads")
        return cls(
            hidden_size=hidden, num_heads=num_heads, head_dim=head_dim, kv_heads=kv,
            layer=round(depth * num_layers), num_layers=num_layers, max_mem_tokens=max_mem_tokens,
            rms_eps=float(getattr(model_config, "rms_norm_eps", 1e-5)),
        )


@dataclass
class MemoryState:
    """Encoded memory for a batch: hidden-state vectors ``[B, M, hidden]``, the tokens' input
    embeddings ``[B, M, hidden]`` and a padding mask ``[B, M]`` (True = real)."""

    vectors: torch.Tensor
    mask: torch.Tensor
    embeds: torch.Tensor | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.mask.sum(dim=1).max().item()) if self.mask.numel() else 0


@dataclass
class MemoryKV:
    """Projected memory: keys/values ``[B, kv_heads, 1+M, head_dim]`` (null slot first),
    mask ``[B, 1+M]``, and ``present`` ``[B]`` (rows with no memory get no read at all)."""

    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor
    present: torch.Tensor
    embeds: torch.Tensor
    """``[B, 1+M, hidden]`` token embeddings for the copy path (zeros for the null slot)."""

    def expand(self, batch: int) -> MemoryKV:
        """Repeat rows for beams / num_return_sequences (batch must be a multiple)."""
        have = self.k.shape[0]
        if have == batch:
            return self
        if batch % have:
            raise ValueError(f"memory batch {have} does not divide hidden batch {batch}")
        rep = batch // have
        return MemoryKV(*(x.repeat_interleave(rep, dim=0) for x in (self.k, self.v, self.mask, self.present, self.embeds)))


class _RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * x32).to(x.dtype)


class EpisodicAdapter(nn.Module):
    """The gated cross-attention block (see the module docstring)."""

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.query_norm = _RMSNorm(c.hidden_size, c.rms_eps)
        self.memory_norm = _RMSNorm(c.hidden_size, c.rms_eps)
        self.q_proj = nn.Linear(c.hidden_size, c.num_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, c.kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, c.kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.num_heads * c.head_dim, c.hidden_size, bias=False)
        self.null_kv = nn.Parameter(torch.zeros(2, c.kv_heads, c.head_dim))
        self.gate = nn.Parameter(torch.zeros(c.hidden_size))
        self.copy_gate = nn.Parameter(torch.zeros(()))
        self.copy_log_scale = nn.Parameter(torch.zeros(()))
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.o_proj):
            nn.init.normal_(lin.weight, std=0.02)
        self.attention_log: list[torch.Tensor] | None = None
        """Training only: when a list, each forward appends its head-averaged attention ``[B, T, 1+M]``."""

    @torch.no_grad()
    def init_from_attention(self, layer: Any) -> None:
        """Start as a copy of decoder layer ``n``'s self-attention, pointed at memory.

        Layer ``n`` reads exactly the hidden states the adapter sees, so its
        query/key/value/output projections and input norm already match tokens
        by content in this space; the adapter starts as "layer n also attending to
        memory" (without rotary positions) and training mostly has to open the
        gate and specialise. K/V heads are copied when the counts match, repeated
        for more heads, averaged for fewer (MQA).
        """
        c = self.config
        attn: Any = layer.self_attn
        norm: torch.Tensor = layer.input_layernorm.weight
        self.query_norm.weight.copy_(norm)
        self.memory_norm.weight.copy_(norm)
        self.q_proj.weight.copy_(attn.q_proj.weight)
        self.o_proj.weight.copy_(attn.o_proj.weight)
        base_kv = attn.k_proj.weight.shape[0] // c.head_dim
        if c.kv_heads % base_kv and base_kv % c.kv_heads:
            raise ConfigError(f"cannot map the layer's {base_kv} K/V heads onto {c.kv_heads}")
        for mine, theirs in ((self.k_proj, attn.k_proj), (self.v_proj, attn.v_proj)):
            w = theirs.weight.view(base_kv, c.head_dim, -1)
            if c.kv_heads >= base_kv:
                w = w.repeat_interleave(c.kv_heads // base_kv, dim=0)
            else:
                w = w.view(c.kv_heads, base_kv // c.kv_heads, c.head_dim, -1).mean(dim=1)
            mine.weight.copy_(w.reshape(c.kv_heads * c.head_dim, -1))

    def project_memory(self, memory: MemoryState) -> MemoryKV:
        """Project memory vectors to keys and values once per generation."""
        c = self.config
        m = self.memory_norm(memory.vectors.to(self.q_proj.weight.dtype))
        b, n, _ = m.shape
        k = self.k_proj(m).view(b, n, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(m).view(b, n, c.kv_heads, c.head_dim).transpose(1, 2)
        null_k = self.null_kv[0].unsqueeze(0).unsqueeze(2).expand(b, -1, 1, -1)
        null_v = self.null_kv[1].unsqueeze(0).unsqueeze(2).expand(b, -1, 1, -1)
        real = memory.mask.bool()
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=m.device), real], dim=1)
        emb = memory.embeds if memory.embeds is not None else torch.zeros_like(m)
        emb = torch.cat([torch.zeros_like(emb[:, :1]), emb.to(m.dtype)], dim=1)
        return MemoryKV(torch.cat([null_k, k], dim=2), torch.cat([null_v, v], dim=2), mask, real.any(dim=1), emb)

    def forward(self, hidden: torch.Tensor, memory: MemoryKV) -> torch.Tensor:
        """``hidden`` ``[B, T, hidden]`` → same shape, with the gated memory read added."""
        c = self.config
        b, t, _ = hidden.shape
        memory = memory.expand(b)
        x = self.query_norm(hidden.to(self.q_proj.weight.dtype))
        q = self.q_proj(x).view(b, t, c.num_heads, c.head_dim).transpose(1, 2)
        group = c.num_heads // c.kv_heads
        k = memory.k.repeat_interleave(group, dim=1)
        v = memory.v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / c.head_dim**0.5
        probs = scores.masked_fill(~memory.mask[:, None, None, :], float("-inf")).softmax(dim=-1)
        attn = probs @ v
        if self.attention_log is not None:
            self.attention_log.append(probs.mean(dim=1))
        read = torch.tanh(self.gate) * self.o_proj(attn.transpose(1, 2).reshape(b, t, c.num_heads * c.head_dim))
        if c.copy_scale:
            # Copy path: the memory tokens' own embeddings, weighted by where the heads look.
            # With tied embeddings this pushes the LM head straight towards the attended token.
            scale = torch.tanh(self.copy_gate) * c.copy_scale * self.copy_log_scale.exp()
            read = read + scale * (probs.mean(dim=1) @ memory.embeds)
        read = read * memory.present[:, None, None].to(read.dtype)
        return hidden + read.to(hidden.dtype)

    # -- persistence ---------------------------------------------------------------

    def save(self, folder: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        """Write ``adapter.safetensors`` and ``adapter_config.json`` (plus ``extra``) into ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))
        meta = {"adapter": asdict(self.config), **(extra or {})}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> tuple[EpisodicAdapter, dict[str, Any]]:
        """Load an adapter saved by :meth:`save`; returns it and the saved metadata."""
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            meta = json.loads((folder / CONFIG_FILE).read_text())
            state = load_file(str(folder / WEIGHTS_FILE))
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot read adapter weights from {folder}: {err}") from err
        adapter = cls(AdapterConfig(**meta["adapter"]))
        adapter.load_state_dict(state)
        return adapter, meta


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 of a saved adapter's weights file (recorded with results)."""
    return hashlib.sha256((Path(folder) / WEIGHTS_FILE).read_bytes()).hexdigest()


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layer list of a Llama/Qwen/Mistral-style causal LM (also under peft)."""
    for name, module in model.named_modules():
        if name.split(".")[-1] == "layers" and isinstance(module, nn.ModuleList):
            return module
    raise ConfigError(f"cannot find decoder layers in {type(model).__name__}")


@contextmanager
def _lora_off(model: nn.Module) -> Iterator[None]:
    """Base weights only: peft LoRA layers (a consolidated B2/B3 adapter) are switched off inside.

    Memory is encoded with the base weights the Episodic Adapter was trained on, whatever
    LoRA the decoder runs with (vLLM does the same: its memory encoder bypasses LoRA layers).
    A merged LoRA cannot be switched off and is refused rather than silently used.
    """
    switched: list[tuple[Any, dict[str, bool]]] = []
    for module in model.modules():
        m: Any = module  # peft's tuner layers carry enable_adapters / disable_adapters / merged
        if callable(getattr(m, "enable_adapters", None)) and hasattr(m, "disable_adapters") and hasattr(m, "merged"):
            if m.merged:
                raise ConfigError("memory encoding needs the base weights; unmerge the LoRA adapter first")
            if not m.disable_adapters:
                switched.append((m, {n: p.requires_grad for n, p in m.named_parameters()}))
                m.enable_adapters(False)
    try:
        yield
    finally:
        for m, grads in switched:
            m.enable_adapters(True)  # peft also marks the adapter trainable here: put the flags back as they were
            for n, p in m.named_parameters():
                p.requires_grad_(grads[n])


class _StopForward(Exception):
    """Raised by the capture hook to skip the decoder layers above the adapter."""


class AdapterHook:
    """Installs an :class:`EpisodicAdapter` into a causal LM and feeds it memory.

    Usage::

        hook = AdapterHook(model, adapter)
        state = hook.encode_memory(tokenizer, ["1. Nadia keeps the key in the attic."])
        with hook.memory(state):
            model.generate(...)       # every forward reads the memory
        hook.remove()

    Outside ``with hook.memory(...)`` (or with empty memory) the model is the base model.
    """

    def __init__(self, model: nn.Module, adapter: EpisodicAdapter) -> None:
        layers = decoder_layers(model)
        n = adapter.config.layer
        if not 0 <= n <= len(layers) or adapter.config.num_layers != len(layers):
            raise ConfigError(
                f"adapter was built for {adapter.config.num_layers} layers (after layer {n}); "
                f"this model has {len(layers)}"
            )
        self.model: Any = model
        self.adapter = adapter
        self._layers = layers
        self._kv: MemoryKV | None = None
        self._capture: list[torch.Tensor] | None = None
        if n == 0:
            self._handle = layers[0].register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        else:
            self._handle = layers[n - 1].register_forward_hook(self._post_hook)

    # Hooks: capture (memory encoding) takes precedence over reading.
    def _apply(self, hidden: torch.Tensor) -> torch.Tensor:
        if self._capture is not None:
            self._capture.append(hidden)
            raise _StopForward
        if self._kv is None:
            return hidden
        return self.adapter(hidden, self._kv)

    def _post_hook(self, module: nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (self._apply(output[0]), *output[1:])
        return self._apply(output)

    def _pre_hook(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> Any:
        if args:
            return (self._apply(args[0]), *args[1:]), kwargs
        kwargs["hidden_states"] = self._apply(kwargs["hidden_states"])
        return args, kwargs

    def remove(self) -> None:
        """Take the hook out; the model is the plain base model again."""
        self._handle.remove()

    @property
    def active(self) -> bool:
        return self._kv is not None

    def encode_memory(self, tokenizer: Any, texts: Sequence[str]) -> MemoryState:
        """Hidden states of each memory text after the adapter's layer, capped at ``max_mem_tokens``.

        Runs the base model (adapter off, no gradient, no cache) only up to the
        adapter's layer. Each text is encoded after the tokenizer's BOS token, as
        it would sit in a prompt; that start token soaks up attention inside the
        LM and is not itself a memory token. Empty texts give no memory for that row.
        """
        cap = self.adapter.config.max_mem_tokens
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:cap] if t.strip() else [] for t in texts]
        width = max((len(x) for x in ids), default=0)
        device = next(self.model.parameters()).device
        if width == 0:
            hidden = self.adapter.config.hidden_size
            empty = torch.zeros(len(texts), 0, hidden, device=device)
            return MemoryState(empty, torch.zeros(len(texts), 0, dtype=torch.bool, device=device), empty)
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else start
        input_ids = torch.tensor([[start, *x] + [pad] * (width - len(x)) for x in ids], device=device)
        attention = torch.tensor([[1] * (1 + len(x)) + [0] * (width - len(x)) for x in ids], device=device)
        with torch.no_grad():
            vectors = self._encode(input_ids, attention)
            embeds = self.model.get_input_embeddings()(input_ids[:, 1:])
        mask = attention[:, 1:].bool()
        return MemoryState(
            vectors=vectors[:, 1:].masked_fill(~mask[..., None], 0.0),
            mask=mask,
            embeds=embeds.masked_fill(~mask[..., None], 0.0),
        )

    def _encode(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        saved, self._kv = self._kv, None
        self._capture = []
        try:
            with _lora_off(self.model):
                self.model(input_ids=input_ids, attention_mask=mask, use_cache=False)
        except _StopForward:
            pass
        finally:
            captured, self._capture, self._kv = self._capture, None, saved
        if not captured:  # a model that returned without reaching the layer
            raise ConfigError("memory encoding did not reach the adapter layer")
        return captured[0].detach()

    @contextmanager
    def memory(self, state: MemoryState | None) -> Iterator[None]:
        """Within the block, forwards read ``state`` (nothing happens for empty memory)."""
        saved = self._kv
        self._kv = None if state is None or state.n_tokens == 0 else self.adapter.project_memory(state)
        try:
            yield
        finally:
            self._kv = saved


def added_params(adapter: EpisodicAdapter) -> int:
    """Number of parameters the adapter adds."""
    return sum(p.numel() for p in adapter.parameters())

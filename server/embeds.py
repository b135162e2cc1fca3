"""Memory as vectors: the packed memory text as input embeddings, for ``prompt_embeds`` or the adapter.

The ``embeds`` route sends vLLM the same chat as the ``text`` route, except that
the memory block arrives as a float tensor ``[tokens, hidden]`` instead of text:
its token ids are looked up in the base model's own embedding table, read from
the safetensors folder vLLM serves (only that tensor is loaded, ~113 MB for
SmolLM2-135M in float32). The tensor goes into the system message as a
``{"type": "prompt_embeds"}`` content part, vLLM 0.32's own encoding for
embeddings inside a chat (``vllm/renderers/chat_utils.py``); vLLM still renders
the chat template, tools and ``response_format`` around it, and its
``/v1/chat/completions`` stream and answer shapes are unchanged.

vLLM joins a message's content parts with ``"\\n"``, so the text part ends at
``Memory:`` and the newline the text route writes after it comes from the
join: the model sees the same token sequence on both routes (SmolLM2's
tokenizer splits at that newline either way), hence the same greedy answer.
A completion prompt goes whole as ``prompt_embeds`` (vLLM's completions
endpoint takes either text or embeddings, not a mix).

The ``adapter`` route sends the same embeddings (cut to the adapter's
``max_mem_tokens``) as an ``image_embeds`` part of the last user message to a
vLLM that serves the Episodic Adapter (:mod:`server.vllm_plugin`), and the
system message says ``Memory: (attached)``: the prompt of
``HeiNwForCausalLM.chat`` on its adapter route. It needs chat: vLLM's
completions endpoint carries no per-request multimodal data.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from pathlib import Path
from typing import Any, Literal

from hei_nw_plugin.errors import ConfigError, require_extra
from hei_nw_plugin.model.prompting import ADAPTER_MEMORY
from server.errors import ApiError
from server.prefix import DEFAULT_SYSTEM, message_text, prompt_with_memory, with_memory
from server.settings import VllmSettings

Route = Literal["text", "embeds", "adapter"]
ROUTES: tuple[str, ...] = ("text", "embeds", "adapter")
EMBED_KEY_SUFFIX = "embed_tokens.weight"


class MemoryEmbedder:
    """Token embeddings of the served model, loaded on first use (thread-safe).

    ``vllm.model`` is ``embedded:smollm2-135m`` or the local folder vLLM loads
    (``config.json``, tokenizer, ``*.safetensors``); it is resolved on first use,
    so a server that only takes the ``text`` route never loads it. The settings
    also say which routes the vLLM behind this server can take. Needs torch,
    transformers and safetensors (the ``model`` extra).
    """

    def __init__(self, vllm: VllmSettings) -> None:
        self.vllm = vllm
        self.model = vllm.model
        self.folder: Path | None = None
        self._lock = threading.Lock()
        self._table: Any = None
        self._tokenizer: Any = None

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._table is None:
                try:
                    from safetensors import safe_open
                    from transformers import AutoTokenizer
                except ImportError as err:
                    raise require_extra(err.name or "transformers", "model") from err
                from server.vllm_process import resolve_model_folder

                self.folder = resolve_model_folder(self.model)
                table = None
                for shard in sorted(self.folder.glob("*.safetensors")):
                    with safe_open(str(shard), framework="pt") as f:
                        key = next((k for k in f.keys() if k.endswith(EMBED_KEY_SUFFIX)), None)  # noqa: SIM118 (safe_open is no dict)
                        if key is not None:
                            table = f.get_tensor(key)
                            break
                if table is None:
                    raise ConfigError(f"no '*{EMBED_KEY_SUFFIX}' tensor in the safetensors files of {self.folder}")
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
                self._table = table
        return self._table, self._tokenizer

    @property
    def hidden_size(self) -> int:
        return int(self._load()[0].shape[1])

    def embed(self, text: str, *, add_special_tokens: bool = False, max_tokens: int | None = None) -> Any:
        """``[tokens, hidden]`` float tensor of ``text``'s first ``max_tokens`` tokens (a copy, not a view of the table)."""
        import torch

        table, tok = self._load()
        ids = tok(text, add_special_tokens=add_special_tokens)["input_ids"][:max_tokens]
        return table.index_select(0, torch.tensor(ids, dtype=torch.long))

    def encode(self, text: str, *, add_special_tokens: bool = False, max_tokens: int | None = None) -> str:
        """``text``'s embeddings serialised the way vLLM reads ``prompt_embeds`` and ``*_embeds``: base64 of ``torch.save``.

        ``embed`` returns a fresh tensor; saving a view would write the whole table's storage.
        """
        import torch

        buf = io.BytesIO()
        torch.save(self.embed(text, add_special_tokens=add_special_tokens, max_tokens=max_tokens).contiguous(), buf)
        return base64.b64encode(buf.getvalue()).decode("ascii")

    def check(self, route: str, *, chat: bool) -> None:
        """Raise a 400 when the vLLM behind this server cannot take ``route``."""
        v = self.vllm
        if route == "embeds" and (v.episodic_adapter or not v.enable_prompt_embeds):
            raise ApiError(400, "memory route 'embeds' needs vLLM with --enable-prompt-embeds (vllm.enable_prompt_embeds, "
                                "not available with vllm.episodic_adapter)", code="route_unavailable")
        if route == "adapter" and not v.episodic_adapter:
            raise ApiError(400, "memory route 'adapter' needs vLLM serving the Episodic Adapter (vllm.episodic_adapter = true)",
                           code="route_unavailable")
        if route == "adapter" and not chat:
            raise ApiError(400, "memory route 'adapter' works with chat completions only (vLLM's completions endpoint "
                                "takes no per-request memory)", code="route_unavailable")


def with_memory_embeds(messages: list[dict[str, Any]], memory_text: str, embeds_b64: str) -> list[dict[str, Any]]:
    """Like :func:`server.prefix.with_memory`, with the memory block as a ``prompt_embeds`` part."""
    if not memory_text.strip():
        return messages
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        head = f"{message_text(out[0].get('content'))}\n\nMemory:"
    else:
        out.insert(0, {"role": "system"})
        head = f"{DEFAULT_SYSTEM}\n\nMemory:"
    out[0]["content"] = [{"type": "text", "text": head}, {"type": "prompt_embeds", "data": embeds_b64}]
    return out


def with_memory_adapter(messages: list[dict[str, Any]], memory_text: str, embeds_b64: str) -> list[dict[str, Any]]:
    """The chat for the Episodic Adapter: ``Memory: (attached)`` in the system message, the memory
    tokens' embeddings as an ``image_embeds`` part of the last message (the decoder never sees them)."""
    if not memory_text.strip():
        return messages
    from server.vllm_plugin import MEMORY_MODALITY

    out = with_memory(messages, ADAPTER_MEMORY)
    out[-1]["content"] = [{"type": "text", "text": message_text(out[-1].get("content"))},
                          {"type": f"{MEMORY_MODALITY}_embeds", f"{MEMORY_MODALITY}_embeds": embeds_b64}]
    return out


async def messages_with_memory(embedder: MemoryEmbedder, route: str, messages: list[dict[str, Any]],
                              memory_text: str) -> list[dict[str, Any]]:
    """The chat sent to vLLM: memory as text or vectors in the system message, or read by the adapter."""
    embedder.check(route, chat=True)
    if route == "embeds" and memory_text.strip():
        data = await asyncio.to_thread(embedder.encode, memory_text)
        return with_memory_embeds(messages, memory_text, data)
    if route == "adapter" and memory_text.strip():
        from server.vllm_plugin import adapter_max_tokens

        data = await asyncio.to_thread(embedder.encode, memory_text, max_tokens=adapter_max_tokens(embedder.vllm.adapter_weights))
        return with_memory_adapter(messages, memory_text, data)
    return with_memory(messages, memory_text)


async def completion_with_memory(embedder: MemoryEmbedder, route: str, body: dict[str, Any], prompt: str,
                                 memory_text: str) -> None:
    """Put memory in front of a completion ``prompt`` in ``body``: text, or (route ``embeds``) the
    whole prompt as ``prompt_embeds``, tokenised as vLLM would (with the tokenizer's special tokens)."""
    embedder.check(route, chat=False)
    full = prompt_with_memory(prompt, memory_text)
    if route == "embeds" and memory_text.strip():
        body.pop("prompt", None)
        body["prompt_embeds"] = await asyncio.to_thread(embedder.encode, full, add_special_tokens=True)
    else:
        body["prompt"] = full


def route_of(body_route: Any, header_route: str | None, default: str) -> str:
    """The memory route of a request: ``hei_route`` in the body, else ``X-HEI-Route``, else ``default``."""
    r = body_route if body_route is not None else header_route
    if r is None:
        return default
    if not isinstance(r, str) or r.lower() not in ROUTES:
        raise ApiError(400, f"hei_route must be one of {', '.join(ROUTES)}, got {r!r}", code="invalid_route")
    return r.lower()

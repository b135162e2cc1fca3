"""HEI-NW inside vLLM: the Episodic Adapter as an out-of-tree vLLM model.

:func:`register` is the ``vllm.general_plugins`` entry point (``pyproject.toml``):
vLLM calls it in every process it starts, and it registers
:data:`ARCHITECTURE` lazily (by module path), so importing this package needs
neither vLLM nor torch. The model itself lives in :mod:`server.vllm_plugin.episodic`
and is only imported inside vLLM's own virtual environment.

A vLLM serves it when started with :func:`vllm_args` (``--hf-overrides`` turns
the plain Llama folder into this architecture; no second copy of the weights).
"""

from __future__ import annotations

import json
from pathlib import Path

ARCHITECTURE = "HeiNwEpisodicLlamaForCausalLM"
MODULE = "server.vllm_plugin.episodic"
SHIPPED_ADAPTER = Path(__file__).resolve().parents[2] / "hei_nw_plugin" / "weights"
MEMORY_MODALITY = "image"
"""The chat content part that carries memory (``image_embeds``): vLLM 0.32's chat parser accepts a fixed set
of part types (``MM_PARSER_MAP`` in ``vllm/renderers/chat_utils.py``), so memory rides on the embeddings one."""


def adapter_max_tokens(adapter_folder: str | Path | None = None) -> int:
    """Memory tokens the adapter reads (``max_mem_tokens`` of its config; longer memory is cut)."""
    meta = json.loads((Path(adapter_folder or SHIPPED_ADAPTER) / "adapter_config.json").read_text())
    return int(meta["adapter"].get("max_mem_tokens", 128))


def register() -> None:
    """Register the Episodic Adapter model with vLLM (idempotent)."""
    from vllm import ModelRegistry

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, f"{MODULE}:{ARCHITECTURE}")


def vllm_args(adapter_folder: str | Path | None = None) -> list[str]:
    """Extra vLLM server arguments that serve the base model folder with the adapter.

    ``is_encoder_decoder`` makes vLLM run the per-request memory "encoder" and keep the
    adapter's keys/values in a cross-attention KV cache (the Whisper path).
    """
    overrides = {"architectures": [ARCHITECTURE], "is_encoder_decoder": True,
                 "hei_adapter_weights": str(Path(adapter_folder or SHIPPED_ADAPTER).resolve())}
    return ["--hf-overrides", json.dumps(overrides), "--enable-mm-embeds",
            "--limit-mm-per-prompt", json.dumps({MEMORY_MODALITY: 1})]

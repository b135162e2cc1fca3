"""The language-model side of HEI-NW (needs the ``[model]`` extra).

``loading`` turns ``ModelSettings`` into a local causal LM and tokenizer (the
embedded SmolLM2 GGUF is converted once into a cached safetensors folder);
``prompting`` holds the one-shot answer prompt; ``train_data`` generates the
adapter's training QA. The adapter, wrapper and surprise scorer are the
top-level modules ``hei_nw_plugin.adapter``, ``.wrapper`` and ``.surprise``.
"""

from __future__ import annotations

from hei_nw_plugin.model.loading import (
    EMBEDDED_SMOLLM2,
    LoadedModel,
    default_cache_dir,
    embedded_gguf_path,
    generation_record,
    load_base_model,
    resolve_model_path,
)

__all__ = [
    "EMBEDDED_SMOLLM2",
    "LoadedModel",
    "default_cache_dir",
    "embedded_gguf_path",
    "generation_record",
    "load_base_model",
    "resolve_model_path",
]

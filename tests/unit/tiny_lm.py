"""A tiny random Llama and a byte-level tokenizer with a ChatML template, for model unit tests.

Shapes mirror SmolLM2 in miniature (GQA, tied embeddings) so the adapter, the
KV-cache path and the wrapper run for real in milliseconds, offline.
"""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE without merges: every byte is a token, plus ChatML specials."""
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|im_start|>"] = len(vocab)
    vocab["<|im_end|>"] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>"
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


def tiny_model(seed: int = 0, **over: Any) -> LlamaForCausalLM:
    """A 5-layer, 64-wide random Llama (4 query heads, 2 KV heads), eval mode."""
    torch.manual_seed(seed)
    cfg = {
        "vocab_size": 260, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 5, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 512, "tie_word_embeddings": True,
        "bos_token_id": 256, "eos_token_id": 257, "pad_token_id": 257,
    }
    cfg.update(over)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    return model.eval()

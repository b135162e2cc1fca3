"""Model surprise for the write gate: mean token NLL of a text under the language model.

The gate maps it with ``min(1, nll / surprise_scale)``. The text is scored on
its own, after a single start token (the tokenizer's BOS, else EOS) so the first
real token is scored too; texts longer than ``max_tokens`` are truncated (the
gate only needs an estimate). Scoring always uses the base model: the wrapper
passes a context that switches the Episodic Adapter and any LoRA off.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

try:
    import torch
    import torch.nn.functional as F
except ImportError as err:  # pragma: no cover - exercised only without the extra
    from hei_nw_plugin.errors import require_extra

    raise require_extra("torch", "model") from err


class ModelNLLSurprise:
    """A :class:`~hei_nw_plugin.gate.SurpriseScorer` backed by a causal LM.

    ``base_context`` returns a context manager under which the model is the plain
    base model (the wrapper uses it to switch adapters off); thread-safe.
    """

    name = "model_nll"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_tokens: int = 256,
        base_context: Callable[[], AbstractContextManager[Any]] | None = None,
        cache_size: int = 4096,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self._base_context = base_context or nullcontext
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, float] = OrderedDict()
        """Scores of recently seen texts (base-model NLL is a pure function of the text)."""
        self.cache_size = cache_size
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ValueError("tokenizer has neither a BOS nor an EOS token to start scoring from")
        self._start = int(start)

    def nll(self, text: str) -> float:
        """Mean NLL of ``text`` in nats per token (0.0 for text with no tokens)."""
        return self.nll_many([text])[0]

    def nll_many(self, texts: Sequence[str]) -> list[float]:
        """Mean NLL (nats/token) of each text, scored as one padded batch (repeats come from a cache)."""
        with self._lock:
            known = {t: self._cache[t] for t in texts if t in self._cache}
        fresh = list(dict.fromkeys(t for t in texts if t not in known))
        scored = dict(zip(fresh, self._score(fresh), strict=True)) if fresh else {}
        if scored and self.cache_size > 0:
            with self._lock:
                self._cache.update(scored)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return [known[t] if t in known else scored[t] for t in texts]

    def _score(self, texts: Sequence[str]) -> list[float]:
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"][: self.max_tokens] for t in texts]
        out = [0.0] * len(texts)
        todo = [i for i, x in enumerate(ids) if x]
        if not todo:
            return out
        width = 1 + max(len(ids[i]) for i in todo)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._start
        device = next(self.model.parameters()).device
        rows = [[self._start, *ids[i]] for i in todo]
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        with self._lock, self._base_context(), torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
        nll = F.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), input_ids[:, 1:], reduction="none"
        ) * mask[:, 1:]
        per_text = nll.sum(dim=1) / mask[:, 1:].sum(dim=1)
        for i, value in zip(todo, per_text.tolist()):
            out[i] = value if math.isfinite(value) else 0.0
        return out

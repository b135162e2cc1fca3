"""Word tokens and signed feature hashing: the text features the keyer, the gate and the hashing embedder share.

Kept apart from :mod:`hei_nw_plugin.keyer` and :mod:`hei_nw_plugin.embed` so neither
imports the other (the keyer needs an embedder; the model-free embedder needs hashing).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np

_TOKEN = re.compile(r"[\w']+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _TOKEN.findall(text.lower())


def _hash64(token: str, seed: int) -> int:
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8, key=seed.to_bytes(8, "little", signed=True)).digest()
    return int.from_bytes(digest, "little")


def hash_tokens(tokens: Iterable[str], out: np.ndarray, *, seed: int = 0, weight: float = 1.0) -> None:
    """Add signed hashed counts of ``tokens`` into ``out`` (in place)."""
    width = out.shape[0]
    for tok in tokens:
        h = _hash64(tok, seed)
        out[h % width] += weight if (h >> 63) & 1 else -weight

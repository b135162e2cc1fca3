"""Deterministic packer: recalled traces → at most ``max_mem_tokens`` memory tokens.

The template is fixed (one numbered line per trace, best first: text, then the
slots as ``key=value`` pairs), so the same recall always packs to the same
string. Tokens are counted with the model's tokenizer when one is given, else
with a word/punctuation counter. PII is redacted by default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from hei_nw_plugin.config import PackSettings
from hei_nw_plugin.types import MemoryTokens, Trace

TokenCounter = Callable[[str], int]

_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def count_tokens_fallback(text: str) -> int:
    """Word and punctuation count: a model-free upper-bound-ish estimate of tokens."""
    return len(_WORDS.findall(text))


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
_GOV_ID = re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z]{2}\d{6}[A-D]\b")
_IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
_IPV6 = re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b|\b(?:[0-9a-fA-F]{1,4}:){1,6}:(?:[0-9a-fA-F]{1,4})?\b")
_PHONE = re.compile(r"(?<![\w])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}(?![\w])")


def redact(text: str, kinds: Sequence[str] = ("email", "phone", "card", "gov_id", "ip")) -> str:
    """Replace PII with ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[GOV_ID]``, ``[IP]``."""
    if "email" in kinds:
        text = _EMAIL.sub("[EMAIL]", text)
    if "card" in kinds:
        text = _CARD.sub(lambda m: "[CARD]" if _luhn_ok(re.sub(r"\D", "", m.group())) else m.group(), text)
    if "gov_id" in kinds:
        text = _GOV_ID.sub("[GOV_ID]", text)
    if "ip" in kinds:
        text = _IPV6.sub("[IP]", _IPV4.sub("[IP]", text))
    if "phone" in kinds:
        text = _PHONE.sub("[PHONE]", text)
    return text


class Packer:
    """Packs traces into :class:`MemoryTokens` within the token budget."""

    def __init__(self, settings: PackSettings, *, token_counter: TokenCounter | None = None) -> None:
        self.settings = settings
        self.count = token_counter or count_tokens_fallback

    def line(self, rank: int, trace: Trace) -> str:
        text = " ".join(trace.text.split())
        if self.settings.include_slots and trace.slots:
            slots = "; ".join(f"{k}={trace.slots[k]}" for k in sorted(trace.slots))
            text = f"{text} ({slots})"
        when = trace.created_at.strftime("%Y-%m-%d")
        line = f"{rank}. [{when}] {text}"
        return redact(line, self.settings.pii_kinds) if self.settings.redact_pii else line

    def pack(self, traces: Sequence[Trace], *, max_tokens: int | None = None) -> MemoryTokens:
        """Lines in the given order until the budget is spent; a first line too long is cut by tokens."""
        budget = min(max_tokens or self.settings.max_mem_tokens, self.settings.max_mem_tokens)
        lines: list[str] = []
        ids: list[str] = []
        truncated = False
        for trace in traces:
            line = self.line(len(lines) + 1, trace)
            if self.count("\n".join([*lines, line])) <= budget:
                lines.append(line)
                ids.append(trace.id)
                continue
            truncated = True
            if not lines:  # keep at least part of the best trace
                cut = self._cut(self.line(1, trace), budget)
                if cut:
                    lines.append(cut)
                    ids.append(trace.id)
            break
        text = "\n".join(lines)
        return MemoryTokens(text=text, n_tokens=self.count(text) if text else 0, trace_ids=ids, truncated=truncated)

    def _cut(self, line: str, budget: int) -> str:
        words = line.split(" ")
        lo, hi = 0, len(words)
        while lo < hi:  # longest word prefix within budget
            mid = (lo + hi + 1) // 2
            if self.count(" ".join(words[:mid])) <= budget:
                lo = mid
            else:
                hi = mid - 1
        return " ".join(words[:lo])

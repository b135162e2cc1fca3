"""Speaker attribution: does the recalled memory speak for the person a question asks about?

In a conversation memory, "What did Caroline realize after her charity race?" is not answered by
Melanie's turn about her own charity race, however close the two are in meaning; a small reader
answers from whatever it is shown, so it would credit Caroline with Melanie's words. The rule is
deliberately narrow and has nothing to tune: it applies only to traces with a ``speaker`` slot,
only when the question names exactly one of the recalled traces' speakers (whole word, as written),
and it fires when the best recalled trace was said by someone else. The reader then abstains
(``model.reader_speaker_check``). On LoCoMo dev5 it fired on 77 of 237 adversarial questions and on
68 of 762 answerable ones (``reports/full/NOTES.md``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hei_nw_plugin.types import Trace

SPEAKER_SLOT = "speaker"


def trace_speaker(trace: Trace) -> str | None:
    """Who said ``trace`` (its ``speaker`` slot), or None."""
    value = trace.slots.get(SPEAKER_SLOT)
    return (str(value).strip() or None) if value is not None else None


def other_speaker(question: str, ranked: Sequence[Trace]) -> str | None:
    """The speaker of the best of ``ranked`` (best first) when ``question`` names exactly one other
    speaker of these traces; None when the rule does not apply or the speakers agree."""
    speakers = [trace_speaker(t) for t in ranked]
    if not speakers or speakers[0] is None:
        return None
    named = {s for s in speakers if s and re.search(rf"(?<!\w){re.escape(s)}(?!\w)", question)}
    if len(named) != 1 or speakers[0] in named:
        return None
    return speakers[0]


__all__ = ["SPEAKER_SLOT", "other_speaker", "trace_speaker"]

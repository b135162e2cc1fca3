"""The speaker check: a question about one speaker is not answered from another speaker's turn."""

from __future__ import annotations

from datetime import UTC, datetime

from hei_nw_plugin.attribution import other_speaker, trace_speaker
from hei_nw_plugin.types import SourcePointer, Trace


def _trace(text: str, speaker: str | None) -> Trace:
    slots = {"speaker": speaker} if speaker is not None else {}
    return Trace(id=text[:8], namespace="u", text=text, slots=slots, source=SourcePointer(),
                 created_at=datetime.now(UTC), pinned=False, gate_score=1.0)


MEL = _trace("Melanie: I ran a charity race last Saturday.", "Melanie")
CAR = _trace("Caroline: I went to a support group.", "Caroline")


def test_best_trace_by_another_named_speaker_fires() -> None:
    assert other_speaker("What did Caroline realize after her charity race?", [MEL, CAR]) == "Melanie"
    assert other_speaker("What did Caroline's friends say?", [MEL, CAR]) == "Melanie"  # possessive is the name


def test_same_speaker_two_names_or_no_name_pass() -> None:
    assert other_speaker("What did Melanie run last Saturday?", [MEL, CAR]) is None
    assert other_speaker("Did Melanie tell Caroline about the race?", [MEL, CAR]) is None  # names both
    assert other_speaker("Who ran a charity race?", [MEL, CAR]) is None
    assert other_speaker("What did Caroline do?", []) is None


def test_traces_without_speakers_and_partial_names_never_fire() -> None:
    plain = _trace("The key is in the shed.", None)
    assert trace_speaker(plain) is None
    assert other_speaker("What did Caroline hide?", [plain, CAR]) is None  # best trace has no speaker
    assert other_speaker("What did Carolinesque music sound like?", [MEL, CAR]) is None  # whole words only

"""The records HEI-NW passes around: events in, decisions and recalls out.

Everything here is a pydantic model so that bad input fails at the boundary with
a message naming the field, and so that results serialise to JSON unchanged.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

SlotValue = StrictStr | StrictInt | StrictFloat | StrictBool
DEFAULT_NAMESPACE = "default"


class SourcePointer(BaseModel):
    """Where a trace came from: enough to find the original, never a copy of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conversation_id: str | None = Field(None, max_length=512, description="Conversation / thread id.")
    document_id: str | None = Field(None, max_length=512, description="Document id, for non-chat sources.")
    turn: int | None = Field(None, ge=0, description="Turn index within the conversation.")
    start: int | None = Field(None, ge=0, description="Start offset of the span in characters.")
    end: int | None = Field(None, ge=0, description="End offset of the span in characters.")


class MemoryEvent(BaseModel):
    """Something that happened to the agent, offered to the write gate.

    ``text`` is the span worth remembering; ``slots`` are any structured key/value
    pairs (who, what, where, when, entity ids, …). ``reward`` ∈ [0, 1] and ``pin``
    come from the caller; ``pin=True`` means "remember this" and is never evicted.
    """

    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(..., description="Span text to remember (a redacted copy is stored).")
    slots: dict[StrictStr, SlotValue] = Field(default_factory=dict, description="Structured slots.")
    key: StrictStr | None = Field(None, min_length=1, max_length=512, description="Caller's stable key; writing an existing key replaces that trace (newest wins).")
    metadata: dict[StrictStr, Any] = Field(default_factory=dict, description="JSON-serialisable payload stored encrypted beside the text; not used for keys.")
    source: SourcePointer = Field(default_factory=SourcePointer, description="Pointer to the source.")
    reward: float = Field(0.0, ge=0.0, le=1.0, description="Caller reward in [0, 1].")
    pin: StrictBool = Field(False, description="Force-write and protect from eviction (ttl_s is ignored for pinned traces).")
    force: StrictBool = Field(False, description="Write whatever the gate score (reason 'forced') without pinning; decay still applies.")
    timestamp: datetime | None = Field(None, description="When it happened (UTC if naive); default now.")
    ttl_s: float | None = Field(None, gt=0, description="Time-to-live in seconds; overrides decay.ttl_s.")
    context_tokens: int | None = Field(None, ge=0, description="Tokens observed since the last event (gate telemetry); default the text's tokens.")
    label: StrictBool | None = Field(None, description="Ground-truth should-remember label (evaluation only).")

    @field_validator("reward")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("reward must be a finite number")
        return v


class Cue(BaseModel):
    """A partial cue: free text and/or any subset of slots."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field("", description="Cue text (a question or a fragment).")
    slots: dict[StrictStr, SlotValue] = Field(default_factory=dict, description="Known slots of the episode sought.")


class GateComponents(BaseModel):
    """Each term of S = α·surprise + β·novelty + γ·reward + δ·pin, before weighting."""

    surprise: float
    novelty: float
    reward: float
    pin: float
    surprise_source: str = Field(description="'model_nll', 'model_nll+proxy' or 'unigram_proxy'.")


class WriteDecision(BaseModel):
    """What the gate decided about one event."""

    accepted: bool = Field(description="True when the event was stored, salient or cold (see ``tier``).")
    score: float = Field(description="S, the weighted gate score.")
    threshold: float = Field(description="τ at decision time.")
    components: GateComponents
    reason: str = Field(description="'pinned', 'forced', 'update', 'above_threshold', 'cold' (below τ, kept cold), "
                                    "'below_threshold' (below τ, dropped: gate.cold_writes off) or 'duplicate'.")
    trace_id: str | None = Field(None, description="Id of the stored trace when accepted.")
    namespace: str
    tier: Literal["salient", "cold"] | None = Field(
        None, description="How the trace is kept: 'salient' (passed the gate), 'cold' (below τ, kept with a lower rank and "
                          "faster decay; gate.cold_writes), None when nothing was stored.")


class Trace(BaseModel):
    """A stored episode, decrypted: pointer, slots and a redacted span."""

    id: str
    namespace: str
    key: str | None = None
    text: str
    slots: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: SourcePointer
    created_at: datetime
    pinned: bool
    gate_score: float
    recall_count: int = 0
    expires_at: datetime | None = None
    tier: Literal["salient", "cold"] = Field("salient", description="'cold' for a below-threshold event kept by gate.cold_writes.")


class MemoryTokens(BaseModel):
    """The packed memory handed to a model: text capped at ``max_mem_tokens``."""

    text: str
    n_tokens: int = Field(description="Tokens counted with the model tokenizer (or the fallback counter).")
    trace_ids: list[str] = Field(description="Traces that made it into the budget, in order.")
    truncated: bool = Field(False, description="True when the budget cut something off.")


class RecalledTrace(BaseModel):
    """One recalled trace with its scores."""

    trace: Trace
    score: float = Field(description="Final score after Hopfield re-ranking (higher is better).")
    ann_similarity: float = Field(description="Cosine between the cue and the trace in feature space.")
    hopfield_weight: float = Field(description="Softmax weight of this trace in the completed pattern.")
    lexical_score: float = Field(0.0, description="BM25 of the cue's terms against this trace (0 when none match).")
    hop: int = Field(1, description="1: found by the cue; 2: found by chained recall from the first hop's best trace.")


class RecallResult(BaseModel):
    """What recall returns: ranked traces, the packed memory and a timing breakdown in ms."""

    namespace: str
    traces: list[RecalledTrace]
    memory_tokens: MemoryTokens
    timings_ms: dict[str, float] = Field(description="embed, ann, hopfield, fetch, pack and total, in ms.")

    @property
    def texts(self) -> list[str]:
        return [r.trace.text for r in self.traces]

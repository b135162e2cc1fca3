"""Episodes and questions: what the harness writes to memory and asks about.

Scenario generators and dataset loaders emit the same :class:`Episode` and
:class:`Question`, so a runner needs no per-source code. For the scenarios,
an :class:`Item` is a private stream of episodes (facts, hard negatives and
filler, in write order) followed by one :class:`Question`. Scenario D shares one
large store between its questions, so a :class:`Split` may also carry
``shared_episodes`` that are written once, before any item's own episodes, into
the namespace every item of that split recalls from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EpisodeRole = Literal["fact", "hard_negative", "superseded", "update", "context", "filler"]
"""Why an episode is in the stream.

``fact``: holds the gold answer; ``update``: a later fact that overrides an
earlier one (scenario B; the newest is the evidence); ``superseded``: a fact
that was true when written and has since been overridden; ``hard_negative``: a
true episode that shares most slots with the evidence but answers differently;
``context``: other true episodes of the same kind (other stories, other
preferences); ``filler``: chit-chat the write gate should reject.
"""


class SourceRef(BaseModel):
    """Where an episode sits in its conversation (mirrors the engine's SourcePointer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conversation_id: str = Field(description="Conversation id (the item id, or the split id for shared stores).")
    turn: int = Field(ge=0, description="0-based position of the episode in that conversation's write order.")
    speaker: str | None = Field(None, description="Who said it, for dialogue-shaped scenarios (E) and datasets.")


class Episode(BaseModel):
    """One event offered to memory, with the ground truth the evaluation needs."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique id within the split.")
    text: str = Field(description="The span as the agent observed it.")
    slots: dict[str, str] = Field(default_factory=dict, description="Structured who/what/where/when-style slots.")
    timestamp: datetime | None = Field(None, description="When it happened (UTC). Datasets without times leave it None.")
    should_remember: bool | None = Field(None, description="Write-gate label: True for facts, False for chit-chat; None when unknown.")
    role: EpisodeRole | None = Field(None, description="Why the generator put this episode in the stream.")
    key: str | None = Field(None, description="A caller's stable key for facts that get overridden (scenario B), else None.")
    source: SourceRef | None = Field(None, description="Pointer to the episode's place in its conversation.")


class Question(BaseModel):
    """A partial cue and its gold answer."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique id within the split.")
    cue: str = Field(description="The question as a user would ask it.")
    cue_slots: dict[str, str] = Field(default_factory=dict, description="The slots the cue names (a subset of the evidence's slots).")
    answer: str = Field(description="Gold answer: a short span (one or two words for generated scenarios).")
    answer_slot: str | None = Field(None, description="Which slot of the evidence episode holds the answer.")
    aliases: list[str] = Field(default_factory=list, description="Other accepted surface forms of the answer.")
    evidence: list[str] = Field(description="Ids of the episodes that answer the question (empty only for dataset questions without annotated evidence).")
    confusers: list[str] = Field(default_factory=list, description="Ids of episodes that match all but one cue slot (hard negatives, superseded facts, D's near-twins); outside D they also answer differently.")
    category: str | None = Field(None, description="Dataset category (LoCoMo 1-5, bAbI task) or None.")
    asked_after: str | None = Field(None, description="Id of the last episode written before the question is asked; None means after all of them.")


class OneShotExample(BaseModel):
    """A worked example that shows the model the answer format (no eval vocabulary in it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    context: str
    question: str
    answer: str


class Item(BaseModel):
    """One evaluation item: a stream of episodes, then a question."""

    model_config = ConfigDict(extra="forbid")

    id: str
    scenario: Literal["A", "B", "C", "D", "E"]
    condition: str = Field(description="The generator condition this item belongs to.")
    seed: int = Field(description="Seed of the split the item was generated under.")
    episodes: list[Episode] = Field(description="Episodes in write order (empty when the split's shared store holds them).")
    question: Question
    time_lag: int = Field(ge=0, description="Episodes written after the (last) evidence episode and before the question.")
    one_shot: OneShotExample

    def episode(self, episode_id: str) -> Episode:
        """The item's episode with that id (KeyError when absent)."""
        for ep in self.episodes:
            if ep.id == episode_id:
                return ep
        raise KeyError(episode_id)

    def transcript(self, *, with_times: bool = False) -> str:
        """The episodes as one text block, one line each (the long-context baseline's prompt)."""
        lines = []
        for ep in self.episodes:
            prefix = f"[{ep.timestamp:%Y-%m-%d %H:%M}] " if with_times and ep.timestamp else ""
            lines.append(prefix + ep.text)
        return "\n".join(lines)


class Split(BaseModel):
    """What one generator call returns."""

    model_config = ConfigDict(extra="forbid")

    scenario: Literal["A", "B", "C", "D", "E"]
    condition: str
    seed: int
    items: list[Item]
    shared_episodes: list[Episode] = Field(
        default_factory=list,
        description="Episodes written once before every item (scenario D's store); empty elsewhere.",
    )

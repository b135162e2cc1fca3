"""What determines one consolidation (:class:`ConsolidationConfig`, recorded in each lineage) and its step budget.

Its own module so that the training loop (:mod:`hei_nw_plugin.consolidation_train`) and the worker
(:mod:`hei_nw_plugin.consolidate`) both read it without importing each other.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ConsolidationConfig(BaseModel):
    """Everything that determines a consolidation (recorded in each lineage)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replay_size: int = Field(64, ge=1, description="Traces the scheduler picks per consolidation (the replay budget).")
    order: Literal["ca2", "shuffled"] = Field("ca2", description="Scheduler ordering: CA2 priority or the shuffled ablation.")
    rehearse: int = Field(64, ge=0, description="Traces of earlier accepted versions rehearsed beside the new ones.")
    max_steps: int = Field(60, ge=1, description="Optimizer steps cap per consolidation.")
    epochs: float = Field(2.0, gt=0, description="Passes over the rows; steps = min(max_steps, ceil(epochs·rows/batch)).")
    max_seconds: float = Field(1800.0, gt=0, description="Training wall-clock cap (s); past it a checkpoint is left for the next step().")
    batch_size: int = Field(8, ge=1, description="Rows per optimizer step.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (cosine decay after warmup).")
    warmup_steps: int = Field(5, ge=0, description="Linear warmup steps.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scale alpha/r).")
    lora_targets: tuple[str, ...] = Field(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                                          description="Modules that get LoRA weights.")
    lm_rows: bool = Field(True, description="Train a language-model row on each trace's text.")
    qa_rows: bool = Field(True, description="Train Cue→Answer rows built from each trace's slots.")
    anchors: int = Field(128, ge=0, description="General questions (disjoint from the drift set) rehearsed with their "
                                                "reference answers: prior preservation against forgetting; 0 turns it off.")
    seed: int = Field(0, description="Seed of row order, rehearsal sample and LoRA init.")
    checkpoint_every: int = Field(20, ge=1, description="Steps between checkpoints.")
    drift_max_drop: int = Field(1, ge=0, description="Base-task questions a version may lose before it is rejected.")
    drift_check: bool = Field(True, description="Run the drift guard (off only for tests and ablations).")
    device: str = Field("cpu", description="Torch device for training and the drift check.")


def steps_for(rows: int, cfg: ConsolidationConfig) -> int:
    """Optimizer steps of one consolidation: ``min(max_steps, ceil(epochs · rows / batch_size))``."""
    return max(1, min(cfg.max_steps, math.ceil(cfg.epochs * rows / cfg.batch_size)))


__all__ = ["ConsolidationConfig", "steps_for"]

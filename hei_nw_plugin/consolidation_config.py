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

    replay_size: int = Field(24, ge=1, description="Traces the scheduler picks per consolidation (the replay budget).")
    order: Literal["ca2", "shuffled"] = Field("ca2", description="Scheduler ordering: CA2 priority or the shuffled ablation.")
    rehearse: int = Field(24, ge=0, description="Traces of earlier accepted versions rehearsed beside the new ones.")
    rehearse_paraphrase: bool = Field(False, description="Ask rehearsed traces in every wording too (off: the plain "
                                                         "wording only, as measured in reports/consolidation; with it, "
                                                         "a second cycle lost 7 of the first one's 9 answers).")
    max_steps: int = Field(100, ge=1, description="Optimizer steps cap per consolidation.")
    epochs: float = Field(6.0, gt=0, description="Passes over the rows at most; steps = min(max_steps, ceil(epochs·rows/batch)).")
    stop_train_em: float = Field(0.95, gt=0, le=1.01, description="Stop once this share of the Cue→Answer rows is answered "
                                                                 "exactly (teacher forcing); above 1 never stops early.")
    check_every: int = Field(10, ge=1, description="Steps between train-EM checks.")
    max_seconds: float = Field(900.0, gt=0, description="Training wall-clock cap (s); past it a checkpoint is left for the next step().")
    batch_size: int = Field(16, ge=1, description="Rows per optimizer step.")
    lr: float = Field(5e-3, gt=0, description="Peak learning rate (cosine decay after warmup).")
    warmup_steps: int = Field(5, ge=0, description="Linear warmup steps.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scale alpha/r).")
    lora_targets: tuple[str, ...] = Field(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                                          description="Modules that get LoRA weights.")
    lora_from_depth: float = Field(0.5, ge=0, lt=1, description="LoRA weights go into the decoder layers from this "
                                                                "fraction of its depth up (0: every layer; 0.5: layers "
                                                                "15-29 of 30). Layers below need no backward pass; "
                                                                "chosen by measurement (docs/model.md).")
    lm_rows: bool = Field(False, description="Also train a language-model row on each trace's text (off: it raised "
                                                 "held-text perplexity, and the Cue→Answer rows carry the facts).")
    qa_rows: bool = Field(True, description="Train Cue→Answer rows built from each trace's slots.")
    paraphrase: bool = Field(True, description="Ask each slot in several wordings (else the plain question only).")
    kl_weight: float = Field(16.0, ge=0, description="Weight of the KL from the frozen base model on general prompts "
                                                    "(distillation against forgetting); 0 turns it off.")
    kl_batch: int = Field(8, ge=1, description="General questions per optimizer step for the KL term (plus half as "
                                               "many general texts).")
    kl_top_k: int = Field(256, ge=1, description="Base-model tokens kept per KL position (the rest pooled into one); "
                                                "the base distribution is computed once per consolidation.")
    seed: int = Field(0, description="Seed of row order, rehearsal sample and LoRA init.")
    checkpoint_every: int = Field(20, ge=1, description="Steps between checkpoints.")
    drift_max_drop: float = Field(1.0, ge=0, description="Points (0-100) of base-task accuracy a version may lose before "
                                                         "it is rejected.")
    drift_max_ppl_rise: float = Field(0.02, ge=0, description="Relative rise of held-text perplexity a version may show "
                                                             "before it is rejected (0.02 = +2%).")
    drift_check: bool = Field(True, description="Run the drift guard (off only for tests and ablations).")
    device: str = Field("cpu", description="Torch device for training and the drift check.")


def steps_for(rows: int, cfg: ConsolidationConfig) -> int:
    """Optimizer steps of one consolidation: ``min(max_steps, ceil(epochs · rows / batch_size))``."""
    return max(1, min(cfg.max_steps, math.ceil(cfg.epochs * rows / cfg.batch_size)))


__all__ = ["ConsolidationConfig", "steps_for"]

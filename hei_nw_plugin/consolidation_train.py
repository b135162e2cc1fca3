"""The LoRA training loop of a consolidation: bounded, checkpointed, resumable bit for bit.

Loss is cross-entropy on the answer tokens (and closing end-of-turn token) of
Cue→Answer rows and on every token of language-model rows, with logits
computed for those positions only (the vocabulary projection dominates memory
otherwise). The row order is a seeded shuffle per epoch, so a run resumed from
a checkpoint (LoRA weights, optimizer state, step) sees exactly the batches
the uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from hei_nw_plugin.consolidation_rows import TrainingRow
from hei_nw_plugin.model.prompting import answer_messages

if TYPE_CHECKING:
    from hei_nw_plugin.consolidation_config import ConsolidationConfig

ADAPTER_NAME = "default"


@dataclass
class TrainRun:
    model: Any
    finished: bool
    steps_done: int
    seconds: float
    curve: list[dict[str, float]] = field(default_factory=list)
    peak_device_mb: float | None = None

    @property
    def loss_first(self) -> float | None:
        return self.curve[0]["loss"] if self.curve else None

    @property
    def loss_last(self) -> float | None:
        return self.curve[-1]["loss"] if self.curve else None


def _end_token(tokenizer: Any) -> int:
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if end is None or end == tokenizer.unk_token_id:
        end = tokenizer.eos_token_id
    return int(end)


def encode_row(tokenizer: Any, row: TrainingRow) -> tuple[list[int], int]:
    """(token ids, index of the first target token) for one row."""
    end = _end_token(tokenizer)
    if row.kind == "lm":  # qa and anchor rows share the answer template
        ids = list(tokenizer(row.text, add_special_tokens=False)["input_ids"]) + [end]
        return ids, 1
    prompt = list(tokenizer.apply_chat_template(answer_messages(row.text, "", one_shot=row.one_shot),
                                                add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    answer = list(tokenizer(row.answer, add_special_tokens=False)["input_ids"]) + [end]
    return prompt + answer, len(prompt)


def batch_loss(model: Any, tokenizer: Any, encoded: Sequence[tuple[list[int], int]], device: str) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) over the target tokens of a batch."""
    width = max(len(ids) for ids, _ in encoded)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in encoded], device=device)
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in encoded], device=device)
    pos = [(b, i - 1) for b, (ids, first) in enumerate(encoded) for i in range(first, len(ids))]
    tgt = [ids[i] for ids, first in encoded for i in range(first, len(ids))]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
    p = torch.tensor(pos, device=device)
    logits = base.get_output_embeddings()(hidden[p[:, 0], p[:, 1]])
    return F.cross_entropy(logits.float(), torch.tensor(tgt, device=device))


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _order(n: int, steps: int, batch: int, seed: int) -> list[int]:
    """Row indices for ``steps`` batches: a fresh seeded shuffle per epoch."""
    out: list[int] = []
    epoch = 0
    while len(out) < steps * batch:
        idx = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(idx)
        out += idx
        epoch += 1
    return out[: steps * batch]


def _wrap(model: Any, cfg: ConsolidationConfig, init_from: Path | None) -> Any:
    try:
        from peft import LoraConfig, PeftModel, get_peft_model
    except ImportError as err:
        from hei_nw_plugin.errors import require_extra

        raise require_extra("peft", "model") from err
    if init_from is not None:
        return PeftModel.from_pretrained(model, str(init_from), adapter_name=ADAPTER_NAME, is_trainable=True)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in cfg.lora_targets if t in present]
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, bias="none",
                        target_modules=targets, task_type="CAUSAL_LM")
    torch.manual_seed(cfg.seed)
    return get_peft_model(model, config, adapter_name=ADAPTER_NAME)


def train_lora(
    model: Any, tokenizer: Any, rows: Sequence[TrainingRow], cfg: ConsolidationConfig, *,
    init_from: Path | None, checkpoint: Path, plan: dict[str, Any], resume: dict[str, Any] | None,
    progress: bool = True, label: str = "consolidate",
) -> TrainRun:
    """Train a LoRA on ``rows`` (from ``init_from``'s weights when given); stop at max_steps or max_seconds.

    On the time cap (or Ctrl-C) the LoRA, optimizer and step go to ``checkpoint``
    with ``plan`` (which traces, which parent) and the run returns unfinished.
    """
    from hei_nw_plugin.consolidation_config import steps_for

    device = cfg.device
    peft_model = _wrap(model, cfg, init_from)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    total = steps_for(len(rows), cfg)
    start = 0
    curve: list[dict[str, float]] = []
    if resume is not None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(peft_model, load_file(str(checkpoint / "lora.safetensors")), adapter_name=ADAPTER_NAME)
        opt.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        start, total, curve = int(resume["step"]), int(resume["total"]), list(resume["curve"])
    order = _order(len(rows), total, cfg.batch_size, cfg.seed)
    encoded = [encode_row(tokenizer, r) for r in rows]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    peft_model.train()
    t0 = time.perf_counter()
    elapsed_before = float(resume["seconds"]) if resume else 0.0
    bar = _bar(range(start, total), label, progress)
    step = start
    try:
        for step in bar:
            if time.perf_counter() - t0 + elapsed_before > cfg.max_seconds and step > start:
                _save_checkpoint(peft_model, opt, checkpoint, plan, step, total, curve, elapsed_before + time.perf_counter() - t0)
                return TrainRun(peft_model, False, step, round(elapsed_before + time.perf_counter() - t0, 2), curve,
                                _peak_device_mb(device))
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, cfg.lr, cfg.warmup_steps)
            batch = [encoded[i] for i in order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
            loss = batch_loss(peft_model, tokenizer, batch, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            curve.append({"step": step, "loss": round(float(loss.item()), 5)})
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total:
                _save_checkpoint(peft_model, opt, checkpoint, plan, step + 1, total, curve,
                                 elapsed_before + time.perf_counter() - t0)
    except KeyboardInterrupt:
        _save_checkpoint(peft_model, opt, checkpoint, plan, len(curve), total, curve, elapsed_before + time.perf_counter() - t0)
        raise
    peft_model.eval()
    return TrainRun(peft_model, True, total, round(elapsed_before + time.perf_counter() - t0, 2), curve, _peak_device_mb(device))


def _save_checkpoint(model: Any, opt: Any, folder: Path, plan: dict[str, Any], step: int, total: int,
                     curve: list[dict[str, float]], seconds: float) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME).items()}
    save_file(state, str(tmp / "lora.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "meta.json").write_text(json.dumps(plan | {"step": step, "total": total, "curve": curve, "seconds": seconds}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _peak_device_mb(device: str) -> float | None:
    if device.startswith("cuda") and torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return None


def _bar(steps: range, label: str, enabled: bool) -> Any:
    if not enabled:
        return steps
    from tqdm.auto import tqdm

    return tqdm(steps, desc=label, unit="step", leave=False)

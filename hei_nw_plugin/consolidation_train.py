"""The LoRA training loop of a consolidation: bounded, checkpointed, resumable bit for bit.

Each step's loss is the cross-entropy of a batch of episode rows (answer tokens
and the closing end-of-turn token of Cue→Answer rows, every token of
language-model rows) plus ``kl_weight`` × the KL divergence from the frozen base
model's next-token distribution on a batch of general prompts. That distribution
is computed once per consolidation, with the LoRA switched off (no second copy
of the weights), and kept as its top ``kl_top_k`` tokens per position plus the
pooled rest (:func:`base_reference`), so a step runs no base forward.
Logits are computed for the loss positions only (the vocabulary projection
dominates memory otherwise), and rows that share the answer template's prefix
run it once per batch (:func:`hidden_states`). Every ``check_every`` steps the
share of Cue→Answer rows the model answers exactly under teacher forcing
(:func:`exact_rows`, the same as greedy decoding reproducing the answer) is
measured; training stops once it reaches ``stop_train_em``.

The row order is a seeded shuffle per epoch, so a run resumed from a
checkpoint (LoRA weights, optimizer state, step) sees exactly the batches the
uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
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
        losses = [c["loss"] for c in self.curve if "loss" in c]
        return losses[0] if losses else None

    @property
    def loss_last(self) -> float | None:
        losses = [c["loss"] for c in self.curve if "loss" in c]
        return losses[-1] if losses else None

    @property
    def train_em(self) -> float | None:
        """The last measured share of Cue→Answer rows answered exactly (teacher forcing)."""
        ems = [c["train_em"] for c in self.curve if "train_em" in c]
        return ems[-1] if ems else None


def _end_token(tokenizer: Any) -> int:
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if end is None or end == tokenizer.unk_token_id:
        end = tokenizer.eos_token_id
    return int(end)


@dataclass(frozen=True)
class Encoded:
    """One tokenised row: ``ids`` and the first position that carries loss (a target token, or a KL position)."""

    ids: list[int]
    first: int
    kind: str


def encode_row(tokenizer: Any, row: TrainingRow) -> Encoded:
    """Token ids of one row and where its loss starts (see :class:`Encoded`)."""
    end = _end_token(tokenizer)
    if row.kind in ("lm", "kl_text"):
        ids = list(tokenizer(row.text, add_special_tokens=False)["input_ids"]) + [end]
        return Encoded(ids, 1, row.kind)
    prompt = list(tokenizer.apply_chat_template(answer_messages(row.text, "", one_shot=row.one_shot),
                                                add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    answer = list(tokenizer(row.answer, add_special_tokens=False)["input_ids"]) + [end]
    return Encoded(prompt + answer, len(prompt), row.kind)


def _common_prefix(seqs: Sequence[list[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return n


def hidden_states(model: Any, encoded: Sequence[Encoded], pad: int, device: str) -> tuple[torch.Tensor, int]:
    """Last hidden states of a batch and the length ``P`` of the prefix all rows share.

    The shared prefix (the answer template's system turn and one-shot example,
    ~90 tokens of ~110) is run once and its key/value cache repeated across the
    batch, so each row costs only its own tokens; gradients still flow through
    the prefix. Position ``i`` of row ``b`` is ``out[b, i - P]``.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    prefix = min(_common_prefix([e.ids for e in encoded]), min(e.first for e in encoded) - 1)
    prefix = prefix if prefix >= 8 else 0
    width = max(len(e.ids) for e in encoded) - prefix
    ids = torch.tensor([e.ids[prefix:] + [pad] * (width - len(e.ids) + prefix) for e in encoded], device=device)
    mask = torch.tensor([[1] * (len(e.ids) - prefix) + [0] * (width - len(e.ids) + prefix) for e in encoded],
                        device=device)
    if not prefix:
        return decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state, 0
    cache = decoder(input_ids=torch.tensor([encoded[0].ids[:prefix]], device=device), use_cache=True).past_key_values
    cache.batch_repeat_interleave(len(encoded))
    full = torch.cat([torch.ones(len(encoded), prefix, dtype=mask.dtype, device=device), mask], dim=1)
    out = decoder(input_ids=ids, attention_mask=full, past_key_values=cache, use_cache=True).last_hidden_state
    return out, prefix


def _positions(encoded: Sequence[Encoded], prefix: int) -> tuple[list[int], list[int], list[int]]:
    """(batch index, hidden index, target id) of every loss position (predicting token ``i`` from ``i - 1``)."""
    rows, cols, tgt = [], [], []
    for b, e in enumerate(encoded):
        for i in range(e.first, len(e.ids)):
            rows.append(b)
            cols.append(i - 1 - prefix)
            tgt.append(e.ids[i])
    return rows, cols, tgt


def answer_logits(model: Any, tokenizer: Any, encoded: Sequence[Encoded], device: str) -> tuple[torch.Tensor, list[int]]:
    """Logits at every target position of ``encoded`` (in row order) and the target ids."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden, prefix = hidden_states(model, encoded, tokenizer.pad_token_id, device)
    rows, cols, tgt = _positions(encoded, prefix)
    return base.get_output_embeddings()(hidden[rows, cols]).float(), tgt


def sequence_logprobs(model: Any, tokenizer: Any, encoded: Sequence[Encoded], device: str, batch: int = 64) -> list[float]:
    """Per row: the summed log-probability (nats) of its target tokens (call under ``torch.no_grad()``)."""
    out: list[float] = []
    for i in range(0, len(encoded), batch):
        chunk = encoded[i:i + batch]
        logits, tgt = answer_logits(model, tokenizer, chunk, device)
        lp = torch.log_softmax(logits, -1).gather(1, torch.tensor(tgt, device=device)[:, None])[:, 0].tolist()
        k = 0
        for e in chunk:
            n = len(e.ids) - e.first
            out.append(float(sum(lp[k:k + n])))
            k += n
    return out


def exact_rows(model: Any, tokenizer: Any, encoded: Sequence[Encoded], device: str, batch: int = 32) -> list[bool]:
    """Per row: is every answer token the model's top choice given the ones before (teacher forcing)?

    That is exactly "greedy decoding reproduces the answer and stops", so it is the
    training-set EM without generating.
    """
    out: list[bool] = []
    with torch.no_grad():
        for i in range(0, len(encoded), batch):
            chunk = encoded[i:i + batch]
            logits, tgt = answer_logits(model, tokenizer, chunk, device)
            hit = (logits.argmax(-1) == torch.tensor(tgt, device=device)).tolist()
            k = 0
            for e in chunk:
                n = len(e.ids) - e.first
                out.append(all(hit[k:k + n]))
                k += n
    return out


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
    layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    first = min(layers - 1, round(cfg.lora_from_depth * layers)) if layers else 0
    upper = list(range(first, layers)) if first and layers else None
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, bias="none",
                        target_modules=targets, layers_to_transform=upper, task_type="CAUSAL_LM")
    torch.manual_seed(cfg.seed)
    return get_peft_model(model, config, adapter_name=ADAPTER_NAME)


def _groups(batch: Sequence[Encoded]) -> list[list[int]]:
    """Indices of the templated rows and of the plain-text rows: each group runs as one forward (so the
    templated group shares its prefix)."""
    groups = [[i for i, e in enumerate(batch) if e.kind in ("qa", "kl")],
              [i for i, e in enumerate(batch) if e.kind in ("lm", "kl_text")]]
    return [g for g in groups if g]


def _ce_loss(model: Any, tokenizer: Any, batch: Sequence[Encoded], device: str) -> torch.Tensor:
    """Mean cross-entropy over every target position of ``batch``."""
    parts = [answer_logits(model, tokenizer, [batch[i] for i in g], device) for g in _groups(batch)]
    logits = torch.cat([lg for lg, _ in parts])
    return F.cross_entropy(logits, torch.tensor([t for _, tg in parts for t in tg], device=device))


def _coarse(logp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of ``ids`` (per position) and, last, the log of the mass of every other token."""
    top = logp.gather(1, ids)
    rest = torch.log((-torch.expm1(torch.logsumexp(top, 1))).clamp_min(1e-12))
    return torch.cat([top, rest[:, None]], 1)


@dataclass(frozen=True)
class Reference:
    """The frozen base model's next-token distribution at one row's KL positions: its ``top_k`` token ids
    and their log-probabilities with the log of the remaining mass appended (``logp`` has ``top_k + 1`` columns)."""

    ids: torch.Tensor
    logp: torch.Tensor


def base_reference(model: Any, tokenizer: Any, encoded: Sequence[Encoded], device: str, top_k: int,
                   batch: int = 16) -> list[Reference]:
    """Per row of ``encoded``: the base model's :class:`Reference` (LoRA switched off when ``model`` has one).

    Computed once per consolidation instead of a base forward every step; the KL
    is then taken between the two distributions coarsened to those ``top_k``
    tokens and the rest, which is the full KL when ``top_k`` covers the vocabulary.
    """
    out: list[Reference | None] = [None] * len(encoded)
    off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    with torch.no_grad(), off:
        for g in _groups(encoded):
            for i in range(0, len(g), batch):
                chunk = g[i:i + batch]
                logits, _ = answer_logits(model, tokenizer, [encoded[j] for j in chunk], device)
                logp = torch.log_softmax(logits, -1)
                ids = logp.topk(min(top_k, logp.shape[1]), dim=1).indices
                ref = _coarse(logp, ids)
                k = 0
                for j in chunk:
                    n = len(encoded[j].ids) - encoded[j].first
                    out[j] = Reference(ids[k:k + n], ref[k:k + n])
                    k += n
    return [r for r in out if r is not None]


def _kl_loss(model: Any, tokenizer: Any, batch: Sequence[Encoded], refs: Sequence[Reference],
             device: str) -> torch.Tensor:
    """KL(base ‖ model) per KL position of ``batch`` (coarsened to each reference's tokens), averaged."""
    parts, p = [], []
    for g in _groups(batch):
        logits, _ = answer_logits(model, tokenizer, [batch[i] for i in g], device)
        ids = torch.cat([refs[i].ids for i in g])
        parts.append(_coarse(torch.log_softmax(logits, -1), ids))
        p += [refs[i].logp for i in g]
    q, ref = torch.cat(parts), torch.cat(p)
    return (ref.exp() * (ref - q)).sum() / q.shape[0]


def train_lora(
    model: Any, tokenizer: Any, rows: Sequence[TrainingRow], cfg: ConsolidationConfig, *,
    init_from: Path | None, checkpoint: Path, plan: dict[str, Any], resume: dict[str, Any] | None,
    kl_rows: Sequence[TrainingRow] = (), progress: bool = True, label: str = "consolidate",
) -> TrainRun:
    """Train a LoRA on ``rows`` (from ``init_from``'s weights when given) until the Cue→Answer rows are
    answered (train EM ≥ ``stop_train_em``, checked every ``check_every`` steps), or ``max_steps``,
    or ``max_seconds``.

    Each step's loss is the cross-entropy of a batch of ``rows`` plus ``kl_weight`` × the KL from
    the frozen base model on a batch of ``kl_rows``. On the time cap (or Ctrl-C) the LoRA, optimizer
    and step go to ``checkpoint`` with ``plan`` (which traces, which parent) and the run returns
    unfinished; a resumed run sees the batches the uninterrupted one would have.
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
    checked = [e for r, e in zip(rows, encoded) if r.kind == "qa" and r.checked]
    kl_enc = [encode_row(tokenizer, r) for r in kl_rows] if cfg.kl_weight > 0 else []
    kl_ref = base_reference(peft_model, tokenizer, kl_enc, device, cfg.kl_top_k) if kl_enc else []
    kl_tpl = [(e, r) for e, r in zip(kl_enc, kl_ref) if e.kind == "kl"]
    kl_txt = [(e, r) for e, r in zip(kl_enc, kl_ref) if e.kind == "kl_text"]
    n_txt = max(1, cfg.kl_batch // 2) if kl_txt else 0  # every step distils some plain text too (held-text perplexity)
    tpl_order = _order(len(kl_tpl), total, cfg.kl_batch, cfg.seed + 1) if kl_tpl else []
    txt_order = _order(len(kl_txt), total, n_txt, cfg.seed + 2) if kl_txt else []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    peft_model.train()
    t0 = time.perf_counter()
    elapsed_before = float(resume["seconds"]) if resume else 0.0
    bar = _bar(range(start, total), label, progress)

    def seconds() -> float:
        return round(elapsed_before + time.perf_counter() - t0, 2)

    def train_em() -> bool:
        """Record the train EM; True when it reached the stop level."""
        if not checked or cfg.stop_train_em > 1:
            return False
        peft_model.eval()
        em = sum(exact_rows(peft_model, tokenizer, checked, device)) / len(checked)
        peft_model.train()
        curve.append({"step": step, "train_em": round(em, 4)})
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(train_em=f"{em:.2f}")
        return em >= cfg.stop_train_em

    step = start
    try:
        for step in bar:
            if seconds() > cfg.max_seconds and step > start:
                _save_checkpoint(peft_model, opt, checkpoint, plan, step, total, curve, seconds())
                return TrainRun(peft_model, False, step, seconds(), curve, _peak_device_mb(device))
            if step > start and step % cfg.check_every == 0 and train_em():
                break
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, cfg.lr, cfg.warmup_steps)
            batch = [encoded[i] for i in order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
            loss = _ce_loss(peft_model, tokenizer, batch, device)
            point = {"step": step, "loss": round(float(loss.item()), 5)}
            if kl_enc:
                picked = [kl_tpl[i] for i in tpl_order[step * cfg.kl_batch:(step + 1) * cfg.kl_batch]]
                picked += [kl_txt[i] for i in txt_order[step * n_txt:(step + 1) * n_txt]]
                kl = _kl_loss(peft_model, tokenizer, [e for e, _ in picked], [r for _, r in picked], device)
                point["kl"] = round(float(kl.item()), 5)
                loss = loss + cfg.kl_weight * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            curve.append(point)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{point['loss']:.3f}", kl=f"{point.get('kl', 0):.4f}")
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total:
                _save_checkpoint(peft_model, opt, checkpoint, plan, step + 1, total, curve, seconds())
        else:
            step = total
            train_em()
    except KeyboardInterrupt:
        done = sum(1 for c in curve if "loss" in c)
        _save_checkpoint(peft_model, opt, checkpoint, plan, done, total, curve, seconds())
        raise
    peft_model.eval()
    return TrainRun(peft_model, True, sum(1 for c in curve if "loss" in c), seconds(), curve, _peak_device_mb(device))


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

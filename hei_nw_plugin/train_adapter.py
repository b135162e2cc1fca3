"""Train the Episodic Adapter and the memory-reader LoRA on generated episodic QA.

Run: ``python -m hei_nw_plugin.train_adapter [--out hei_nw_plugin/weights]``.

Two phases, base weights frozen throughout:

1. **Adapter** (memory route ``adapter``): only the adapter learns; the prompt
   shows no memory, the memory reaches the model through cross-attention alone.
2. **Reader** (optional): a small LoRA on the decoder layers above the adapter
   learns to read memory on all three routes (``prefix`` mostly, the default),
   the adapter now frozen. Keeping the phases apart means the adapter works on
   its own and every result can be reported with and without the reader. The
   reader reads mixed rows (:func:`~hei_nw_plugin.model.train_data.generate_mixed`):
   slot facts, stories of people moving things about, dated conversations with
   "when" and list questions, and questions the memory cannot answer, where the
   target is :data:`~hei_nw_plugin.model.prompting.ABSTAIN`. The one-shot example
   of each row's family is in its prompt, as the evaluation puts it there.

Loss is cross-entropy on the answer tokens and the closing end-of-turn token
only, with logits computed for those positions alone. In phase 1 an attention
loss is added: the generator knows which packed line holds the answer, so the
adapter is told where to look (−log of its attention mass on the answer's
tokens in that line, see :func:`answer_slots`). With the answer loss alone, 100
steps left the adapter answering with the right kind of value but never the
one in memory (EM 0.00, oracle included); the read has to be learnt through
every layer above it, and that is slow. Because the adapter and
the LoRA sit at layer ``n`` and above, the ``n`` layers below run without an
autograd graph, which is what makes this fit a 2-core CPU.

The data come from :mod:`hei_nw_plugin.model.train_data` (vocabulary disjoint
from every eval split; the adapter's rows are slot facts only). Reproducible: fixed seeds, data order from the seed,
``torch.set_num_threads`` fixed (float sums depend on it) and recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hei_nw_plugin.adapter import (
    AdapterConfig,
    AdapterHook,
    EpisodicAdapter,
    added_params,
    decoder_layers,
    weights_sha256,
)
from hei_nw_plugin.config import ModelSettings
from hei_nw_plugin.model.loading import LoadedModel, generation_record, load_base_model
from hei_nw_plugin.model.prompting import answer_messages, prompt_memory
from hei_nw_plugin.model.train_data import QARow, generate_mixed, generate_rows

DEFAULT_OUT = Path(__file__).parent / "weights"
READER_DIR = "reader_lora"
ROUTES = ("prefix", "adapter", "both")


@dataclass
class TrainConfig:
    """Everything that determines the trained weights."""

    seed: int = 0
    threads: int = 1
    depth: float = 0.6
    kv_heads: int | None = 3
    """3 = the base model's own K/V grouping (GQA), so the block can start as a copy of layer n's attention."""
    init_from_layer: bool = True
    copy_path: bool = True
    """Give the adapter its copy path (scale calibrated from the model's own norms)."""
    gate_lr_scale: float = 10.0
    """The zero-initialised gate learns this much faster than the projections, so it opens early."""
    max_mem_tokens: int = 128
    max_facts: int = 3
    batch_size: int = 8
    adapter_steps: int = 500
    adapter_lr: float = 2e-3
    reader_steps: int = 240
    reader_lr: float = 2e-3
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    warmup_steps: int = 10
    attention_weight: float = 1.0
    """Weight of the attention-supervision loss (0 = answer cross-entropy only); see :func:`answer_slots`."""
    reader_shares: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.25])
    """Shares of slot, narrative and dialogue rows in the reader's data (0.3/0.3/0.4 read bAbI qa1 worse,
    0.720 against 0.815 EM, and scenario A worse, 0.760 against 0.840: weights/train_summary.json)."""
    reader_abstain: float = 0.08
    """Share of slot rows whose target fact is left out (answer: ABSTAIN); the other families set their own."""
    reader_routes: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])
    """How often the reader trains on the prefix, adapter and both routes."""
    length_window: int = 8
    """Reader batches are cut from windows of this many batches sorted by length (less padding); 1 = data order."""


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    positions: torch.Tensor
    """[N, 2] (row, position) whose next token is a target."""
    targets: torch.Tensor
    memories: list[str]
    attention: list[tuple[int, int, list[int]]] = field(default_factory=list)
    """(row, position, memory-token indices): where the adapter should look when predicting from there."""


def answer_slots(tokenizer: Any, row: QARow, n_answer: int, cap: int) -> list[list[int]]:
    """For each answer token, the memory tokens (indices, below ``cap``) that hold it in the target fact.

    The generator knows which packed line is the target (``target_rank``), so the
    answer's occurrences in that line (sentence and slot list) are where a
    reading adapter has to attend. When an occurrence tokenizes to as many tokens
    as the answer, token j maps to its j-th token; otherwise only the first answer
    token is supervised. Supervising the read directly trains the adapter's
    queries and keys far faster than the answer loss alone, which reaches them
    only through everything above the adapter.
    """
    lines = row.memory.split("\n")
    rank = row.target_rank
    if not 1 <= rank <= len(lines) or not lines[rank - 1].startswith(f"{rank}. "):
        return [[] for _ in range(n_answer)]
    start = sum(len(line) + 1 for line in lines[: rank - 1])
    offsets = tokenizer(row.memory, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"][:cap]
    slots: list[list[int]] = [[] for _ in range(n_answer)]
    for m in re.finditer(re.escape(row.answer), lines[rank - 1]):
        lo, hi = start + m.start(), start + m.end()
        toks = [i for i, (a, b) in enumerate(offsets) if b > a and a < hi and b > lo]
        if len(toks) == n_answer:
            for j, i in enumerate(toks):
                slots[j].append(i)
        elif toks:
            slots[0].append(toks[0])
    return slots


def encode_batch(tokenizer: Any, rows: list[QARow], routes: list[str], *, cap: int = 128) -> Batch:
    """Right-padded prompt+answer ids, the target positions, each row's adapter memory and attention targets."""
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if end is None or end == tokenizer.unk_token_id:
        end = tokenizer.eos_token_id
    seqs: list[list[int]] = []
    pos: list[tuple[int, int]] = []
    tgt: list[int] = []
    memories: list[str] = []
    attention: list[tuple[int, int, list[int]]] = []
    for b, (row, route) in enumerate(zip(rows, routes)):
        messages = answer_messages(row.question, prompt_memory(row.memory, route), one_shot=row.one_shot)
        prompt = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
        answer = list(tokenizer(row.answer, add_special_tokens=False)["input_ids"]) + [end]
        seq = prompt + answer
        for i, tok in enumerate(answer):
            pos.append((b, len(prompt) + i - 1))
            tgt.append(tok)
        seqs.append(seq)
        memories.append(row.memory if route in ("adapter", "both") else "")
        if route in ("adapter", "both"):
            for j, slot in enumerate(answer_slots(tokenizer, row, len(answer) - 1, cap)):
                if slot:
                    attention.append((b, len(prompt) + j - 1, slot))
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    return Batch(
        input_ids=torch.tensor([s + [pad] * (width - len(s)) for s in seqs]),
        attention_mask=torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs]),
        positions=torch.tensor(pos),
        targets=torch.tensor(tgt),
        memories=memories,
        attention=attention,
    )


def batch_loss(
    lm: LoadedModel, hook: AdapterHook, batch: Batch, decoder: Any, lm_head: Any, *, supervise: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean answer-token cross-entropy (nats) with memory fed to the adapter, and with ``supervise``
    the attention loss: mean −log of the adapter's head-averaged attention on the answer's memory tokens."""
    state = hook.encode_memory(lm.tokenizer, batch.memories)
    log: list[torch.Tensor] = []
    hook.adapter.attention_log = log if supervise and batch.attention else None
    try:
        with hook.memory(state):
            hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).last_hidden_state
    finally:
        hook.adapter.attention_log = None
    picked = hidden[batch.positions[:, 0], batch.positions[:, 1]]
    ce = F.cross_entropy(lm_head(picked).float(), batch.targets)
    if not log:
        return ce, None
    probs = log[0]  # [B, T, 1+M]; slot 0 is the null key
    mass = torch.stack([probs[b, t, [1 + i for i in slot]].sum() for b, t, slot in batch.attention])
    return ce, -(mass.float() + 1e-6).log().mean()


def length_order(rows: list[QARow], routes: list[str], *, batch_size: int, window: int,
                 rng: random.Random) -> tuple[list[QARow], list[str]]:
    """Rows (and their routes) reordered so each batch holds rows of similar length.

    Every window of ``window`` batches is sorted by text length and cut into batches,
    whose order within the window is then shuffled; rows never leave their window,
    so the data seen early in training stays what the seed drew. Padding is what
    this saves: a dialogue row is about twice as long as a story row.
    """
    if window <= 1:
        return rows, routes
    pairs = list(zip(rows, routes, strict=True))
    out: list[tuple[QARow, str]] = []
    span = window * batch_size
    for start in range(0, len(pairs), span):
        part = sorted(pairs[start:start + span], key=lambda p: len(p[0].memory) + len(p[0].question))
        batches = [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        rng.shuffle(batches)
        out += [pair for b in batches for pair in b]
    return [r for r, _ in out], [t for _, t in out]


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + torch.cos(torch.tensor((step - warmup) / max(1, total - warmup) * torch.pi)).item())


def _train(
    lm: LoadedModel, hook: AdapterHook, groups: list[dict[str, Any]], rows: list[QARow],
    routes: list[str], *, body: tuple[Any, Any], steps: int, lr: float, cfg: TrainConfig, label: str,
    supervise: bool = False,
) -> list[dict[str, float]]:
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    params = [p for g in groups for p in g["params"]]
    decoder, lm_head = body
    curve: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for step in range(steps):
        chunk = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
        batch = encode_batch(lm.tokenizer, rows[chunk], routes[chunk], cap=hook.adapter.config.max_mem_tokens)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, cfg.warmup_steps) * group.get("lr_scale", 1.0)
        loss, attn = batch_loss(lm, hook, batch, decoder, lm_head, supervise=supervise)
        total = loss if attn is None else loss + cfg.attention_weight * attn
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        point = {"step": step, "loss": round(loss.item(), 5), "elapsed_s": round(time.perf_counter() - t0, 2)}
        if attn is not None:
            point["attention_loss"] = round(attn.item(), 5)
        curve.append(point)
        if step % 5 == 0 or step == steps - 1:
            extra = f" attention {attn.item():.4f}" if attn is not None else ""
            print(f"[{label}] step {step:4d} loss {loss.item():.4f}{extra} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return curve


def calibrate_copy_scale(lm: LoadedModel, hook: AdapterHook) -> float:
    """Median residual-stream norm at the adapter's layer over mean token-embedding norm.

    Measured on fixed generated memories; the copy path starts at this scale so
    that an open copy gate moves the residual by about its own size.
    """
    rows = generate_rows(16, seed=424242, max_facts=4)
    state = hook.encode_memory(lm.tokenizer, [r.memory for r in rows])
    assert state.embeds is not None
    hidden = state.vectors.norm(dim=-1)[state.mask].median()
    embeds = state.embeds.norm(dim=-1)[state.mask].mean()
    return round(float(hidden / embeds), 2)


def add_reader_lora(lm: LoadedModel, cfg: TrainConfig, first_layer: int) -> Any:
    """Wrap the model with a fresh LoRA on the layers from ``first_layer`` up (adapter name 'reader')."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, bias="none",
        target_modules=cfg.lora_targets, layers_to_transform=list(range(first_layer, lm.num_layers)),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(lm.model, config, adapter_name="reader")


def train(
    cfg: TrainConfig, out: Path, settings: ModelSettings | None = None, *, with_reader: bool = True,
    adapter_from: Path | None = None,
) -> dict[str, Any]:
    """Run both phases and write weights, config, seed and loss curves into ``out``.

    ``adapter_from`` loads a trained adapter and skips phase 1; given the adapter a run with the same
    config trained, phase 2 then writes the same reader as that run.
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    t_start = time.perf_counter()
    lm = load_base_model(settings or ModelSettings(seed=cfg.seed))
    for p in lm.model.parameters():
        p.requires_grad_(False)
    adapter = EpisodicAdapter(
        AdapterConfig.for_model(lm.model.config, depth=cfg.depth, kv_heads=cfg.kv_heads, max_mem_tokens=cfg.max_mem_tokens)
    )
    hook = AdapterHook(lm.model, adapter)
    # peft injects LoRA layers in place, so these stay valid after wrapping.
    body = (lm.model.get_decoder(), lm.model.get_output_embeddings())
    rng = random.Random(cfg.seed)

    n_adapter = cfg.adapter_steps * cfg.batch_size
    n_reader = cfg.reader_steps * cfg.batch_size if with_reader else 0
    rows = generate_rows(n_adapter, seed=cfg.seed, max_facts=cfg.max_facts)

    def count(text: str) -> int:
        return len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])

    reader_rows = generate_mixed(
        n_reader, seed=cfg.seed, shares=(cfg.reader_shares[0], cfg.reader_shares[1], cfg.reader_shares[2]),
        max_facts=cfg.max_facts, abstain=cfg.reader_abstain, count=count, max_mem_tokens=cfg.max_mem_tokens,
    )
    if cfg.copy_path:
        adapter.config = replace(adapter.config, copy_scale=calibrate_copy_scale(lm, hook))
    adapter_curve: list[dict[str, float]] = []
    if adapter_from is not None:
        with torch.random.fork_rng(devices=[]):  # building the loaded copy draws init weights; keep the seed's stream
            adapter.load_state_dict(EpisodicAdapter.load(adapter_from)[0].state_dict())
    else:
        if cfg.init_from_layer and adapter.config.layer < lm.num_layers:
            adapter.init_from_attention(decoder_layers(lm.model)[adapter.config.layer])
        gates = {"gate", "copy_gate"}
        others = [p for name, p in adapter.named_parameters() if name not in gates]
        groups: list[dict[str, Any]] = [
            {"params": others},
            {"params": [adapter.gate, adapter.copy_gate], "lr_scale": cfg.gate_lr_scale},
        ]
        adapter_curve = _train(
            lm, hook, groups, rows[:n_adapter], ["adapter"] * n_adapter,
            body=body, steps=cfg.adapter_steps, lr=cfg.adapter_lr, cfg=cfg, label="adapter",
            supervise=cfg.attention_weight > 0,
        )
    for p in adapter.parameters():
        p.requires_grad_(False)
    t_adapter = time.perf_counter() - t_start

    out.mkdir(parents=True, exist_ok=True)
    reader_curve: list[dict[str, float]] = []
    if with_reader:
        peft_model = add_reader_lora(lm, cfg, adapter.config.layer)
        lm.model = peft_model
        routes = rng.choices(ROUTES, weights=cfg.reader_routes, k=n_reader)
        reader_rows, routes = length_order(reader_rows, routes, batch_size=cfg.batch_size, window=cfg.length_window,
                                           rng=rng)
        lora_params = [p for p in peft_model.parameters() if p.requires_grad]
        reader_curve = _train(
            lm, hook, [{"params": lora_params}], reader_rows, routes,
            body=body, steps=cfg.reader_steps, lr=cfg.reader_lr, cfg=cfg, label="reader",
        )
        peft_model.save_pretrained(str(out / READER_DIR))
    train_s = time.perf_counter() - t_start

    record = generation_record(lm)
    adapter.save(out, extra={
        "train": asdict(cfg),
        "base_model": {k: record.get(k) for k in ("model_id", "model_type", "num_layers", "tokenizer_sha256")}
        | {"weights_sha256": record.get("conversion", {}).get("weights_sha256")},
        "added_params": added_params(adapter),
    })
    summary = {
        "config": asdict(cfg),
        "train_seconds": round(train_s, 1),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "adapter_seconds": round(t_adapter, 1),
        "adapter_sha256": weights_sha256(out),
        "adapter_params": added_params(adapter),
        "reader": with_reader,
        "adapter_from": str(adapter_from) if adapter_from else None,
        "generation": record,
    }
    (out / "loss_curve.json").write_text(json.dumps({"adapter": adapter_curve, "reader": reader_curve}) + "\n")
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"trained in {train_s:.0f}s; wrote {out}")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Folder for weights, config and loss curve.")
    parser.add_argument("--no-reader", action="store_true", help="Train the adapter only.")
    parser.add_argument("--adapter-from", type=Path, default=None, help="Experiments: reuse a trained adapter, skip phase 1.")
    defaults = TrainConfig()
    for name in ("seed", "threads", "batch_size", "adapter_steps", "reader_steps", "max_facts", "lora_r"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in ("adapter_lr", "reader_lr", "depth", "attention_weight", "reader_abstain"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    parser.add_argument("--reader-shares", type=float, nargs=3, default=defaults.reader_shares,
                        metavar=("SLOTS", "NARRATIVE", "DIALOGUE"), help="Shares of the reader's row families.")
    parser.add_argument("--reader-routes", type=float, nargs=3, default=defaults.reader_routes,
                        metavar=("PREFIX", "ADAPTER", "BOTH"), help="How often the reader trains on each route.")
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__})
    train(cfg, args.out, with_reader=not args.no_reader, adapter_from=args.adapter_from)


if __name__ == "__main__":
    main()

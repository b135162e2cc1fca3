"""Adapter training: attention targets point at the answer in the target fact, and their loss trains the read."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tiny_lm import tiny_model, tiny_tokenizer

from hei_nw_plugin.adapter import AdapterConfig, AdapterHook, EpisodicAdapter
from hei_nw_plugin.model.train_data import QARow, generate_rows
from hei_nw_plugin.train_adapter import answer_slots, batch_loss, encode_batch


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    return tiny_tokenizer()


def _answer_ids(tok, row: QARow) -> list[int]:  # type: ignore[no-untyped-def]
    return list(tok(row.answer, add_special_tokens=False)["input_ids"])


def test_slots_hold_the_answer_tokens_of_the_target_line_only(tok) -> None:  # type: ignore[no-untyped-def]
    for row in generate_rows(60, seed=5, max_facts=4):
        answer = _answer_ids(tok, row)
        enc = tok(row.memory, add_special_tokens=False, return_offsets_mapping=True)
        lines = row.memory.split("\n")
        lo = sum(len(line) + 1 for line in lines[: row.target_rank - 1])
        hi = lo + len(lines[row.target_rank - 1])
        slots = answer_slots(tok, row, len(answer), cap=10_000)
        assert all(slots), row  # the byte-level tokenizer splits memory and answer alike
        for j, slot in enumerate(slots):
            for i in slot:
                assert enc["input_ids"][i] == answer[j]
                a, b = enc["offset_mapping"][i]
                assert lo <= a < b <= hi  # inside the target fact, never a distractor's line


def test_slots_past_the_memory_cap_are_dropped(tok) -> None:  # type: ignore[no-untyped-def]
    row = QARow(memory="1. [2023-01-01] Nadia keeps the key in the garden shed.", question="Where does Nadia keep the key?",
                answer="garden shed", n_facts=1, target_rank=1)
    n = len(_answer_ids(tok, row))
    assert all(answer_slots(tok, row, n, cap=10_000))
    assert not any(answer_slots(tok, row, n, cap=20))  # "garden shed" starts at character 40
    wrong_rank = QARow(**{**row.__dict__, "target_rank": 2})
    assert not any(answer_slots(tok, wrong_rank, n, cap=10_000))


def test_attention_loss_trains_the_read_towards_the_answer(tok) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = tiny_model()
    for p in model.parameters():
        p.requires_grad_(False)
    adapter = EpisodicAdapter(AdapterConfig.for_model(model.config, depth=0.6, kv_heads=2, max_mem_tokens=256))
    hook = AdapterHook(model, adapter)
    rows = generate_rows(4, seed=2, max_facts=2)
    batch = encode_batch(tok, rows, ["adapter"] * len(rows), cap=256)
    assert batch.attention and {b for b, _, _ in batch.attention} == set(range(len(rows)))
    lm = SimpleNamespace(tokenizer=tok)
    body = (model.get_decoder(), model.get_output_embeddings())
    _, no_attention = batch_loss(lm, hook, batch, *body, supervise=False)  # type: ignore[arg-type]
    assert no_attention is None and adapter.attention_log is None
    opt = torch.optim.Adam([adapter.q_proj.weight, adapter.k_proj.weight], lr=1e-2)
    losses = []
    for _ in range(15):
        _, attn = batch_loss(lm, hook, batch, *body, supervise=True)  # type: ignore[arg-type]
        assert attn is not None and adapter.attention_log is None
        opt.zero_grad()
        attn.backward()
        opt.step()
        losses.append(attn.item())
    assert losses[-1] < 0.5 * losses[0]

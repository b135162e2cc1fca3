"""The consolidation training loop's pieces on a tiny random Llama: shared-prefix forward, teacher-forced
train EM, the KL to the base model, early stop and paraphrased rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from tiny_lm import tiny_model, tiny_tokenizer

import hei_nw_plugin.consolidation_train as ct
from hei_nw_plugin.consolidation_config import ConsolidationConfig
from hei_nw_plugin.consolidation_rows import TrainingRow, kl_rows, paraphrased_questions, slot_questions
from hei_nw_plugin.model.prompting import OneShot, answer_messages

ONE = OneShot(memory="1. Zed flew the kite at the marsh.", question="Where did Zed fly the kite?", answer="marsh")
STORY = {"who": "Ada", "action": "dropped", "what": "oak lantern", "where": "weaving room", "when": "Sunday evening"}


def _qa(q: str, a: str) -> TrainingRow:
    return TrainingRow(kind="qa", trace_id="t", namespace="u", text=q, answer=a, one_shot=ONE)


def _rows() -> list[TrainingRow]:
    return [_qa(q, a) for _, q, a in slot_questions(STORY)]


def test_shared_prefix_forward_gives_the_plain_forward_logits() -> None:
    torch.set_num_threads(1)
    model, tok = tiny_model(seed=1), tiny_tokenizer()
    enc = [ct.encode_row(tok, r) for r in _rows()]
    hidden, prefix = ct.hidden_states(model, enc, tok.pad_token_id, "cpu")
    assert prefix > 50  # the system turn and the one-shot example are shared
    with torch.no_grad():
        shared, tgt = ct.answer_logits(model, tok, enc, "cpu")
        plain = torch.cat([model(input_ids=torch.tensor([e.ids])).logits[0, e.first - 1:len(e.ids) - 1] for e in enc])
    assert tgt == [t for e in enc for t in e.ids[e.first:]]
    assert torch.allclose(shared, plain.float(), atol=1e-4)


def test_exact_rows_is_greedy_decoding_reproducing_the_answer() -> None:
    torch.set_num_threads(1)
    model, tok = tiny_model(seed=2), tiny_tokenizer()
    rows = _rows()
    with torch.no_grad():  # make each row's answer the model's own greedy continuation, then break one
        for i, r in enumerate(rows):
            prompt = list(tok.apply_chat_template(answer_messages(r.text, "", one_shot=ONE), add_generation_prompt=True,
                                                  tokenize=True, return_dict=True)["input_ids"])
            out = model.generate(torch.tensor([prompt]), max_new_tokens=3, do_sample=False,
                                 eos_token_id=None, pad_token_id=tok.pad_token_id)[0, len(prompt):]
            rows[i] = _qa(r.text, tok.decode(out))
    enc = [ct.encode_row(tok, r) for r in rows]
    end = ct._end_token(tok)
    with torch.no_grad():
        got = ct.exact_rows(model, tok, enc, "cpu")
    for e, ok in zip(enc, got):  # true exactly when the greedy step after the answer also ends the turn
        nxt = model(input_ids=torch.tensor([e.ids[:-1]])).logits[0, -1].argmax().item()
        assert ok == (nxt == end)
    wrong = [ct.Encoded(e.ids[:-2] + [(e.ids[-2] + 1) % 200, e.ids[-1]], e.first, e.kind) for e in enc]
    with torch.no_grad():
        assert not any(ct.exact_rows(model, tok, wrong, "cpu"))


def test_kl_to_base_is_zero_before_training_and_has_gradients() -> None:
    torch.set_num_threads(1)
    model, tok = tiny_model(seed=3), tiny_tokenizer()
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = ConsolidationConfig(lora_r=4, lora_alpha=8)
    peft_model = ct._wrap(model, cfg, None)
    enc = [ct.encode_row(tok, r) for r in kl_rows([("What do bees make?", "honey"), ("Who fixes teeth?", "a dentist")],
                                                   ["Bread rises."], one_shots=[ONE, None])]
    refs = ct.base_reference(peft_model, tok, enc, "cpu", top_k=8)
    assert [len(r.ids) for r in refs] == [len(e.ids) - e.first for e in enc]
    kl = ct._kl_loss(peft_model, tok, enc, refs, "cpu")
    assert abs(kl.item()) < 1e-6  # LoRA's B starts at zero: the model is the base model
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    assert torch.allclose(ct.base_reference(peft_model, tok, enc, "cpu", top_k=8)[0].logp, refs[0].logp)  # LoRA off
    kl = ct._kl_loss(peft_model, tok, enc, refs, "cpu")
    kl.backward()
    assert kl.item() > 0 and any(p.grad is not None and p.grad.abs().sum() > 0
                                 for n, p in peft_model.named_parameters() if "lora_" in n)


def test_kl_over_the_whole_vocabulary_is_the_exact_kl() -> None:
    torch.set_num_threads(1)
    base, tok = tiny_model(seed=3), tiny_tokenizer()
    other = tiny_model(seed=5)
    enc = [ct.encode_row(tok, r) for r in kl_rows([("What do bees make?", "honey")], ["Bread rises."], one_shots=[ONE])]
    vocab = base.get_output_embeddings().weight.shape[0]
    with torch.no_grad():
        refs = ct.base_reference(base, tok, enc, "cpu", top_k=vocab)
        coarse = ct._kl_loss(other, tok, enc, refs, "cpu")
        p = torch.cat([torch.log_softmax(ct.answer_logits(base, tok, [e], "cpu")[0], -1) for e in enc])
        q = torch.cat([torch.log_softmax(ct.answer_logits(other, tok, [e], "cpu")[0], -1) for e in enc])
        exact = torch.nn.functional.kl_div(q, p, log_target=True, reduction="batchmean")
        assert torch.allclose(coarse, exact, rtol=1e-4)
        few = ct._kl_loss(other, tok, enc, ct.base_reference(base, tok, enc, "cpu", top_k=4), "cpu")
    assert 0 < few <= exact + 1e-6  # coarsening can only lose divergence


def test_training_stops_once_the_rows_are_answered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    model, tok = tiny_model(seed=4), tiny_tokenizer()
    for p in model.parameters():
        p.requires_grad_(False)
    calls: list[int] = []

    def answered(model: Any, tokenizer: Any, encoded: Any, device: str, batch: int = 32) -> list[bool]:
        calls.append(len(encoded))
        return [len(calls) >= 2] * len(encoded)  # answered from the second check on

    monkeypatch.setattr(ct, "exact_rows", answered)
    cfg = ConsolidationConfig(max_steps=50, epochs=100, batch_size=2, check_every=3, lora_r=4, lora_alpha=8,
                              kl_weight=1.0, kl_batch=2, warmup_steps=0, checkpoint_every=100)
    run = ct.train_lora(model, tok, _rows(), cfg, init_from=None, checkpoint=tmp_path / "ck", plan={}, resume=None,
                        kl_rows=kl_rows([("What do bees make?", "honey")], ["Bread rises."], one_shots=[ONE]), progress=False)
    assert run.finished and run.steps_done == 6 and run.train_em == 1.0 and calls == [4, 4]
    assert all("kl" in c for c in run.curve if "loss" in c)


def test_paraphrases_name_every_other_slot() -> None:
    qs = paraphrased_questions(STORY)
    assert qs[:4] == slot_questions(STORY) and len(qs) == len({q.lower() for _, q, _ in qs}) == 12
    for asked, q, answer in qs:
        assert answer == STORY[asked] and answer not in q
        assert all(STORY[s] in q for s in ("who", "what", "where", "when") if s != asked)

"""ModelNLLSurprise: mean token NLL in nats, batch-consistent, usable by the write gate."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_lm import tiny_model, tiny_tokenizer

from hei_nw_plugin.gate import SurpriseScorer
from hei_nw_plugin.surprise import ModelNLLSurprise


@pytest.fixture(scope="module")
def scorer() -> ModelNLLSurprise:
    return ModelNLLSurprise(tiny_model(), tiny_tokenizer())


def test_conforms_to_the_gate_protocol(scorer: ModelNLLSurprise) -> None:
    assert isinstance(scorer, SurpriseScorer)
    assert scorer.name == "model_nll"


def test_nll_is_the_mean_token_cross_entropy(scorer: ModelNLLSurprise) -> None:
    text = "Nadia keeps the key."
    ids = [scorer.tokenizer.bos_token_id, *scorer.tokenizer(text, add_special_tokens=False)["input_ids"]]
    with torch.no_grad():
        logp = scorer.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    manual = -sum(logp[i, ids[i + 1]].item() for i in range(len(ids) - 1)) / (len(ids) - 1)
    assert scorer.nll(text) == pytest.approx(manual, rel=1e-5)
    # an untrained model over 260 tokens sits near ln(260) nats per token
    assert abs(scorer.nll(text) - math.log(260)) < 1.5


def test_batch_equals_one_by_one_and_empty_is_zero(scorer: ModelNLLSurprise) -> None:
    texts = ["short", "", "a much longer sentence about the garden shed"]
    batch = scorer.nll_many(texts)
    assert batch[1] == 0.0
    for text, value in zip(texts, batch):
        assert scorer.nll(text) == pytest.approx(value, rel=1e-5, abs=1e-6)


def test_long_text_is_truncated() -> None:
    s = ModelNLLSurprise(tiny_model(), tiny_tokenizer(), max_tokens=8)
    assert s.nll("x" * 8 + "y" * 50) == pytest.approx(s.nll("x" * 8), rel=1e-6)


def test_repeated_texts_are_scored_once() -> None:
    model = tiny_model()
    calls: list[int] = []
    model.register_forward_hook(lambda _m, args, _out: calls.append(1))
    scorer = ModelNLLSurprise(model, tiny_tokenizer(), cache_size=2)
    first = scorer.nll_many(["alpha beta", "alpha beta", "gamma"])
    assert len(calls) == 1 and first[0] == first[1]
    assert scorer.nll_many(["gamma", "alpha beta"]) == [first[2], first[0]]
    assert len(calls) == 1  # both came from the cache
    scorer.nll_many(["delta"])  # evicts the oldest entry ("alpha beta")
    scorer.nll("alpha beta")
    assert len(calls) == 3

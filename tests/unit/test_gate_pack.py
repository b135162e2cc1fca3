from datetime import UTC, datetime

from hei_nw_plugin.config import GateSettings, PackSettings
from hei_nw_plugin.gate import WriteGate
from hei_nw_plugin.pack import Packer, redact
from hei_nw_plugin.types import SourcePointer, Trace


class FixedNLL:
    def __init__(self, v: float) -> None:
        self.v = v

    def nll(self, text: str) -> float:
        return self.v


def test_gate_formula_and_reasons() -> None:
    g = WriteGate(GateSettings(alpha=0.5, beta=0.3, gamma=0.2, delta=1.0, tau=0.5, model_surprise_weight=1.0), surprise=FixedNLL(4.0))
    d = g.decide(namespace="n", text="x", nearest_similarity=0.2, reward=0.5, pin=False, tokens=10)
    assert d.components.surprise == 0.5 and d.components.surprise_source == "model_nll"
    assert abs(d.score - (0.5 * 0.5 + 0.3 * 0.8 + 0.2 * 0.5)) < 1e-9
    assert d.accepted and d.reason == "above_threshold"
    low = g.decide(namespace="n", text="x", nearest_similarity=0.99, reward=0.0, pin=False, tokens=10)
    assert low.accepted and low.reason == "cold" and low.tier == "cold"  # kept, cold
    dup = g.decide(namespace="n", text="x", nearest_similarity=0.999, reward=1.0, pin=False, tokens=10)
    assert dup.reason == "duplicate" and dup.accepted and dup.tier == "cold"  # a repeat is a later event: kept cold
    pinned = g.decide(namespace="n", text="x", nearest_similarity=0.999, reward=0.0, pin=True, tokens=10)
    assert pinned.accepted and pinned.reason == "pinned" and pinned.tier == "salient"
    g.settings.cold_writes = False
    dropped = g.decide(namespace="n", text="x", nearest_similarity=0.99, reward=0.0, pin=False, tokens=10)
    assert not dropped.accepted and dropped.reason == "below_threshold" and dropped.tier is None
    dup = g.decide(namespace="n", text="x", nearest_similarity=0.999, reward=1.0, pin=False, tokens=10)
    assert dup.reason == "duplicate" and not dup.accepted and dup.tier is None
    t = g.telemetry.summary("n")
    assert t["accepted"] == 2 and t["cold"] == 2 and t["rejected"] == 2 and t["tokens"] == 60
    assert abs(t["writes_per_1k_tokens"] - 2000 / 60) < 1e-9  # salient writes only


def test_proxy_surprise_separates_chitchat_from_facts() -> None:
    g = WriteGate(GateSettings())
    chat, _ = g.surprise("n", "ok thanks, sounds good")
    fact, src = g.surprise("n", "Priya keeps the spare key in the blue toolbox")
    assert src == "unigram_proxy" and fact > chat + 0.3


def test_redaction() -> None:
    text = "mail a.b@example.org, call +1 415 555 0134, card 4111 1111 1111 1111, ssn 123-45-6789, ip 10.0.0.12"
    out = redact(text)
    for leak in ["a.b@example.org", "555 0134", "4111", "123-45-6789", "10.0.0.12"]:
        assert leak not in out
    assert "[EMAIL]" in out and "[CARD]" in out and "[GOV_ID]" in out and "[IP]" in out and "[PHONE]" in out
    assert "[CARD]" not in redact("order 1234 5678 9012 3456")  # fails Luhn: not a card
    assert redact("order 12345 shipped on 2026-03-04") == "order 12345 shipped on 2026-03-04"
    assert redact("x@y.io", kinds=["ip"]) == "x@y.io"


def _trace(i: int, text: str) -> Trace:
    return Trace(id=f"t{i}", namespace="n", text=text, slots={"who": "A"}, source=SourcePointer(),
                 created_at=datetime(2026, 1, 2, tzinfo=UTC), pinned=False, gate_score=0.5)


def test_packer_is_deterministic_and_respects_budget() -> None:
    p = Packer(PackSettings(max_mem_tokens=30))
    traces = [_trace(i, f"fact number {i} about the garden shed and tools") for i in range(5)]
    a, b = p.pack(traces), p.pack(traces)
    assert a == b
    assert a.n_tokens <= 30 and a.truncated and a.trace_ids == ["t0"]
    assert a.text.startswith("1. [2026-01-02] fact number 0")
    tight = Packer(PackSettings(max_mem_tokens=8)).pack(traces)
    assert 0 < tight.n_tokens <= 8 and tight.trace_ids == ["t0"]
    counted = Packer(PackSettings(max_mem_tokens=100), token_counter=lambda s: len(s)).pack(traces)
    assert len(counted.text) <= 100


def test_proxy_scores_names_numbers_and_salience_markers() -> None:
    g = WriteGate(GateSettings())
    assert g.surprise("p", "Yikes.")[0] < 0.1
    assert g.surprise("p", "Horatio: Noted, cheers.")[0] < 0.2  # a speaker label is not a name mention
    named, _ = g.surprise("p", "Lunch with Okonkwo moved to gate 14")
    plain, _ = g.surprise("p", "lunch plans moved around again")
    assert named > plain
    marked, _ = g.surprise("q", "From now on use dark mode in the editor")
    unmarked, _ = g.surprise("r", "Dark mode in the editor")
    assert marked > unmarked


def test_model_surprise_is_blended_with_the_proxy() -> None:
    g = WriteGate(GateSettings(model_surprise_weight=0.5), surprise=FixedNLL(8.0))  # model part = 1.0
    s, src = g.surprise("n", "ok thanks")
    assert src == "model_nll+proxy" and 0.5 <= s < 0.6

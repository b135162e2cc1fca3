"""Neuromodulated write gate: S = α·surprise + β·novelty + γ·reward + δ·pin ≥ τ.

* surprise: with a language model attached (:class:`SurpriseScorer`), the
  model's mean token NLL (nats/token) divided by ``surprise_scale`` and clipped
  to [0, 1], blended with the proxy by ``model_surprise_weight`` (SmolLM2-135M's
  NLL alone separated scenario A facts from chit-chat at PR-AUC 0.23, the proxy
  at 0.98, the 50/50 blend at 0.94, on 226 generated episodes); without one, the documented cheap proxy :class:`UnigramSurprise`
  (function words and chat boilerplate score low, digits high, other words by
  their rarity in what the namespace has offered so far).
* novelty: 1 − cosine between the event's key and its nearest stored key in the
  namespace (1.0 for an empty namespace).
* reward ∈ [0, 1] and pin ∈ {0, 1} come from the caller.

An unpinned event whose key is within ``duplicate_similarity`` of a stored key
is a duplicate whatever S is: kept cold with ``cold_writes`` (the same words said
again are a later event, and its time matters to newest-wins), else rejected. Three caller signals bypass the
threshold: ``pin`` (reason 'pinned'), ``force`` ('forced', not protected from
decay) and an update of an existing caller key ('update').

Below τ the gate decides *how* to keep an event rather than whether: with
``cold_writes`` (the default) it is stored as a **cold** trace (reason 'cold'),
which ranks lower at recall and decays faster; otherwise it is dropped
('below_threshold'). A dialogue turn that looked like chit-chat when it was said
often answers a question later (LoCoMo), and a dropped turn can never be found.
An event made only of questions is the exception: it asserts nothing, and a cold copy
would be what the same question recalls next time, so below τ it is dropped unless
``cold_questions`` is set. The write-rate telemetry counts salient writes only, so it
still says how much the gate deems worth remembering.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from hei_nw_plugin.config import GateSettings
from hei_nw_plugin.text import tokenize
from hei_nw_plugin.types import GateComponents, WriteDecision


@runtime_checkable
class SurpriseScorer(Protocol):
    """Anything that gives the mean token negative log-likelihood of a text."""

    def nll(self, text: str) -> float:
        """Mean NLL in nats per token."""
        ...


# Function words and chat boilerplate: tokens that carry no episode content.
COMMON_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing done down during each few for from further had has have having he her here
hers herself him himself his how i if in into is it its itself just let me more most my myself no nor not now of
off on once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves yes yeah yep ok okay sure thanks thank
please hi hello hey bye goodbye great good nice cool fine well oh ah hmm um uh lol haha really right got get gets
going go gonna wanna know think see say said tell told like just also maybe much many lot lots thing things stuff
way day today tomorrow yesterday time again still even back make made take want need let's i'm you're it's that's
don't can't won't didn't isn't there's what's how's i've i'll i'd sounds sound awesome glad sorry welcome morning
evening night doing alright anyway actually probably definitely totally absolutely kind sort bit pretty quite
one two new old big little long short last next first week weekend year month ago soon later tonight everyone
anyone someone something anything everything nothing nobody people guys folks all y'all friend friends team
question questions idea ideas answer point sense true funny hilarious lovely amazing wonderful terrible bad
crazy wild weird interesting boring exciting happy sad tired busy free ready done finished same here there
agree agreed exactly totally indeed course definitely absolutely wow whoa yay ugh meh hah heh omg btw fyi
chat talk talking talked later cheers noted yikes brb hiya aw aww ttyl np thx ty gotcha oops ooh yikes
try tried trying work working worked job busy hope hoped hoping wish guess feel felt seem seems seemed look
looks looked mean meant meaning keep kept thought thinking believe remember forgot forget wait waiting
""".split())  # noqa: SIM905 (a word list reads better as text)

# Generic markers that a speaker means something to last (not tied to any scenario).
SALIENCE_MARKERS = ("remember", "from now on", "for future reference", "always", "never", "prefer", "favorite",
                    "favourite", "allergic", "my name", "call me", "don't forget", "important", "deadline",
                    "password", "address", "birthday", "appointment", "moved to", "now reports", "update:",
                    "changed to", "switched to", "instead of")


class UnigramSurprise:
    """Cheap surprise proxy in [0, 1], used when no language model is attached.

    Token scores: function words and chat boilerplate (:data:`COMMON_WORDS`)
    0.02; tokens with a digit and capitalised words inside a sentence (names,
    places, products) 1.0; other words their surprisal under an online add-one
    unigram model of the namespace, −log p(t) / log(V + N), so content the
    agent keeps hearing fades. The event's score is the mean token score,
    scaled down for utterances with fewer than three content tokens and halved
    for questions, plus 0.3
    when a generic salience marker (:data:`SALIENCE_MARKERS`: "remember",
    "from now on", "prefer", …) appears; clipped to [0, 1]. State lives in
    memory and starts fresh on restart.
    """

    name = "unigram_proxy"

    def __init__(self, *, vocab_floor: int = 5000) -> None:
        self._counts: dict[str, Counter[str]] = defaultdict(Counter)
        self._totals: Counter[str] = Counter()
        self._vocab_floor = vocab_floor
        self._lock = threading.Lock()

    def score(self, namespace: str, text: str, *, learn: bool = True) -> float:
        """Surprise in [0, 1] of ``text`` given what ``namespace`` has seen."""
        toks = tokenize(text)
        if not toks:
            return 0.0
        names = _inner_capitalised(text)
        with self._lock:
            counts = self._counts[namespace]
            total = self._totals[namespace]
            denom = max(len(counts), self._vocab_floor) + total
            norm = math.log(denom)
            acc = 0.0
            content = 0
            for t in toks:
                if any(ch.isdigit() for ch in t) or t in names:
                    acc += 1.0
                    content += 1
                elif t in COMMON_WORDS or len(t) <= 2:
                    acc += 0.02
                else:
                    acc += min(1.0, -math.log((counts[t] + 1) / denom) / norm)
                    content += 1
            if learn:
                counts.update(toks)
                self._totals[namespace] += len(toks)
        score = (acc / len(toks)) * min(1.0, content / 3.0)
        if text.rstrip().endswith("?"):
            score *= 0.5  # a question asks for information rather than giving it
        lowered = text.lower()
        if any(m in lowered for m in SALIENCE_MARKERS):
            score += 0.3
        return min(1.0, score)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def only_questions(text: str) -> bool:
    """True when every sentence of ``text`` ends with a question mark ("Hi Mel, how was it? Did you go?")."""
    sentences = [p for p in _SENTENCE_END.split(text.strip()) if p]
    return bool(sentences) and all(p.endswith("?") for p in sentences)


def _inner_capitalised(text: str) -> set[str]:
    """Lower-cased words written with a capital that do not start a sentence."""
    out: set[str] = set()
    for sentence in re.split(r"(?<=[.!?:])\s+|\n", text):  # "Speaker: text" starts a sentence too
        words = re.findall(r"[\w']+", sentence)
        for w in words[1:]:
            if w[:1].isupper() and w.lower() not in COMMON_WORDS and w != "I":
                out.add(w.lower())
    return out


@dataclass
class GateTelemetry:
    """Counters: tokens observed, decisions by reason, per namespace."""

    tokens: Counter[str] = field(default_factory=Counter)
    decisions: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def observe(self, namespace: str, tokens: int, reason: str) -> None:
        self.tokens[namespace] += tokens
        self.decisions[namespace][reason] += 1

    def summary(self, namespace: str | None = None) -> dict[str, float | int | dict[str, int]]:
        """accepted (salient), cold, rejected, by_reason, tokens and writes_per_1k_tokens (salient writes; all
        namespaces when None)."""
        if namespace is None:
            tokens = sum(self.tokens.values())
            by_reason: Counter[str] = Counter()
            for c in self.decisions.values():
                by_reason.update(c)
        else:
            tokens = self.tokens[namespace]
            by_reason = Counter(self.decisions[namespace])
        accepted = by_reason["pinned"] + by_reason["forced"] + by_reason["update"] + by_reason["above_threshold"]
        rejected = by_reason["below_threshold"] + by_reason["duplicate"]
        return {
            "accepted": accepted,
            "cold": by_reason["cold"] + by_reason["duplicate_kept"],
            "rejected": rejected,
            "by_reason": dict(by_reason),
            "tokens": tokens,
            "writes_per_1k_tokens": (1000.0 * accepted / tokens) if tokens else 0.0,
        }


class WriteGate:
    """Scores events and decides; holds no storage of its own."""

    def __init__(self, settings: GateSettings, *, surprise: SurpriseScorer | None = None) -> None:
        self.settings = settings
        self.model_surprise = surprise
        self.proxy = UnigramSurprise()
        self.telemetry = GateTelemetry()

    def surprise(self, namespace: str, text: str) -> tuple[float, str]:
        """(surprise in [0, 1], source name)."""
        proxy = self.proxy.score(namespace, text)  # always learn, so a later detach finds it warm
        if self.model_surprise is None:
            return proxy, "unigram_proxy"
        nll = float(self.model_surprise.nll(text))
        if not math.isfinite(nll):
            nll = self.settings.surprise_scale
        model = min(1.0, max(0.0, nll / self.settings.surprise_scale))
        w = self.settings.model_surprise_weight
        if w >= 1.0:
            return model, "model_nll"
        return w * model + (1.0 - w) * proxy, "model_nll+proxy"

    def decide(
        self, *, namespace: str, text: str, nearest_similarity: float | None, reward: float, pin: bool, tokens: int,
        force: bool = False, update: bool = False,
    ) -> WriteDecision:
        """Score one event; ``nearest_similarity`` is the cosine to the closest stored key (None if none)."""
        s = self.settings
        surprise, source = self.surprise(namespace, text)
        novelty = 1.0 if nearest_similarity is None else min(1.0, max(0.0, 1.0 - nearest_similarity))
        comps = GateComponents(surprise=surprise, novelty=novelty, reward=reward, pin=1.0 if pin else 0.0, surprise_source=source)
        score = s.alpha * surprise + s.beta * novelty + s.gamma * reward + s.delta * comps.pin
        keep_cold = s.cold_writes and (s.cold_questions or not only_questions(text))
        if pin:
            reason = "pinned"
        elif force:
            reason = "forced"
        elif update:
            reason = "update"
        elif nearest_similarity is not None and nearest_similarity >= s.duplicate_similarity:
            reason = "duplicate"
        elif score >= s.tau:
            reason = "above_threshold"
        elif keep_cold:
            reason = "cold"
        else:
            reason = "below_threshold"
        # With cold writes a repeat is kept too, cold: the same words later are a later event ("Mary went to the
        # kitchen" again), and newest-wins among versions needs its time.
        stored = reason not in ("below_threshold", "duplicate") or (reason == "duplicate" and keep_cold)
        self.telemetry.observe(namespace, tokens, "duplicate_kept" if reason == "duplicate" and stored else reason)
        return WriteDecision(
            accepted=stored, score=score, threshold=s.tau, components=comps, reason=reason, namespace=namespace,
            tier=("cold" if reason in ("cold", "duplicate") else "salient") if stored else None,
        )

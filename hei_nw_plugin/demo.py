"""The main job, end to end on the embedded defaults: ``hei-nw demo``.

Writes a short agent session through the gate (facts and chit-chat), recalls
from partial cues, deletes one trace, verifies the signed log, and (when the
``[model]`` extra and the model side are available) answers the questions
with the embedded SmolLM2 in B0 (no memory) and B1 (memory on).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.memory import HEIMemory

SESSION = [
    ("Hi there! How are you today?", {}),
    ("Priya keeps the spare key to the studio in the blue toolbox.", {"who": "Priya", "what": "spare key", "where": "blue toolbox"}),
    ("ok thanks, sounds good", {}),
    ("Marco moved the team offsite to Thursday at the lakeside cabin.", {"who": "Marco", "what": "offsite", "when": "Thursday", "where": "lakeside cabin"}),
    ("Reach me at priya@example.com or +1 415 555 0134 if it changes.", {"who": "Priya"}),
    ("lol yeah", {}),
    ("The router admin password was changed by Ines on Monday.", {"who": "Ines", "what": "router password", "when": "Monday"}),
]

QUESTIONS = [
    ("Where is the spare key?", {"what": "spare key"}),
    ("When is the offsite?", {"who": "Marco"}),
    ("Who changed the router password?", {"what": "router password"}),
]


def run_demo(settings: HeiNwSettings | None = None, *, with_model: bool = True) -> None:
    with tempfile.TemporaryDirectory(prefix="hei-demo-") as tmp:
        s = (settings or HeiNwSettings()).model_copy(deep=True)
        if s.store.url is None:
            s.store.data_dir = Path(tmp)
        with HEIMemory(s) as mem:
            ns = "demo-user"
            print("== write gate ==")
            for text, slots in SESSION:
                d = mem.write({"text": text, "slots": slots}, namespace=ns)
                label = {"salient": "WRITE ", "cold": "cold  "}.get(d.tier or "", "skip  ")
                print(f"  {label} S={d.score:.2f} (surprise {d.components.surprise:.2f}, "
                      f"novelty {d.components.novelty:.2f})  {text}")
            print("== recall from partial cues ==")
            for q, slots in QUESTIONS:
                r = mem.recall({"text": q, "slots": slots}, k=2, namespace=ns)
                top = r.traces[0].trace.text if r.traces else "(nothing)"
                print(f"  {q}  ->  {top}   [{r.timings_ms['total']:.1f} ms]")
            r = mem.recall("What is the email address or phone number to reach Priya?", k=1, namespace=ns)
            print("== packed memory tokens (PII redacted) ==")
            print("  " + r.memory_tokens.text.replace("\n", "\n  "))
            victim = r.traces[0].trace.id
            mem.delete(victim, namespace=ns)
            print(f"== deleted {victim}; recall now returns: "
                  f"{[t.trace.text for t in mem.recall('What is the email address or phone number to reach Priya?', k=1, namespace=ns).traces]}")
            report = mem.verify()
            print(f"== verify: ok={report.ok}, {report.records_checked} signed records, {report.live_traces} live traces")
            st = mem.stats(namespace=ns)
            print(f"== gate: {st.gate['accepted']} written, {st.gate['cold']} kept cold, {st.gate['rejected']} skipped, "
                  f"{st.gate['writes_per_1k_tokens']:.1f} salient writes per 1k tokens")
            if with_model:
                _model_part(mem, ns)


def _model_part(mem: HEIMemory, ns: str) -> None:
    try:
        from hei_nw_plugin.model.demo import answer_demo
    except ImportError as err:
        print(f"== model part skipped: {err}")
        return
    answer_demo(mem, ns, QUESTIONS)

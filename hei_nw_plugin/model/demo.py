"""The model half of ``hei-nw demo``: the embedded SmolLM2 answers in B0 and in B1.

B0 is the bare model; B1 recalls from the demo's memory (question text only as
the cue) and reads the packed memory through the configured route, with the
shipped Episodic Adapter and memory-reader LoRA when they match the model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hei_nw_plugin.memory import HEIMemory


def answer_demo(mem: HEIMemory, namespace: str, questions: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Load the configured model once and print each question's B0 and B1 answers."""
    from hei_nw_plugin.wrapper import HeiNwForCausalLM

    t = time.perf_counter()
    lm = HeiNwForCausalLM.from_settings(mem.settings, memory=mem, mode="B1")
    rec = lm.generation_record()
    print(f"== model: {rec['model_id']} ({rec['num_layers']} layers, {rec['dtype']}), route {lm.route}, "
          f"adapter {'on' if lm.adapter is not None else 'off'}, reader {'on' if rec['memory_reader'] else 'off'}; "
          f"loaded in {time.perf_counter() - t:.1f} s")
    for question, _slots in questions:
        lm.mode = "B0"
        b0 = lm.generate_answer(question, namespace=namespace)
        lm.mode = "B1"
        b1 = lm.generate_answer(question, namespace=namespace)
        print(f"  Q: {question}")
        print(f"     B0 (no memory): {b0.text!r}  [{b0.timings_ms['total']:.0f} ms]")
        print(f"     B1 (memory)   : {b1.text!r}  [{b1.timings_ms['total']:.0f} ms, "
              f"recall {b1.timings_ms.get('recall', 0.0):.0f} ms]")

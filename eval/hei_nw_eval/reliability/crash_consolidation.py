"""The consolidation part of the crash check: SIGKILL a consolidation, then ask which adapter is served.

A first consolidation promotes ``v0001``; each trial forks a child that runs one
more consolidation and kills it a random fraction into the first one's measured
duration. The served (active) adapter afterwards must be the promoted one, or a
version the killed run completed; its files must load with peft and match the
hash in its lineage. One more consolidation, not killed, must then finish,
resuming the checkpoint a kill left if there is one.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hei_nw_eval.reliability.faults import open_memory
from hei_nw_eval.reliability.kill import Summary, ack, fork_child, kill_after, read_acks, wait_for_acks
from hei_nw_plugin.embed import Embedder


@dataclass
class ConsolidationTrial:
    trial: int
    delay_s: float
    finished_before_kill: bool
    active_before: str | None
    active_after: str | None
    served_ok: bool  # active is the previous version, or a completed new one
    loadable: bool
    hash_ok: bool
    checkpoint_left: bool
    verify_problems: int
    detail: str = ""

    @property
    def failed(self) -> bool:
        return not (self.served_ok and self.loadable and self.hash_ok) or self.verify_problems > 0 \
            or "failed on its own" in self.detail



STORIES = [
    {"who": "Zenobia", "action": "dropped", "what": "wicker basket", "where": "north pier", "when": "Saturday morning"},
    {"who": "Leopold", "action": "weighed", "what": "birch canoe", "where": "seed vault", "when": "Tuesday evening"},
    {"who": "Hamish", "action": "sold", "what": "pearl hairpin", "where": "boiler room", "when": "Monday afternoon"},
    {"who": "Odile", "action": "buried", "what": "iron key", "where": "rose garden", "when": "Friday dawn"},
]


def _served(out_dir: Path, base: Any) -> tuple[str | None, bool, bool, str]:
    """(active version, loads with peft, adapter hash matches its lineage, detail)."""
    import hashlib

    state = json.loads((out_dir / "state.json").read_text())
    active = state.get("active")
    if active is None:
        return None, False, False, "no active version"
    folder = out_dir / active
    try:
        lineage = json.loads((folder / "lineage.json").read_text())
        digest = hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()
        hash_ok = digest == lineage["adapter_sha256"]
        from peft import PeftModel

        PeftModel.from_pretrained(copy.deepcopy(base), str(folder))
        return active, True, hash_ok, ""
    except Exception as err:  # noqa: BLE001 - any failure to load is the finding
        return active, False, False, f"{type(err).__name__}: {err}"


def run_consolidation_trials(root: Path, emb: Embedder, *, trials: int, steps: int, seed: int,
                          log: Callable[[str], None], model_factory: Callable[[], tuple[Any, Any]] | None,
                          ) -> tuple[Summary, list[ConsolidationTrial]]:
    import torch

    from hei_nw_plugin.config import ModelSettings
    from hei_nw_plugin.consolidate import ConsolidationConfig, ConsolidationWorker, model_settings_factory

    t0 = time.perf_counter()
    rng = random.Random(seed + 2)
    torch.set_num_threads(1)
    model, tok = (model_factory or model_settings_factory(ModelSettings())[0])()
    factory = lambda: (model, tok)
    cfg = ConsolidationConfig(max_steps=steps, batch_size=4, kl_weight=0.0, drift_check=False, checkpoint_every=1)
    data, out_dir = root / "consolidation", root / "consolidation" / "adapters"

    def worker(mem: Any) -> ConsolidationWorker:
        return ConsolidationWorker(mem, factory, out_dir=out_dir, namespaces=["u"], config=cfg, progress=False)

    mem = open_memory(data, emb)
    for s in STORIES:
        mem.write({"text": f"{s['who']} {s['action']} the {s['what']} at the {s['where']} on {s['when']}.",
                   "slots": s, "force": True}, namespace="u")
    t = time.perf_counter()
    first = worker(mem).step()
    one = time.perf_counter() - t
    mem.close()
    name = "real SmolLM2-135M" if model_factory is None else f"{type(model).__name__} from the given factory"
    notes = [(f"{name} on CPU, {steps} optimizer step(s) per consolidation, drift check and distillation off, "
             f"checkpoint after every step; the first consolidation took {one:.1f} s ({first.status})")]
    out: list[ConsolidationTrial] = []
    for i in range(trials):
        before = json.loads((out_dir / "state.json").read_text()).get("active")
        ack_file = root / f"ack-c{i}.jsonl"
        delay = rng.uniform(0.05, 1.0) * one

        def body(fd: int) -> None:
            m = open_memory(data, emb)
            ack(fd, {"op": "opened"})
            ack(fd, {"begin": "step"})
            r = worker(m).step()
            ack(fd, {"op": "step", "status": r.status, "version": r.version})

        pid = fork_child(body, ack_file)
        wait_for_acks(pid, ack_file, 1)  # the store is open: the kill lands inside the consolidation
        _, killed = kill_after(pid, delay)
        acks, _, error = read_acks(ack_file)
        ack_file.unlink(missing_ok=True)
        active, loadable, hash_ok, detail = _served(out_dir, model)
        detail = f"the child failed on its own: {error}; {detail}" if error else detail
        completed = {a["version"] for a in acks if a.get("status") == "accepted"}  # "opened" has no status
        state = json.loads((out_dir / "state.json").read_text())
        finished_versions = {v["version"] for v in state["versions"] if v["status"] == "accepted"}
        served_ok = active == before or (active in finished_versions and active not in (None, before))
        mem = open_memory(data, emb)
        try:
            problems = len(mem.verify().problems)
        finally:
            mem.close()
        trial = ConsolidationTrial(
            trial=i, delay_s=round(delay, 2), finished_before_kill=not killed or bool(completed), active_before=before,
            active_after=active, served_ok=served_ok, loadable=loadable, hash_ok=hash_ok,
            checkpoint_left=(out_dir / ".checkpoint").is_dir(), verify_problems=problems, detail=detail)
        out.append(trial)
        log(f"consolidation trial {i + 1}/{trials}: killed after {delay:.1f} s, active {before} -> {active}, "
            f"{'FAIL ' + detail if trial.failed else 'ok'}")
    # One more consolidation, not killed: it must finish (resuming a checkpoint if a kill left one).
    mem = open_memory(data, emb)
    try:
        resumed = (out_dir / ".checkpoint").is_dir()
        last = worker(mem).step()
    finally:
        mem.close()
    active, loadable, hash_ok, detail = _served(out_dir, model)
    recovered = last.status == "accepted" and active == last.version and loadable and hash_ok
    notes.append(f"recovery consolidation after the trials: {last.status} {last.version} "
                 f"({'resumed a checkpoint' if resumed else 'no checkpoint to resume'}); served {active}, "
                 f"loadable={loadable}, hash ok={hash_ok} {detail}".strip())
    failed = sum(t.failed for t in out) + (not recovered)
    totals = {"killed_before_finishing": sum(not t.finished_before_kill for t in out),
              "served_changed_to_unfinished": sum(not t.served_ok for t in out),
              "unloadable": sum(not t.loadable for t in out), "hash_mismatch": sum(not t.hash_ok for t in out),
              "checkpoints_left": sum(t.checkpoint_left for t in out), "recovered": int(recovered)}
    return Summary(trials=len(out), failed=failed, killed_mid_operation=totals["killed_before_finishing"],
                   totals=totals, seconds=round(time.perf_counter() - t0, 1), notes=notes), out

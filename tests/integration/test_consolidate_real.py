"""Consolidation on the real SmolLM2-135M-Instruct: B3 answers what was replayed; the CLI runs, reports and rolls back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from hei_nw_plugin.cli import main as cli_main
from hei_nw_plugin.config import HeiNwSettings, ModelSettings
from hei_nw_plugin.consolidate import ConsolidationConfig, ConsolidationWorker
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.model.loading import CONVERSION_RECORD, resolve_model_path
from hei_nw_plugin.wrapper import HeiNwForCausalLM

pytestmark = [pytest.mark.integration, pytest.mark.model, pytest.mark.slow]

STORIES = [
    {"who": "Zenobia", "action": "dropped", "what": "wicker basket", "where": "north pier", "when": "Saturday morning"},
    {"who": "Leopold", "action": "weighed", "what": "birch canoe", "where": "seed vault", "when": "Tuesday evening"},
    {"who": "Hamish", "action": "sold", "what": "pearl hairpin", "where": "boiler room", "when": "Monday afternoon"},
]


def _mem(folder: Path) -> HEIMemory:
    mem = HEIMemory(HeiNwSettings.build(store={"data_dir": folder}), embedder=HashingEmbedder(dim=128))
    for s in STORIES:
        mem.write({"text": f"{s['who']} {s['action']} the {s['what']} at the {s['where']} on {s['when']}.", "slots": s,
                   "force": True}, namespace="u")
    return mem


def test_b3_answers_replayed_episodes_that_b0_cannot(tmp_path: Path) -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    mem = _mem(tmp_path / "m")
    # The training path alone (rows, early stop, shared prefix, upper-half LoRA), without distillation or the guard:
    # what the guard decides is measured by the eval's consolidation curves (reports/consolidation).
    cfg = ConsolidationConfig(max_steps=40, check_every=5, kl_weight=0.0, drift_check=False)
    worker = ConsolidationWorker(mem, ModelSettings(), out_dir=tmp_path / "c", namespaces=["u"], config=cfg, progress=False)
    result = worker.step()
    assert result.status == "accepted"
    assert result.loss_last is not None and result.loss_first is not None and result.loss_last < result.loss_first / 4
    conv = json.loads((Path(resolve_model_path(ModelSettings())) / CONVERSION_RECORD).read_text())
    assert worker.lineage("v0001")["base_model"]["weights_sha256"] == conv["weights_sha256"]

    lm = HeiNwForCausalLM.from_settings(HeiNwSettings.build(), mode="B0")
    questions = [(f"Where did {s['who']} {q} the {s['what']} on {s['when']}?", s["where"])
                 for s, q in zip(STORIES, ("drop", "weigh", "sell"))]
    b0 = [lm.generate_answer(q).text == a for q, a in questions]
    lm.load_consolidated(worker.active)  # type: ignore[arg-type]
    lm.mode = "B3"
    b3 = [lm.generate_answer(q).text == a for q, a in questions]
    assert sum(b3) >= 2 and sum(b0) == 0, (b0, b3)
    mem.close()


def test_cli_consolidates_reports_status_and_rolls_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _mem(tmp_path / "m").close()
    base = ["--data-dir", str(tmp_path / "m"), "consolidate", "--namespace", "u", "--threads", "2", "--quiet"]
    cli_main(base + ["--steps", "2", "--no-drift-check", "--kl-weight", "0"])
    assert json.loads(capsys.readouterr().out)["status"] == "accepted"
    cli_main(base + ["status"])
    status = json.loads(capsys.readouterr().out)
    assert status["active"] == "v0001" and status["versions"][0]["traces"] == 3 and status["background"] is None
    cli_main(base + ["rollback"])
    assert "none (base model)" in capsys.readouterr().out

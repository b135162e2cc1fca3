"""The ONNX Runtime and torch embedders compute the same MiniLM vectors, so either can read a store the other wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hei_nw_plugin.embed import OnnxSentenceEmbedder, SentenceTransformerEmbedder, default_embedder, minilm_path
from hei_nw_plugin.errors import ConfigError

pytestmark = pytest.mark.integration

TEXTS = [
    "Who brought the brass lantern to the harbour on Monday?",
    "Priya's email is priya.n@example.org",
    "",
    "Ünïcödé and emoji 🚀 survive tokenisation",
    " ".join(f"word{i}" for i in range(600)),  # longer than max_seq_length: both truncate at 256 tokens
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[OnnxSentenceEmbedder, SentenceTransformerEmbedder]:
    onnx = OnnxSentenceEmbedder(cache_size=0, cache_dir=tmp_path_factory.mktemp("onnx"))
    return onnx, SentenceTransformerEmbedder(cache_size=0)


def test_onnx_matches_torch_in_batches_and_one_by_one(pair: tuple[OnnxSentenceEmbedder, SentenceTransformerEmbedder]) -> None:
    onnx, torch_emb = pair
    ref = torch_emb.embed(TEXTS)
    batch = onnx.embed(TEXTS)
    single = np.concatenate([onnx.embed([t]) for t in TEXTS])
    assert batch.shape == ref.shape == (len(TEXTS), 384)
    assert np.abs(batch - ref).max() < 1e-5
    assert np.abs(single - ref).max() < 1e-5
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_export_is_cached_and_reused(tmp_path: Path) -> None:
    first = OnnxSentenceEmbedder(cache_size=0, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.onnx"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    stamp = files[0].stat().st_mtime_ns
    second = OnnxSentenceEmbedder(cache_size=0, cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == stamp
    assert np.array_equal(first.embed(["same"]), second.embed(["same"]))


def test_backend_choice_and_errors(tmp_path: Path) -> None:
    assert isinstance(default_embedder(backend="torch"), SentenceTransformerEmbedder)
    assert isinstance(default_embedder(backend="auto"), OnnxSentenceEmbedder)  # onnxruntime ships with the embed extra
    with pytest.raises(ConfigError, match="backend"):
        default_embedder(backend="tpu")  # type: ignore[arg-type]
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_text((minilm_path() / "config.json").read_text())
    with pytest.raises(ConfigError, match="ONNX embedder unavailable"):
        default_embedder(name="sentence-transformers", path=broken, backend="onnx")


def test_single_cues_are_cached_and_batches_are_not(tmp_path: Path) -> None:
    emb = OnnxSentenceEmbedder(cache_size=2, cache_dir=tmp_path)
    calls: list[int] = []
    encode = emb._encode
    emb._encode = lambda texts: (calls.append(len(texts)), encode(texts))[1]  # type: ignore[method-assign]
    first = emb.embed(["where is the lantern?"])
    again = emb.embed(["where is the lantern?"])
    emb.embed(["a", "b"])
    emb.embed(["a", "b"])
    assert np.array_equal(first, again) and calls == [1, 2, 2]


def test_spin_setting_reaches_the_onnx_session(tmp_path: Path) -> None:
    """Idle ONNX threads do not spin by default (a spinning thread slowed the numpy work after each cue)."""
    from hei_nw_plugin.config import HeiNwSettings
    from hei_nw_plugin.memory import HEIMemory

    quiet = OnnxSentenceEmbedder(cache_size=0, cache_dir=tmp_path)
    spinning = OnnxSentenceEmbedder(cache_size=0, cache_dir=tmp_path, spin=True)
    key = "session.intra_op.allow_spinning"
    assert quiet._sess.get_session_options().get_session_config_entry(key) == "0"
    assert spinning._sess.get_session_options().get_session_config_entry(key) == "1"
    assert np.array_equal(quiet.embed(TEXTS[:2]), spinning.embed(TEXTS[:2]))  # same vectors either way
    settings = HeiNwSettings.build(embedder={"spin": True}, store={"data_dir": str(tmp_path / "s")})
    mem = HEIMemory(settings)
    try:
        assert mem.embedder._sess.get_session_options().get_session_config_entry(key) == "1"  # type: ignore[attr-defined]
    finally:
        mem.close()


def test_int8_copy_is_made_once_and_stays_close_to_float(tmp_path: Path,
                                                        pair: tuple[OnnxSentenceEmbedder, SentenceTransformerEmbedder]) -> None:
    int8 = OnnxSentenceEmbedder(cache_size=0, cache_dir=tmp_path, int8=True)
    assert sorted(p.name.endswith("-int8pc.onnx") for p in tmp_path.glob("*.onnx")) == [False, True]
    a, b = pair[0].embed(TEXTS[:2] + TEXTS[3:]), int8.embed(TEXTS[:2] + TEXTS[3:])
    cos = (a * b).sum(axis=1)
    # A different, close vector (per-channel scales: ~0.99; the 256-token text drifts most).
    assert cos[:3].min() > 0.98 and cos[3] > 0.9 and not np.allclose(a, b)
    assert int8.name.endswith("-int8")
    with pytest.raises(ConfigError, match="int8"):
        default_embedder(backend="torch", quantize="int8")

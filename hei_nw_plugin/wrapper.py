"""HeiNwForCausalLM: a Hugging Face causal LM with episodic memory, one mode switch away.

Modes (the paper's baselines), switched with ``lm.mode = "B1"``:

* ``B0`` the base model alone (no recall, no adapter, no LoRA).
* ``B1`` recall from the attached :class:`~hei_nw_plugin.memory.HEIMemory` before
  answering; memory reaches the model by ``memory_route``: ``prefix`` (packed memory
  tokens in the prompt), ``adapter`` (the same tokens read by the Episodic Adapter),
  or ``both``. The memory-reader LoRA, when loaded and enabled, is active only
  while there is memory, so B1 with nothing recalled is exactly B0.
* ``B2`` B1 plus consolidated weights; ``B3`` consolidated weights, no recall.
  Both need a consolidated LoRA (``ModelSettings.consolidated_weights``) and
  raise :class:`ConfigError` without one.

The model, tokenizer and every generation setting are pinned by ``ModelSettings``
and reported by :meth:`HeiNwForCausalLM.generation_record`. A ``transformers``
pipeline task (``hei-nw-qa``) wraps :meth:`generate_answer`.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

try:
    import torch
    from transformers import AutoModelForCausalLM, Pipeline
except ImportError as err:  # pragma: no cover - exercised only without the extra
    from hei_nw_plugin.errors import require_extra

    raise require_extra(err.name or "torch", "model") from err

from hei_nw_plugin.adapter import CONFIG_FILE, AdapterConfig, AdapterHook, EpisodicAdapter, MemoryState, weights_sha256
from hei_nw_plugin.attribution import other_speaker
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.errors import ConfigError
from hei_nw_plugin.model.loading import CONVERSION_RECORD, LoadedModel, generation_record, load_base_model
from hei_nw_plugin.model.prompting import ABSTAIN, DEFAULT_ONE_SHOT, OneShot, answer_messages, clean_answer, prompt_memory
from hei_nw_plugin.surprise import ModelNLLSurprise
from hei_nw_plugin.types import DEFAULT_NAMESPACE, MemoryEvent, Trace, WriteDecision

if TYPE_CHECKING:
    from hei_nw_plugin.memory import HEIMemory
    from hei_nw_plugin.model.abstain import AbstainGate

Mode = Literal["B0", "B1", "B2", "B3"]
Route = Literal["prefix", "adapter", "both"]
MODES: tuple[str, ...] = ("B0", "B1", "B2", "B3")
SHIPPED_WEIGHTS = Path(__file__).parent / "weights"
READER_DIR = "reader_lora"
PIPELINE_TASK = "hei-nw-qa"


@dataclass
class Answer:
    """One generated answer and how it was produced (timings in ms)."""

    text: str
    raw: str
    mode: str
    route: str | None
    memory_text: str
    trace_ids: list[str] = field(default_factory=list)
    new_tokens: int = 0
    reader: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)
    write: WriteDecision | None = None
    abstain: tuple[float, bool] | None = None
    """The reader's abstention rule at the first answer token: the reply's probability and whether it
    was the top choice (None when the rule did not run)."""
    other_speaker: str | None = None
    """Who said the best recalled trace, when the question asks about another speaker and the reader abstained."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["write"] = self.write.model_dump(mode="json") if self.write is not None else None
        return out


def _matches_shipped(folder: Path, model_path: str) -> bool:
    """True when weights in ``folder`` were trained on the model at ``model_path``."""
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
        conv = json.loads((Path(model_path) / CONVERSION_RECORD).read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("base_model", {}).get("weights_sha256") == conv.get("weights_sha256"))


class HeiNwForCausalLM:
    """A causal LM plus episodic memory, adapter and reader (see the module docstring).

    Build with :meth:`from_settings` (loads everything from config) or
    :meth:`from_model` (an already loaded model and tokenizer). Thread-safe for
    concurrent calls (one generation at a time; the adapter's memory is per call)::

        mem = HEIMemory.open("./mem")
        lm = HeiNwForCausalLM.from_settings(mem.settings, memory=mem, mode="B1")
        mem.write("Nadia keeps the spare key in the garden shed.", namespace="u1")
        lm.generate_answer("Where does Nadia keep the spare key?", namespace="u1").text
        lm.mode = "B0"   # one-line switch back to the bare model

    or through transformers: ``register_pipeline()`` then
    ``pipeline("hei-nw-qa", model=resolve_model_path(ModelSettings()), memory=mem)``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        settings: HeiNwSettings | None = None,
        memory: HEIMemory | None = None,
        mode: Mode = "B1",
        adapter: EpisodicAdapter | None = None,
        reader: str | Path | None = None,
        model_path: str = "",
    ) -> None:
        self.settings = settings or HeiNwSettings()
        self.tokenizer = tokenizer
        self.model_path = model_path
        self._lock = threading.RLock()
        self._abstain_first: list[int] | None = None
        self._peft: Any = None
        self._reader_path: Path | None = None
        self._consolidated_path: Path | None = None
        self.base_model = model
        self.model = model
        self.adapter = adapter
        self.hook = AdapterHook(model, adapter) if adapter is not None else None
        self._adapter_path: Path | None = None
        self._mode: str = "B0"
        self._heads: OrderedDict[tuple[tuple[int, ...], tuple[str, ...]], Any] = OrderedDict()
        if reader is not None:
            self._load_lora(Path(reader), "reader")
            self._reader_path = Path(reader)
        if self.settings.model.consolidated_weights is not None:
            self.load_consolidated(self.settings.model.consolidated_weights)
        self.surprise = ModelNLLSurprise(self.base_model, tokenizer, base_context=self.base_only)
        self._memory: HEIMemory | None = None
        self.mode = mode
        self.memory = memory
        if self.route_uses_adapter and self.adapter is None:
            raise ConfigError(
                f"memory_route={self.route!r} needs Episodic Adapter weights; train them with "
                "`python -m hei_nw_plugin.train_adapter` and set model.adapter_weights"
            )

    # ------------------------------------------------------------------ building
    @classmethod
    def from_settings(
        cls, settings: HeiNwSettings | None = None, *, memory: HEIMemory | None = None, mode: Mode = "B1"
    ) -> HeiNwForCausalLM:
        """Load the base model as ``settings.model`` says (offline), then :meth:`from_model`."""
        settings = settings or (memory.settings if memory is not None else HeiNwSettings())
        loaded = load_base_model(settings.model)
        return cls.from_model(loaded.model, loaded.tokenizer, settings=settings, memory=memory, mode=mode,
                              model_path=loaded.path)

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, *, settings: HeiNwSettings | None = None, memory: HEIMemory | None = None,
        mode: Mode = "B1", model_path: str = "",
    ) -> HeiNwForCausalLM:
        """Wrap a loaded model, adding adapter and reader weights from settings, or the shipped
        ones when they were trained on this very model (checked by weights hash)."""
        settings = settings or (memory.settings if memory is not None else HeiNwSettings())
        ms = settings.model
        shipped = _matches_shipped(SHIPPED_WEIGHTS, model_path)
        adapter_dir = ms.adapter_weights or (SHIPPED_WEIGHTS if shipped else None)
        adapter = None
        if adapter_dir is not None:
            adapter, _ = EpisodicAdapter.load(adapter_dir)
            expected = AdapterConfig.for_model(
                model.config, depth=ms.adapter_depth, kv_heads=ms.adapter_kv_heads,
                max_mem_tokens=settings.pack.max_mem_tokens,
            )
            # Trained weights fix their own K/V head count; only an explicit setting must agree.
            kv_pinned = "adapter_kv_heads" in ms.model_fields_set
            if adapter.config.layer != expected.layer or (kv_pinned and adapter.config.kv_heads != expected.kv_heads):
                raise ConfigError(
                    f"adapter weights in {adapter_dir} sit after layer {adapter.config.layer} with "
                    f"{adapter.config.kv_heads} K/V heads; settings ask for layer {expected.layer}"
                    + (f" with {expected.kv_heads}" if kv_pinned else "")
                )
            adapter.config = replace(adapter.config, max_mem_tokens=settings.pack.max_mem_tokens)
        # Loaded even when memory_reader is off, so it can be switched per call.
        shipped_reader = SHIPPED_WEIGHTS / READER_DIR
        reader_dir = ms.reader_weights or (shipped_reader if shipped and shipped_reader.is_dir() else None)
        lm = cls(model, tokenizer, settings=settings, memory=memory, mode=mode,
                 adapter=adapter, reader=reader_dir, model_path=model_path)
        lm._adapter_path = Path(adapter_dir) if adapter_dir is not None else None
        return lm

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> HeiNwForCausalLM:
        """Like :meth:`from_settings` with ``model.model_id`` set to a local folder / id."""
        settings: HeiNwSettings = kwargs.pop("settings", None) or HeiNwSettings()
        settings = settings.model_copy(update={"model": settings.model.model_copy(update={"model_id": model_id})})
        return cls.from_settings(settings, **kwargs)

    def _load_lora(self, folder: Path, name: str) -> None:
        try:
            from peft import PeftModel
        except ImportError as err:
            from hei_nw_plugin.errors import require_extra

            raise require_extra("peft", "model") from err
        if not (folder / "adapter_config.json").is_file():
            sub = folder / name
            if (sub / "adapter_config.json").is_file():  # peft saves named adapters in a subfolder
                folder = sub
            else:
                raise ConfigError(f"no peft LoRA (adapter_config.json) in {folder}")
        self._heads.clear()  # cached prompt heads were computed with the old LoRA set
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self.base_model, str(folder), adapter_name=name)
            self.model = self._peft
        else:
            self._peft.load_adapter(str(folder), adapter_name=name)
        self._peft.eval()

    def load_consolidated(self, folder: str | Path) -> None:
        """Load the consolidated LoRA that modes B2 and B3 use (replacing one loaded before)."""
        with self._lock:
            mode = self._mode
            self.unload_consolidated()
            self._load_lora(Path(folder), "consolidated")
            self._consolidated_path = Path(folder)
            self._mode = mode  # a version swap keeps B2/B3

    def unload_consolidated(self) -> None:
        """Drop the consolidated LoRA; modes B2/B3 are unavailable until the next :meth:`load_consolidated`."""
        with self._lock:
            self._heads.clear()
            if self._peft is not None and "consolidated" in self._peft.peft_config:
                if set(self._peft.peft_config) == {"consolidated"}:
                    self._peft.unload()  # the only LoRA: take peft off the base model entirely
                    self._peft = None
                    self.model = self.base_model
                else:
                    self._peft.delete_adapter("consolidated")
            self._consolidated_path = None
            if self._mode in ("B2", "B3"):
                self._mode = "B0"

    def consolidate(self, *, out_dir: str | Path, namespaces: Sequence[str] = (DEFAULT_NAMESPACE,),
                    config: Any = None, fresh: bool = False) -> Any:
        """Replay this model's memory into a new consolidated LoRA version and load it when accepted.

        Runs one :class:`~hei_nw_plugin.consolidate.ConsolidationWorker` step (which
        trains on a fresh copy of the base model) and returns its result.
        """
        from hei_nw_plugin.consolidate import ConsolidationWorker

        if self._memory is None:
            raise ConfigError("consolidate() replays memory; attach a HEIMemory first (lm.memory = mem)")
        worker = ConsolidationWorker(self._memory, self.settings.model, out_dir=out_dir, namespaces=namespaces,
                                     config=config)
        result = worker.step(fresh=fresh)
        if worker.active is not None:
            self.load_consolidated(worker.active)
        return result

    # ------------------------------------------------------------------ switches
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {value!r}")
        if value in ("B2", "B3") and self._consolidated_path is None:
            raise ConfigError(
                f"mode {value} needs consolidated weights; none are loaded "
                "(set model.consolidated_weights or call load_consolidated(folder))"
            )
        self._mode = value

    @property
    def memory(self) -> HEIMemory | None:
        return self._memory

    @memory.setter
    def memory(self, memory: HEIMemory | None) -> None:
        """Attach memory; its write gate then scores surprise with this model's token NLL."""
        self._memory = memory
        if memory is not None:
            memory.attach_surprise(self.surprise)
            memory.set_token_counter(self.count_tokens)

    @property
    def route(self) -> str:
        return self.settings.model.memory_route

    @route.setter
    def route(self, value: Route) -> None:
        self.settings.model.memory_route = value
        if self.route_uses_adapter and self.adapter is None:
            raise ConfigError(f"memory_route={value!r} needs Episodic Adapter weights")

    @property
    def route_uses_adapter(self) -> bool:
        return self.route in ("adapter", "both")

    @property
    def has_reader(self) -> bool:
        return self._reader_path is not None

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under the model's tokenizer."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @contextmanager
    def base_only(self) -> Iterator[None]:
        """Within the block the model is the plain base model (no LoRA; the adapter is idle without memory)."""
        ctx = self._peft.disable_adapter() if self._peft is not None else nullcontext()
        with self._lock, ctx:
            yield

    @contextmanager
    def _loras(self, names: Sequence[str]) -> Iterator[None]:
        if self._peft is None or not names:
            with self.base_only():
                yield
            return
        self._peft.base_model.set_adapter(list(names), inference_mode=True)
        yield

    # ------------------------------------------------------------------ generation
    def _recall(self, question: str, namespace: str, k: int) -> tuple[str, list[str], float, list[Trace]]:
        if self._memory is None:
            raise ConfigError(f"mode {self.mode} recalls from memory; attach a HEIMemory (lm.memory = mem)")
        t = time.perf_counter()
        result = self._memory.recall(question, k=k, namespace=namespace)
        ms = (time.perf_counter() - t) * 1000
        return result.memory_tokens.text, list(result.memory_tokens.trace_ids), ms, [r.trace for r in result.traces]

    def _head_cache(self, head: list[dict[str, str]], input_ids: torch.Tensor, loras: Sequence[str]) -> Any | None:
        """A copy of the KV cache of the prompt's fixed ``head`` messages, computed once per LoRA set
        (call with the LoRAs active and no adapter memory); None when the prompt does not start with it."""
        ids = self.tokenizer.apply_chat_template(head, add_generation_prompt=False, tokenize=True, return_dict=True)["input_ids"]
        ids = tuple(int(i) for i in ids)
        if len(ids) >= input_ids.shape[1] or tuple(input_ids[0, : len(ids)].tolist()) != ids:
            return None
        key = (ids, tuple(loras))
        if key not in self._heads:
            with torch.inference_mode():
                out = self.model(input_ids=input_ids[:, : len(ids)], use_cache=True)
            self._heads[key] = out.past_key_values
            while len(self._heads) > 16:
                self._heads.popitem(last=False)
        self._heads.move_to_end(key)
        return copy.deepcopy(self._heads[key])

    def _generate(
        self, messages: list[dict[str, str]], memory_text: str, *, max_new_tokens: int, stop_newline: bool,
        use_adapter: bool, loras: Sequence[str], head: list[dict[str, str]] | None = None,
    ) -> tuple[str, int, dict[str, float], tuple[float, bool] | None]:
        ms = self.settings.model
        timings: dict[str, float] = {}
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        enc = {k: v.to(self.base_model.device) for k, v in enc.items()}
        state: MemoryState | None = None
        if use_adapter and memory_text and self.hook is not None:
            t = time.perf_counter()
            state = self.hook.encode_memory(self.tokenizer, [memory_text])
            timings["encode_memory"] = (time.perf_counter() - t) * 1000
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if ms.temperature > 0:
            kwargs |= {"do_sample": True, "temperature": ms.temperature}
            torch.manual_seed(ms.seed)
        else:
            kwargs |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if stop_newline:
            kwargs |= {"stop_strings": ["\n"], "tokenizer": self.tokenizer}
        gate: AbstainGate | None = None
        if stop_newline and "reader" in loras and ms.reader_abstain_min > 0:
            from transformers import LogitsProcessorList

            from hei_nw_plugin.model.abstain import AbstainGate

            gate = AbstainGate(self._abstain_ids(), int(enc["input_ids"].shape[1]), ms.reader_abstain_min)
            kwargs["logits_processor"] = LogitsProcessorList([gate])
        t = time.perf_counter()
        with self._lock, ExitStack() as stack:
            stack.enter_context(self._loras(loras))
            if self.hook is not None:
                stack.enter_context(self.hook.memory(state))
            if head and state is None and ms.prefix_cache:
                cache = self._head_cache(head, enc["input_ids"], loras)
                if cache is not None:
                    kwargs["past_key_values"] = cache
            with torch.inference_mode():
                out = self.model.generate(**enc, **kwargs)
        timings["generate"] = (time.perf_counter() - t) * 1000
        new = out[0, enc["input_ids"].shape[1]:]
        seen = gate.seen[0] if gate is not None and gate.seen else None
        return self.tokenizer.decode(new, skip_special_tokens=True), int(new.numel()), timings, seen

    def _abstain_ids(self) -> list[int]:
        """First token of the reader's abstention reply, as it starts a reply with and without a space."""
        if self._abstain_first is None:
            enc = self.tokenizer.encode
            self._abstain_first = sorted({enc(ABSTAIN, add_special_tokens=False)[0], enc(" " + ABSTAIN, add_special_tokens=False)[0]})
        return self._abstain_first

    def _plan(self, memory_text: str) -> tuple[str | None, bool, list[str]]:
        """(route, adapter on, LoRA names) for the current mode and memory."""
        loras: list[str] = []
        if self.mode in ("B2", "B3"):
            loras.append("consolidated")
        if self.mode in ("B0", "B3") or not memory_text:
            return None, False, loras
        if self.settings.model.memory_reader and self.has_reader:
            loras.append("reader")
        return self.route, self.route_uses_adapter, loras

    def generate_answer(
        self,
        question: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        k: int | None = None,
        memory_text: str | None = None,
        one_shot: OneShot | None = DEFAULT_ONE_SHOT,
        max_new_tokens: int | None = None,
        write_back: bool = False,
        recalled: Sequence[Trace] | None = None,
    ) -> Answer:
        """Answer a question in the current mode (short answer, one-shot format).

        ``memory_text`` bypasses recall (oracle / ablations: the given text is used
        as the packed memory; ``recalled``: the traces behind it, best first, for the
        speaker check). ``write_back`` offers the question to memory through the write
        gate afterwards (B1/B2 only).
        """
        t0 = time.perf_counter()
        ms = self.settings.model
        trace_ids: list[str] = []
        timings: dict[str, float] = {}
        if self.mode in ("B1", "B2") and memory_text is None:
            memory_text, trace_ids, timings["recall"], recalled = self._recall(question, namespace, k or ms.recall_k)
        if self.mode in ("B0", "B3"):
            memory_text = ""
        memory_text = memory_text or ""
        route, use_adapter, loras = self._plan(memory_text)
        shown = prompt_memory(memory_text, route) if route is not None else ""
        messages = answer_messages(question, shown, one_shot=one_shot)
        other = other_speaker(question, recalled or []) if "reader" in loras and ms.reader_speaker_check else None
        raw, n_new, gen_t, abstain = (ABSTAIN, 0, {}, None) if other else self._generate(
            messages, memory_text, max_new_tokens=max_new_tokens or ms.answer_max_new_tokens,
            stop_newline=True, use_adapter=use_adapter, loras=loras, head=messages[:-1],
        )
        timings |= gen_t
        answer = Answer(
            text=clean_answer(raw), raw=raw, mode=self.mode, route=route, memory_text=memory_text,
            trace_ids=trace_ids, new_tokens=n_new, reader="reader" in loras, timings_ms=timings, abstain=abstain,
            other_speaker=other,
        )
        if write_back and self.mode in ("B1", "B2") and self._memory is not None:
            answer.write = self._memory.write(MemoryEvent(text=question), namespace=namespace)
        answer.timings_ms["total"] = (time.perf_counter() - t0) * 1000
        return answer

    def chat(
        self,
        messages: Sequence[dict[str, str]],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        k: int | None = None,
        max_new_tokens: int | None = None,
        write_back: bool = False,
    ) -> Answer:
        """Free-form reply to a chat. In B1/B2 the last user message is the recall cue and
        recalled memory joins the system message; ``write_back`` offers that user message
        to memory through the gate."""
        if not messages or messages[-1].get("role") != "user":
            raise ConfigError("chat() needs messages ending with a user message")
        t0 = time.perf_counter()
        ms = self.settings.model
        cue = messages[-1]["content"]
        memory_text, trace_ids, timings = "", list[str](), dict[str, float]()
        if self.mode in ("B1", "B2"):
            memory_text, trace_ids, timings["recall"], _ = self._recall(cue, namespace, k or ms.recall_k)
        route, use_adapter, loras = self._plan(memory_text)
        loras = [n for n in loras if n != "reader"]  # the reader is trained for short answers only
        msgs = [dict(m) for m in messages]
        shown = prompt_memory(memory_text, route) if route is not None else ""
        if shown:
            note = f"Memory:\n{shown}"
            if msgs[0].get("role") == "system":
                msgs[0]["content"] = f"{msgs[0]['content']}\n\n{note}"
            else:
                msgs.insert(0, {"role": "system", "content": f"You are a helpful assistant.\n\n{note}"})
        raw, n_new, gen_t, _ = self._generate(
            msgs, memory_text, max_new_tokens=max_new_tokens or ms.max_new_tokens, stop_newline=False,
            use_adapter=use_adapter, loras=loras,
        )
        reply = Answer(text=raw.strip(), raw=raw, mode=self.mode, route=route, memory_text=memory_text,
                       trace_ids=trace_ids, new_tokens=n_new, timings_ms=timings | gen_t)
        if write_back and self.mode in ("B1", "B2") and self._memory is not None:
            reply.write = self._memory.write(MemoryEvent(text=cue), namespace=namespace)
        reply.timings_ms["total"] = (time.perf_counter() - t0) * 1000
        return reply

    # ------------------------------------------------------------------ records
    def generation_record(self) -> dict[str, Any]:
        """Model, tokenizer, decoding, seed, mode, route and weight hashes: store beside results."""
        loaded = LoadedModel(model=self.base_model, tokenizer=self.tokenizer, path=self.model_path, settings=self.settings.model)
        extra: dict[str, Any] = {
            "mode": self.mode,
            "memory_route": self.route,
            "memory_reader": self.settings.model.memory_reader and self.has_reader,
            "reader_abstain_min": self.settings.model.reader_abstain_min,
            "recall_k": self.settings.model.recall_k,
            "answer_max_new_tokens": self.settings.model.answer_max_new_tokens,
            "stop": "newline (answers), end of turn",
            "max_mem_tokens": self.adapter.config.max_mem_tokens if self.adapter else self.settings.pack.max_mem_tokens,
            "adapter": asdict(self.adapter.config) if self.adapter else None,
            "adapter_weights": str(self._adapter_path) if self._adapter_path else None,
            "reader_weights": str(self._reader_path) if self._reader_path else None,
            "consolidated_weights": str(self._consolidated_path) if self._consolidated_path else None,
        }
        if self._adapter_path is not None:
            extra["adapter_sha256"] = weights_sha256(self._adapter_path)
        return generation_record(loaded, **extra)

    def pipeline(self, **kwargs: Any) -> Pipeline:
        """A transformers pipeline (task ``hei-nw-qa``) answering through this wrapper."""
        from transformers import pipeline

        register_pipeline()
        build: Any = pipeline  # the task is registered at runtime, outside transformers' overloads
        return cast(Pipeline, build(PIPELINE_TASK, model=self.base_model, tokenizer=self.tokenizer, hei_nw=self,
                                    device=self.base_model.device, **kwargs))


class HeiNwQAPipeline(Pipeline):
    """``pipeline("hei-nw-qa", model=..., memory=mem, mode="B1")``: question in, answer out.

    Call kwargs: ``namespace``, ``k``, ``memory_text``, ``write_back``, ``max_new_tokens``.
    Returns ``{"answer", "generated_text", "raw", "memory", "trace_ids", "mode", "route"}``.
    """

    # transformers annotates these flags as None; pipeline() reads them as booleans.
    _load_processor = False  # type: ignore[assignment]
    _load_image_processor = False  # type: ignore[assignment]
    _load_feature_extractor = False  # type: ignore[assignment]
    _load_tokenizer = True  # type: ignore[assignment]

    def __init__(self, *args: Any, hei_nw: HeiNwForCausalLM | None = None, memory: HEIMemory | None = None,
                 mode: Mode = "B1", settings: HeiNwSettings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hei_nw = hei_nw or HeiNwForCausalLM.from_model(
            self.model, self.tokenizer, settings=settings, memory=memory, mode=mode,
            model_path=str(getattr(self.model, "name_or_path", "")),
        )

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        allowed = {"namespace", "k", "memory_text", "write_back", "max_new_tokens"}
        unknown = set(kwargs) - allowed - {"hei_nw", "memory", "mode", "settings"}
        if unknown:
            raise ConfigError(f"unknown hei-nw-qa arguments: {sorted(unknown)}")
        return {}, {k: v for k, v in kwargs.items() if k in allowed}, {}

    def preprocess(self, inputs: Any, **_: Any) -> dict[str, Any]:  # type: ignore[override]
        question = inputs.get("question") if isinstance(inputs, dict) else inputs
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("hei-nw-qa needs a non-empty question string")
        return {"question": question}

    def _forward(self, model_inputs: dict[str, Any], **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return {"answer": self.hei_nw.generate_answer(model_inputs["question"], **kwargs)}

    def postprocess(self, model_outputs: dict[str, Any], **_: Any) -> dict[str, Any]:
        a = cast(Answer, model_outputs["answer"])
        return {"answer": a.text, "generated_text": a.text, "raw": a.raw, "memory": a.memory_text,
                "trace_ids": a.trace_ids, "mode": a.mode, "route": a.route}


def register_pipeline() -> None:
    """Register the ``hei-nw-qa`` task with transformers (idempotent)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    if PIPELINE_TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=HeiNwQAPipeline, pt_model=AutoModelForCausalLM)

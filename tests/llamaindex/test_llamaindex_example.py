"""examples/llamaindex_chat.py on the real MiniLM embedder with default HEI-NW settings.

The LLMs record what they are sent, so the tests check the memory path (what the
model is given in the later session), not a model's wording. One test puts an
OpenAI-compatible stub on 127.0.0.1 behind the example's ``server_llm``: the same
HTTP path the project's server will answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
from llama_index.core.base.llms.types import ChatMessage
from llamaindex_fakes import RecordingLLM, recording_function_llm, system_text

from hei_nw_plugin.memory import HEIMemory

pytestmark = pytest.mark.integration



@pytest.fixture
def hei(tmp_path: Path, minilm: Any) -> Iterator[HEIMemory]:
    with HEIMemory.open(tmp_path, embedder=minilm) as memory:  # default settings; the shared MiniLM instance
        yield memory


def first_memory_line(told: str) -> str:
    return next(line for line in told.splitlines() if line.startswith("1. ["))


def test_chat_engine_session_two_is_given_the_fact_from_session_one(example: ModuleType, hei: HEIMemory) -> None:
    llm = RecordingLLM(reply="Ask for a nut-free cake.")
    answer = example.chat_engine_sessions(llm, hei)

    told = system_text(llm.calls[-1])
    fact = example.TELLS[1]
    assert fact in first_memory_line(told)  # a paraphrased question ranks the fact first
    assert example.SHOP_DOCS[0] in told  # the retriever's knowledge base
    assert answer == "Ask for a nut-free cake."


async def test_agent_session_two_is_given_the_fact_from_session_one(example: ModuleType, hei: HEIMemory) -> None:
    calls: list[list[ChatMessage]] = []
    answer = await example.agent_sessions(recording_function_llm(calls, reply="Pack rice cakes."), hei, user="maya")

    told = system_text(calls[-1])
    assert example.TELLS[1] in first_memory_line(told)
    assert example.AGENT_QUESTION not in told
    assert answer == "Pack rice cakes."


class ChatCompletionsStub(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions`` answering REPLY, plain or streamed; keeps each request body."""

    REPLY = "Tell them: no nuts at all."
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(body)
        base = {"id": "stub", "created": 0, "model": body["model"]}
        if body.get("stream"):
            chunks = [{**base, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": self.REPLY}, "finish_reason": "stop"}]}]
            payload = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            self._send(payload.encode(), "text/event-stream")
        else:
            answer = {**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": self.REPLY}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
            self._send(json.dumps(answer).encode(), "application/json")

    def _send(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub_api() -> Iterator[str]:
    ChatCompletionsStub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatCompletionsStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def system_text_of(request: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in request["messages"] if m["role"] == "system")


async def test_server_llm_sends_the_recalled_fact_over_http(example: ModuleType, hei: HEIMemory, stub_api: str) -> None:
    llm = example.server_llm(stub_api, "hei-nw", 8192)

    assert example.chat_engine_sessions(llm, hei) == ChatCompletionsStub.REPLY
    assert example.TELLS[1] in system_text_of(ChatCompletionsStub.requests[-1])

    assert await example.agent_sessions(llm, hei, user="maya") == ChatCompletionsStub.REPLY
    last = ChatCompletionsStub.requests[-1]
    assert last["stream"] is True and example.TELLS[1] in system_text_of(last)

"""A small OpenAI-compatible HTTP server on 127.0.0.1 for the server's unit tests.

It stands in for vLLM only where the behaviour under test is the HEI-NW
server's own (auth, limits, SSE framing, what reaches the backend): it records
every request and answers deterministically. The integration tests use real vLLM.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

MODEL = "fake-model"


def make_app(seen: list[dict[str, Any]], loras: dict[str, str]) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": MODEL, "object": "model", "created": 0, "owned_by": "fake", "parent": None}]
        data += [{"id": n, "object": "model", "created": 0, "owned_by": "fake", "parent": MODEL} for n in loras]
        return {"object": "list", "data": data}

    @app.post("/v1/load_lora_adapter")
    async def load_lora(request: Request) -> Any:
        body = await request.json()
        loras[body["lora_name"]] = body["lora_path"]
        return "ok"

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        seen.append({"path": "/v1/chat/completions", "body": body, "auth": request.headers.get("authorization")})
        if body.get("model") not in (MODEL, *loras):
            return JSONResponse({"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                           "type": "NotFoundError", "code": 404}}, status_code=404)
        if body.get("max_tokens") == 0:
            return JSONResponse({"error": {"message": "max_tokens must be at least 1", "type": "BadRequestError",
                                           "code": 400}}, status_code=400)
        text = "echo: " + str(body["messages"][-1].get("content"))
        if body.get("stream"):
            return StreamingResponse(_stream(body, text), media_type="text/event-stream")
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        seen.append({"path": "/v1/completions", "body": body})
        return {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "text": " done", "finish_reason": "stop"}]}

    return app


async def _stream(body: dict[str, Any], text: str) -> AsyncIterator[str]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
    yield f"data: {json.dumps(base | {'choices': [{'index': 0, 'delta': {'role': 'assistant', 'content': ''}}]})}\n\n"
    for word in text.split(" "):
        yield f"data: {json.dumps(base | {'choices': [{'index': 0, 'delta': {'content': word + ' '}}]})}\n\n"
    yield f"data: {json.dumps(base | {'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
    if (body.get("stream_options") or {}).get("include_usage"):
        yield f"data: {json.dumps(base | {'choices': [], 'usage': {'prompt_tokens': 5, 'completion_tokens': 3, 'total_tokens': 8}})}\n\n"
    yield "data: [DONE]\n\n"


@contextmanager
def fake_openai_server() -> Iterator[tuple[str, list[dict[str, Any]], dict[str, str]]]:
    """(base URL, recorded requests, loaded LoRAs) of a running fake server."""
    seen: list[dict[str, Any]] = []
    loras: dict[str, str] = {}
    with serve_on_loopback(make_app(seen, loras)) as url:
        yield url, seen, loras


@contextmanager
def serve_on_loopback(app: Any) -> Iterator[str]:
    """Base URL of ``app`` served by uvicorn on a free 127.0.0.1 port in a thread (lifespan included)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        assert thread.is_alive(), "the server thread ended before it started serving"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)

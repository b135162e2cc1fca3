"""The OpenAI-compatible routes: chat completions, completions, models.

A request is forwarded to vLLM nearly as sent, so every OpenAI parameter vLLM
knows (tools, tool_choice, response_format, logprobs, stream_options, …) works
unchanged and streams come back in vLLM's own framing. The server adds memory:

* B1/B2: the last user message is the recall cue and the packed memory joins
  the system message (see :mod:`server.prefix`), as text or, on the ``embeds``
  route (``hei_route`` / ``X-HEI-Route``), as input embeddings (:mod:`server.embeds`);
* B1/B2: after vLLM accepted the request, the user message is offered to the
  write gate; a stream's ``data: [DONE]`` is sent only once that write is done,
  so a client that saw the end of a turn can recall it at once;
* B2/B3: the request goes to the tenant's consolidated LoRA (409 without one).

Non-streamed answers carry a ``hei`` object (mode, recalled trace ids, the write
decision); streamed ones carry ``X-HEI-Mode`` / ``X-HEI-Recalled`` headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from hei_nw_plugin.errors import InputError
from hei_nw_plugin.types import WriteDecision
from server.auth import Principal
from server.deps import Caller, ServerState, mode_of, namespace, state
from server.embeds import completion_with_memory, messages_with_memory, route_of
from server.errors import ERROR_RESPONSES, ApiError, error_body
from server.prefix import last_user_turn
from server.vllm_process import BackendUnavailableError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["openai"], responses=ERROR_RESPONSES)

# Request fields that belong to this server, not to vLLM.
HEI_FIELDS = ("hei_mode", "hei_route", "hei_remember", "hei_conversation_id")
OPENAI_EXAMPLE = {"model": "hei-nw-smollm2-135m", "messages": [{"role": "user", "content": "Where is the spare key?"}],
                  "user": "alice", "hei_mode": "B1"}


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as err:
        raise ApiError(400, f"request body is not valid JSON: {err}", code="invalid_json") from err
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_json")
    return body


def _ensure_backend(st: ServerState) -> None:
    if not st.backend_ready:
        raise BackendUnavailableError(st.backend_error or "generation backend is still starting")


def _route_model(st: ServerState, body: dict[str, Any], mode: str, who: Principal) -> None:
    """Point the request at the served model, or at the tenant's adapter in B2/B3."""
    served = st.settings.vllm.served_model_name
    asked = body.get("model")
    if asked not in (None, served):
        raise ApiError(404, f"model {asked!r} does not exist; this server serves {served!r}", code="model_not_found")
    body["model"] = st.adapters.for_tenant(who.tenant) if mode in ("B2", "B3") else served


class _Turn:
    """Memory bookkeeping of one request: what was recalled, and the pending write."""

    def __init__(self, mode: str, ns: str) -> None:
        self.mode = mode
        self.ns = ns
        self.route = "text"
        self.recalled: list[str] = []
        self.memory_tokens = 0
        self.write: asyncio.Task[WriteDecision] | None = None

    async def write_result(self) -> dict[str, Any] | None:
        if self.write is None:
            return None
        try:
            d = await self.write
        except InputError as err:  # e.g. a turn longer than the engine's limit: the answer still stands
            return {"accepted": False, "error": str(err)}
        except Exception as err:
            log.exception("memory write after a chat turn failed")
            return {"accepted": False, "error": f"memory write failed ({type(err).__name__})"}
        return {"accepted": d.accepted, "reason": d.reason, "score": round(d.score, 4), "trace_id": d.trace_id}

    def headers(self) -> dict[str, str]:
        return {"X-HEI-Mode": self.mode, "X-HEI-Route": self.route, "X-HEI-Recalled": str(len(self.recalled))}

    async def info(self) -> dict[str, Any]:
        return {"mode": self.mode, "route": self.route, "recalled": self.recalled, "memory_tokens": self.memory_tokens,
                "write": await self.write_result()}


async def _recall_into(st: ServerState, turn: _Turn, cue: str) -> str:
    r = await st.gateway.recall_for_prompt(turn.ns, cue)
    turn.recalled = list(r.memory_tokens.trace_ids)
    turn.memory_tokens = r.memory_tokens.n_tokens
    return r.memory_tokens.text


@router.post("/chat/completions", summary="Chat completion with episodic memory (OpenAI-compatible)",
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": {"type": "object"}, "example": OPENAI_EXAMPLE}}}})
async def chat_completions(request: Request, who: Caller) -> Any:
    st = state(request)
    body = await _json_object(request)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise ApiError(400, "messages must be a non-empty list of objects with a role", code="invalid_input")
    mode = mode_of(request, body.get("hei_mode"), st.settings.memory.default_mode)
    turn = _Turn(mode, namespace(request, who, body.get("user")))
    turn.route = route_of(body.get("hei_route"), request.headers.get("x-hei-route"), st.settings.memory.route)
    remember = body.get("hei_remember") is True
    conversation = body.get("hei_conversation_id") or request.headers.get("x-hei-conversation")
    for f in (*HEI_FIELDS, "user"):
        body.pop(f, None)  # the end user's id stays here; vLLM needs none of these
    _route_model(st, body, mode, who)
    _ensure_backend(st)
    last = last_user_turn(messages)
    if mode in ("B1", "B2") and last is not None:
        body["messages"] = await messages_with_memory(st.embeds, turn.route, messages, await _recall_into(st, turn, last[0]))

    def start_write() -> None:
        if mode in ("B1", "B2") and last is not None and st.settings.memory.write_user_turns:
            turn.write = asyncio.create_task(st.gateway.write_turn(
                turn.ns, last[0], turn=last[1], conversation_id=conversation if isinstance(conversation, str) else None,
                pin=remember))
            st.background.add(turn.write)  # a client that hangs up mid-stream must not orphan the write
            turn.write.add_done_callback(st.background.discard)

    if body.get("stream"):
        events = await st.upstream.stream("/v1/chat/completions", body)
        start_write()
        return StreamingResponse(_relay(events, turn), media_type="text/event-stream",
                                 headers=turn.headers() | {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    out = await st.upstream.post("/v1/chat/completions", body)
    start_write()
    out["hei"] = await turn.info()
    return JSONResponse(out, headers=turn.headers())


async def _relay(events: AsyncIterator[str], turn: _Turn) -> AsyncIterator[bytes]:
    """vLLM's SSE events as they come; the memory write finishes before ``[DONE]``."""
    try:
        async for data in events:
            if data == "[DONE]":
                break
            yield f"data: {data}\n\n".encode()
    except BackendUnavailableError as err:
        log.error("stream from vLLM broke: %s", err)
        yield f"data: {json.dumps(error_body('generation stream interrupted', 'server_error', 'backend_unavailable'))}\n\n".encode()
    await turn.write_result()
    yield b"data: [DONE]\n\n"


@router.post("/completions", summary="Text completion with episodic memory (OpenAI-compatible)",
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}})
async def completions(request: Request, who: Caller) -> Any:
    """In B1/B2 a single string prompt is the cue and gets the memory block in front; nothing is written
    (a completion prompt is not a conversation turn)."""
    st = state(request)
    body = await _json_object(request)
    mode = mode_of(request, body.get("hei_mode"), st.settings.memory.default_mode)
    turn = _Turn(mode, namespace(request, who, body.get("user")))
    turn.route = route_of(body.get("hei_route"), request.headers.get("x-hei-route"), st.settings.memory.route)
    for f in (*HEI_FIELDS, "user"):
        body.pop(f, None)
    _route_model(st, body, mode, who)
    _ensure_backend(st)
    prompt = body.get("prompt")
    if mode in ("B1", "B2") and isinstance(prompt, str) and prompt.strip():
        await completion_with_memory(st.embeds, turn.route, body, prompt, await _recall_into(st, turn, prompt[-4000:]))
    if body.get("stream"):
        events = await st.upstream.stream("/v1/completions", body)
        return StreamingResponse(_relay(events, turn), media_type="text/event-stream",
                                 headers=turn.headers() | {"Cache-Control": "no-cache"})
    out = await st.upstream.post("/v1/completions", body)
    out["hei"] = await turn.info()
    return JSONResponse(out, headers=turn.headers())


@router.get("/models", summary="Models this server answers with (OpenAI-compatible)")
async def models(request: Request, who: Caller) -> Any:
    st = state(request)
    _ensure_backend(st)
    listed = await st.upstream.get("/v1/models")
    served = st.settings.vllm.served_model_name
    data = [{k: m.get(k) for k in ("id", "object", "created", "owned_by", "max_model_len")}
            for m in listed.get("data", []) if m.get("id") == served]  # never another tenant's adapter
    return {"object": "list", "data": data}

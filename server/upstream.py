"""HTTP client for the OpenAI-compatible generation backend (vLLM).

Requests go out as JSON and come back either as one JSON body or as an SSE
stream, read line by line so the caller can act on ``data: [DONE]`` (the chat
route finishes its memory write there). An upstream 4xx is the caller's
mistake and is passed back with vLLM's message; a refused connection or a 5xx
becomes :class:`BackendUnavailableError` (HTTP 503).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from server.vllm_process import BackendUnavailableError


class UpstreamError(Exception):
    """vLLM answered with a 4xx: the request was wrong. ``body`` is its OpenAI-style error."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"upstream {status}")
        self.status = status
        self.body = body


class Upstream:
    """Async client for one OpenAI-compatible base URL."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 600.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                         timeout=httpx.Timeout(timeout_s, connect=10.0),
                                         limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def healthy(self) -> bool:
        try:
            return (await self._client.get("/health", timeout=3.0)).status_code == 200
        except httpx.HTTPError:
            return False

    async def get(self, path: str) -> dict[str, Any]:
        try:
            r = await self._client.get(path)
        except httpx.HTTPError as err:
            raise BackendUnavailableError(f"generation backend unreachable: {type(err).__name__}") from err
        return _json_or_raise(r.status_code, r.content)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            r = await self._client.post(path, json=body)
        except httpx.HTTPError as err:
            raise BackendUnavailableError(f"generation backend unreachable: {type(err).__name__}") from err
        return _json_or_raise(r.status_code, r.content)

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[str]:
        """SSE ``data:`` payloads as strings (``"[DONE]"`` included), in order.

        Errors before the first byte raise (so the route can answer with a status);
        a connection lost mid-stream raises BackendUnavailableError from the iterator.
        """
        req = self._client.build_request("POST", path, json=body)
        try:
            resp = await self._client.send(req, stream=True)
        except httpx.HTTPError as err:
            raise BackendUnavailableError(f"generation backend unreachable: {type(err).__name__}") from err
        if resp.status_code != 200:
            content = await resp.aread()
            await resp.aclose()
            _json_or_raise(resp.status_code, content)
        return _events(resp)


async def _events(resp: httpx.Response) -> AsyncIterator[str]:
    try:
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                yield line[5:].strip()
    except httpx.HTTPError as err:
        raise BackendUnavailableError(f"generation stream broke: {type(err).__name__}") from err
    finally:
        await resp.aclose()


def _json_or_raise(status: int, content: bytes) -> dict[str, Any]:
    try:
        body = json.loads(content) if content else {}
    except ValueError:
        body = {"error": {"message": content[:300].decode(errors="replace"), "type": "upstream_error"}}
    if status == 200:
        return body if isinstance(body, dict) else {"data": body}
    if 400 <= status < 500 and status not in (401, 403):  # 401/403 would be our own key to vLLM: a server fault
        if not isinstance(body, dict) or "error" not in body:
            body = {"error": {"message": str(body)[:300], "type": "invalid_request_error"}}
        raise UpstreamError(status, body)
    raise BackendUnavailableError(f"generation backend answered HTTP {status}")

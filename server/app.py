"""The FastAPI application: memory engine + vLLM behind one OpenAI-compatible API.

:func:`create_app` wires the parts; the lifespan opens the memory (loading the
embedder and rebuilding every namespace's index from the store), then brings
vLLM up in the background so ``/healthz`` answers at once and ``/readyz`` turns
200 when generation is possible. The memory's MCP endpoint (:mod:`server.mcp`,
streamable HTTP) is one more route, at ``mcp.path``. The outermost middleware caps
request bodies and writes one access-log line per request (method, path, status,
ms, key id; never a key, a body or a header value).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.errors import ConfigError
from hei_nw_plugin.memory import HEIMemory
from server import errors
from server.adapters import ConsolidatedAdapters
from server.auth import KeyRing, TokenBucket
from server.consolidation import ConsolidationJobs
from server.deps import ServerState
from server.embeds import MemoryEmbedder
from server.gateway import MemoryGateway
from server.routes import health, memory, metrics, openai
from server.settings import ServerSettings
from server.upstream import Upstream
from server.vllm_process import VllmProcess

log = logging.getLogger("hei_nw.server")
access = logging.getLogger("hei_nw.server.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def require_api_keys(settings: ServerSettings) -> None:
    """ConfigError when no API key is configured (every route but the probes needs one)."""
    if not settings.api_keys:
        raise ConfigError("no API keys configured: create one with `hei-nw api-key --tenant <name>` and put the printed "
                          "hash under [[api_keys]] in the server settings (or HEI_NW_SERVER__API_KEYS)")


def create_app(settings: ServerSettings, engine: HeiNwSettings | None = None, *, memory_obj: HEIMemory | None = None) -> FastAPI:
    """The server app. ``memory_obj`` replaces the engine built from ``engine`` (tests); it is not closed on shutdown."""
    require_api_keys(settings)
    engine = engine or HeiNwSettings()
    keys = KeyRing(settings.api_keys)
    limiter = TokenBucket(settings.limits.requests_per_s, settings.limits.burst)
    auth_failures = TokenBucket(settings.limits.auth_failures_per_s, settings.limits.auth_failure_burst)
    mcp_server: Any = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mem: HEIMemory = memory_obj if memory_obj is not None else await asyncio.to_thread(HEIMemory, engine)
        gateway = MemoryGateway(mem, settings.memory)
        vllm = VllmProcess(settings.vllm, log_file=settings.vllm.log_file or engine.store.data_dir / "vllm.log")
        upstream = Upstream(vllm.base_url, api_key=vllm.api_key, timeout_s=settings.vllm.request_timeout_s)
        st = ServerState(settings=settings, memory=mem, gateway=gateway, vllm=vllm, upstream=upstream, keys=keys,
                         limiter=limiter, auth_failures=auth_failures, adapters=ConsolidatedAdapters(vllm))
        st.embeds = MemoryEmbedder(settings.vllm)
        st.consolidation = ConsolidationJobs(mem, st.adapters, root=mem.settings.store.data_dir / "consolidated",
                                             model=mem.settings.model)
        app.state.hei = st
        if settings.memory.warm_on_start:
            n = await asyncio.to_thread(gateway.warm)
            log.info("indexes of %d namespaces rebuilt from the store", n)
        bring_up = asyncio.create_task(_bring_up_backend(st))
        try:
            async with mcp_server.session_manager.run() if mcp_server is not None else contextlib.nullcontext():
                yield
        finally:
            bring_up.cancel()
            await upstream.aclose()
            await asyncio.to_thread(vllm.stop)
            if memory_obj is None:
                await asyncio.to_thread(mem.close)

    app = FastAPI(title="HEI-NW server", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible chat with hippocampus-inspired episodic memory, and the memory API.")
    errors.install(app)
    app.include_router(openai.router)
    app.include_router(memory.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    if settings.mcp.enabled:
        mcp_server = _mount_mcp(app, settings, keys, limiter, auth_failures)
    app.add_middleware(BodyLimitAndAccessLog, max_bytes=settings.limits.max_body_bytes)
    return app


def _mount_mcp(app: FastAPI, settings: ServerSettings, keys: KeyRing, limiter: TokenBucket, auth_failures: TokenBucket) -> Any:
    """The MCP endpoint at ``mcp.path`` (None, with a warning, when the ``mcp`` extra is missing)."""
    try:
        from server.mcp.transport import mount
    except ImportError as err:
        log.warning('MCP endpoint off: %s is not installed (pip install "hei-nw[mcp]")', err.name)
        return None
    return mount(app, lambda: app.state.hei.gateway, settings, keys, limiter, auth_failures)


async def _bring_up_backend(st: ServerState) -> None:
    try:
        await asyncio.to_thread(st.vllm.start)
        await asyncio.to_thread(st.vllm.wait_ready)
        for tenant, folder in st.settings.memory.consolidated_adapters.items():
            await st.adapters.aregister(tenant, folder)
            log.info("consolidated adapter of tenant %s loaded", tenant)
        for tenant, (version, folder) in st.consolidation.active_versions().items():
            if tenant not in st.settings.memory.consolidated_adapters:  # a configured folder wins
                await st.adapters.aregister(tenant, folder, version=version)
                log.info("consolidated version %s of tenant %s loaded", version, tenant)
        st.backend_ready = True
        log.info("generation backend ready at %s", st.vllm.base_url)
    except asyncio.CancelledError:
        raise
    except Exception as err:
        st.backend_error = f"{type(err).__name__}: {err}"
        log.exception("generation backend failed")


class _TooLarge(Exception):
    pass


class BodyLimitAndAccessLog:
    """Pure ASGI middleware: 413 for bodies over ``max_bytes`` (declared or streamed), one log line per request."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 0
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            status = await self._reject(send)
            self._log(scope, status, t0)
            return
        seen = 0
        over = False
        started = False

        async def limited() -> Message:
            nonlocal seen, over
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise _TooLarge
            return msg

        async def tracked(msg: Message) -> None:
            nonlocal status, started
            if over:  # whatever the app makes of the aborted read, the answer is 413
                return
            if msg["type"] == "http.response.start":
                status, started = int(msg["status"]), True
            await send(msg)

        try:
            await self.app(scope, limited, tracked)
        except _TooLarge:
            pass
        finally:
            if over and not started:
                status = await self._reject(send)
            self._log(scope, status, t0)

    async def _reject(self, send: Send) -> int:
        body = json.dumps(errors.error_body(f"request body is larger than {self.max_bytes} bytes", "invalid_request_error",
                                            "payload_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return 413

    @staticmethod
    def _log(scope: Scope, status: int, t0: float) -> None:
        key_id = (scope.get("state") or {}).get("key_id", "-")
        access.info("%s %s %d %.1fms key=%s", scope.get("method"), scope.get("path"), status, (time.perf_counter() - t0) * 1000, key_id)

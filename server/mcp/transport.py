"""MCP over stdio and over streamable HTTP, with the HTTP API's authentication.

stdio is what a desktop assistant starts as a child process: one session, one configured identity
(``mcp.tenant`` / ``mcp.user``), no API key (whoever can start the process can read the store
anyway). Over HTTP every request to the endpoint is authenticated first, exactly like the memory
API (:func:`server.deps.admit`: API key, per-key token bucket, throttled failures); a refused
request gets the API's JSON error and never reaches the MCP session. The principal goes into the
request scope, where :class:`server.mcp.tools.MemoryTools` reads its tenant.

The endpoint is one route, so it can sit inside ``hei-nw serve`` (:func:`mount`, sharing the API's
rate budget per key) or alone (:func:`http_app`); either way its session manager must run for as
long as the app does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.server import StreamableHTTPASGIApp
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from server.auth import KeyRing, TokenBucket
from server.deps import admit
from server.errors import ApiError, error_body
from server.gateway import MemoryGateway
from server.mcp.tools import PRINCIPAL, SessionIdentity, build_server
from server.settings import ServerSettings


class _Authenticated:
    """ASGI wrapper: the MCP endpoint behind the memory API's key check."""

    def __init__(self, app: ASGIApp, keys: KeyRing, limiter: TokenBucket, auth_failures: TokenBucket) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.auth_failures = auth_failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        try:
            who = admit(self.keys, self.limiter, self.auth_failures, Headers(scope=scope), client[0] if client else "-")
        except ApiError as err:
            await JSONResponse(error_body(err.message, err.type, err.code), status_code=err.status, headers=err.headers)(
                scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state[PRINCIPAL] = who
        state["key_id"] = who.key_id  # for the access log
        await self.app(scope, receive, send)


def endpoint(server: FastMCP[Any], keys: KeyRing, limiter: TokenBucket, auth_failures: TokenBucket) -> Route:
    """The streamable HTTP route of ``server`` at its ``streamable_http_path``, behind the key check."""
    server.streamable_http_app()  # creates the session manager; the app it returns is not used
    app = _Authenticated(StreamableHTTPASGIApp(server.session_manager), keys, limiter, auth_failures)
    return Route(server.settings.streamable_http_path, endpoint=app, include_in_schema=False)


def mount(app: Starlette, gateway: Callable[[], MemoryGateway], settings: ServerSettings, keys: KeyRing, limiter: TokenBucket,
          auth_failures: TokenBucket) -> FastMCP[Any]:
    """Add the MCP endpoint to ``app`` (the server's FastAPI app); run ``session_manager.run()`` in its lifespan."""
    server = build_server(gateway, SessionIdentity(settings.mcp.tenant, settings.mcp.user), settings.mcp)
    app.router.routes.append(endpoint(server, keys, limiter, auth_failures))
    return server


def http_app(gateway: MemoryGateway, settings: ServerSettings) -> ASGIApp:
    """A stand-alone app serving only the MCP endpoint (``hei-nw mcp --transport http``)."""
    from server.app import BodyLimitAndAccessLog, require_api_keys

    require_api_keys(settings)
    server = build_server(lambda: gateway, SessionIdentity(settings.mcp.tenant, settings.mcp.user), settings.mcp)
    limits = settings.limits
    route = endpoint(server, KeyRing(settings.api_keys), TokenBucket(limits.requests_per_s, limits.burst),
                     TokenBucket(limits.auth_failures_per_s, limits.auth_failure_burst))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return BodyLimitAndAccessLog(Starlette(routes=[route], lifespan=lifespan), max_bytes=limits.max_body_bytes)


async def run_stdio(gateway: MemoryGateway, identity: SessionIdentity, settings: ServerSettings) -> None:
    """Serve one MCP session on this process's stdin and stdout until the client closes it."""
    await build_server(lambda: gateway, identity, settings.mcp).run_stdio_async()

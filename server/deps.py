"""What every route needs: the server's state, the caller, its namespace and mode.

The caller is found from ``Authorization: Bearer <key>`` (or ``X-API-Key``),
charged one token from its key's bucket, and scoped to a namespace from the
request's ``user`` (body field, ``X-HEI-User`` header or ``user`` query
parameter). Failed attempts are charged to the client address: past its
burst they get 429 and no scrypt work, while valid SHA-256 keys still pass
(so an address guessing keys cannot lock out others behind it). A request's
mode comes from ``hei_mode`` in the body (OpenAI clients send it with
``extra_body``) or the ``X-HEI-Mode`` header.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from hei_nw_plugin.memory import HEIMemory
from server.adapters import ConsolidatedAdapters
from server.auth import KeyRing, Principal, TokenBucket
from server.errors import ApiError
from server.gateway import MemoryGateway, namespace_for
from server.settings import Mode, ServerSettings
from server.upstream import Upstream
from server.vllm_process import VllmProcess

MODES: tuple[str, ...] = ("B0", "B1", "B2", "B3")


@dataclass
class ServerState:
    """Everything the routes share, built once per app."""

    settings: ServerSettings
    memory: HEIMemory
    gateway: MemoryGateway
    vllm: VllmProcess
    upstream: Upstream
    keys: KeyRing
    limiter: TokenBucket
    auth_failures: TokenBucket  # per client address: bounds the hashing an attacker can make us do
    adapters: ConsolidatedAdapters
    consolidation: Any = None  # server.consolidation.ConsolidationJobs
    embeds: Any = None  # server.embeds.MemoryEmbedder (memory route 'embeds'; loads on first use)
    backend_ready: bool = False
    backend_error: str | None = None
    background: set[Any] = field(default_factory=set)  # tasks kept alive until done


def state(request: Request) -> ServerState:
    st: ServerState = request.app.state.hei
    return st


async def principal(request: Request) -> Principal:
    """Dependency: the authenticated caller (401 without a valid key, 429 over its rate)."""
    st = state(request)
    who = admit(st.keys, st.limiter, st.auth_failures, request.headers, request.client.host if request.client else "-")
    request.state.key_id = who.key_id  # for the access log
    return who


def admit(keys: KeyRing, limiter: TokenBucket, auth_failures: TokenBucket, headers: Mapping[str, str],
          client: str) -> Principal:
    """The caller that ``headers`` authenticate, charged one token; ApiError 401 or 429 otherwise.

    Shared by the HTTP API and the MCP transport (``server.mcp``). ``client`` is the peer address
    that failed attempts are charged to.
    """
    auth = headers.get("authorization", "")
    key = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "")
    who = keys.authenticate(key, slow=auth_failures.available(client) >= 1.0) if key else None
    if who is None:
        wait = auth_failures.take(client)
        if wait > 0:
            raise ApiError(429, "too many failed authentications from this address", type="rate_limit_error",
                           code="rate_limited", headers={"Retry-After": str(max(1, math.ceil(wait)))})
        raise ApiError(401, "missing or invalid API key (send 'Authorization: Bearer <key>')", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})
    wait = limiter.take(who.key_id)
    if wait > 0:
        raise ApiError(429, f"rate limit exceeded; retry in {wait:.2f} s", type="rate_limit_error", code="rate_limited",
                       headers={"Retry-After": str(max(1, math.ceil(wait)))})
    return who


Caller = Annotated[Principal, Depends(principal)]
"""Route parameter type of the authenticated, rate-limited caller."""


def user_of(request: Request, body_user: Any = None) -> str | None:
    """The end user a request speaks for: body ``user``, else ``X-HEI-User``, else ``?user=``."""
    u = body_user if body_user not in (None, "") else request.headers.get("x-hei-user") or request.query_params.get("user")
    if u is not None and not isinstance(u, str):
        raise ApiError(400, "user must be a string", code="invalid_input")
    return u


def namespace(request: Request, who: Principal, body_user: Any = None) -> str:
    return namespace_for(who.tenant, user_of(request, body_user))


def mode_of(request: Request, body_mode: Any, default: Mode) -> str:
    m = body_mode if body_mode is not None else request.headers.get("x-hei-mode")
    if m is None:
        return default
    if not isinstance(m, str) or m.upper() not in MODES:
        raise ApiError(400, f"hei_mode must be one of {', '.join(MODES)}, got {m!r}", code="invalid_mode")
    return m.upper()

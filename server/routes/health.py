"""Liveness and readiness (no API key: load balancers and orchestrators call these).

``/healthz`` says the process answers. ``/readyz`` says it can serve: the trace
store answers and vLLM is up; until then it is 503 with the reason.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.deps import state

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: store reachable and vLLM up",
            responses={503: {"description": "Not ready yet: the same body, with the part that is down false."}})
async def readyz(request: Request) -> Any:
    st = state(request)
    store_ok = await st.gateway.ready()
    backend_ok = st.backend_ready and await st.upstream.healthy()
    body = {"status": "ready" if store_ok and backend_ok else "not_ready", "store": store_ok, "backend": backend_ok}
    if not backend_ok and st.backend_error:
        body["backend_error"] = "vLLM failed to start; see the server log"
    return JSONResponse(body, status_code=200 if store_ok and backend_ok else 503)

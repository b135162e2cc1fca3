"""``GET /metrics``: the engine's telemetry in the Prometheus text format, plus process metrics.

The engine renders its own series (:class:`~hei_nw_plugin.telemetry.EngineTelemetry`);
``prometheus_client``'s default registry adds the process collector (resident memory,
CPU seconds, open files) and the Python GC. Like the health probes this route needs no
API key, so a scraper needs no secret; it shows no trace content, and tenant names only
when ``telemetry.namespace_label`` is not ``none`` — keep it off public networks then.
Registered probes are evaluated here at most every ``telemetry.probe_interval_s``.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hei_nw_plugin.telemetry import CONTENT_TYPE
from server.deps import state

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics (text exposition format 0.0.4)",
            response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(request: Request) -> Response:
    mem = state(request).memory
    tel = mem.telemetry
    if tel.probes_due():
        await asyncio.to_thread(tel.evaluate_probes, mem)
    body = await asyncio.to_thread(tel.render, mem)
    try:
        from prometheus_client import REGISTRY, generate_latest
    except ImportError:  # the server extra brings it; without it the engine's series alone
        pass
    else:
        body += generate_latest(REGISTRY).decode()
    return Response(body, media_type=CONTENT_TYPE)

"""Errors as HTTP answers, in OpenAI's shape ``{"error": {"message", "type", "code"}}``.

Engine caller mistakes (:class:`~hei_nw_plugin.errors.InputError`) become 4xx
with the engine's message, which names the field and never holds stored data.
Runtime faults become 503 (store or generation backend unavailable) or 500 with
a fixed message; the details go to the server log only, so a database URL or
key id in an exception never reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hei_nw_plugin.errors import (
    ConfigError,
    InputError,
    PayloadTooLargeError,
    RuntimeFault,
    StoreUnavailableError,
    TraceNotFoundError,
    UnknownNamespaceError,
)
from server.adapters import AdapterMissingError
from server.upstream import UpstreamError
from server.vllm_process import BackendUnavailableError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the server answers with on purpose."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.headers = headers


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong; names the field for bad input.")
    type: str = Field(description="'invalid_request_error', 'rate_limit_error' or 'server_error' (vLLM's own type when it refused).")
    param: str | None = Field(None, description="The request field at fault, when known.")
    code: str | int | None = Field(None, description="Machine-readable reason, e.g. 'invalid_input', 'not_found', 'rate_limited'.")


class ErrorResponse(BaseModel):
    """Every error answer, in OpenAI's shape."""

    error: ErrorDetail


# Documented on every authenticated route, so the published schema covers each status the server answers with.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "The request was refused: bad input (400, 422), missing or invalid API "
                                                  "key (401), not found (404), conflict (409), body too large (413), rate "
                                                  "limited (429, with Retry-After). Nothing was stored."},
    503: {"model": ErrorResponse, "description": "Memory store or generation backend unavailable; retry after Retry-After."},
}


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def input_status(err: InputError) -> tuple[int, str]:
    """HTTP status and error code of an engine caller error (500 'server_config' for a bad server setting)."""
    if isinstance(err, (TraceNotFoundError, UnknownNamespaceError)):
        return 404, "not_found"
    if isinstance(err, PayloadTooLargeError):
        return 413, "payload_too_large"
    if isinstance(err, ConfigError):
        return 500, "server_config"
    return 400, "invalid_input"


def fault_answer(err: RuntimeFault) -> tuple[int, str, str]:
    """(status, message, code) a client sees for a runtime fault: fixed text, never the exception's details."""
    if isinstance(err, BackendUnavailableError):
        return 503, "generation backend unavailable; retry later", "backend_unavailable"
    if isinstance(err, StoreUnavailableError):
        return 503, "memory store unavailable; retry later", "store_unavailable"
    return 500, f"internal error ({type(err).__name__})", "internal"


def validation_message(errors: list[Any], skip: tuple[str, ...] = ("body",)) -> str:
    """'field.path: what is wrong; ...' for the first five pydantic errors (location parts in ``skip`` left out)."""
    parts = [f"{'.'.join(str(x) for x in e.get('loc', ()) if x not in skip)}: {e.get('msg')}" for e in errors[:5]]
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(error_body(err.message, err.type, err.code), status_code=err.status, headers=err.headers)

    @app.exception_handler(InputError)
    async def _input(_: Request, err: InputError) -> JSONResponse:
        status, code = input_status(err)
        if status == 500:  # a bad server setting is not the caller's business
            log.error("configuration error: %s", err)
            return JSONResponse(error_body("server configuration error", "server_error", code), status_code=500)
        return JSONResponse(error_body(str(err), "invalid_request_error", code), status_code=status)

    @app.exception_handler(RuntimeFault)
    async def _fault(request: Request, err: RuntimeFault) -> JSONResponse:
        log.error("%s on %s %s: %s", type(err).__name__, request.method, request.url.path, err)
        status, message, code = fault_answer(err)
        return JSONResponse(error_body(message, "server_error", code), status_code=status,
                            headers={"Retry-After": "5"} if status == 503 else None)

    @app.exception_handler(UpstreamError)
    async def _upstream(_: Request, err: UpstreamError) -> JSONResponse:
        return JSONResponse(err.body, status_code=err.status)

    @app.exception_handler(AdapterMissingError)
    async def _adapter(_: Request, err: AdapterMissingError) -> JSONResponse:
        return JSONResponse(error_body(str(err), "invalid_request_error", "adapter_missing", "hei_mode"), status_code=409)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(validation_message(list(err.errors())), "invalid_request_error", "invalid_input"),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(err.detail), "invalid_request_error", None), status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal error", "server_error", "internal"), status_code=500)

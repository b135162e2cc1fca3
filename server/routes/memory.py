"""The memory API: write, recall, list, get, delete, pin, verify, stats, consolidate.

Every route acts on the caller's own namespace ``<tenant>/<user>`` (see
:mod:`server.gateway`); a trace id from another tenant is simply not found.
Bodies and answers are the engine's own pydantic records, so the OpenAPI schema
documents them field by field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hei_nw_plugin.memory import MemoryStats, VerifyReport
from hei_nw_plugin.types import Cue, MemoryEvent, RecallResult, Trace, WriteDecision
from server.deps import Caller, namespace, state
from server.errors import ERROR_RESPONSES, ApiError
from server.gateway import namespace_for

router = APIRouter(prefix="/v1/memory", tags=["memory"], responses=ERROR_RESPONSES)


class WriteRequest(BaseModel):
    """One event or a batch; a batch is validated whole before anything is stored."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(None, description="End user; the namespace is '<tenant>/<user>' (default 'default').")
    event: MemoryEvent | None = Field(None, description="One event.")
    events: list[MemoryEvent] | None = Field(None, max_length=256, description="A batch of events (one transaction).")

    @model_validator(mode="after")
    def _one_of(self) -> WriteRequest:
        if (self.event is None) == (self.events is None):
            raise ValueError("give exactly one of 'event' or 'events'")
        return self


class WriteResponse(BaseModel):
    decisions: list[WriteDecision]


class RecallQuery(BaseModel):
    """What to recall; the MCP ``recall`` tool takes exactly these fields (its user comes from the session)."""

    model_config = ConfigDict(extra="forbid")

    cue: str | Cue = Field(..., description="Question or fragment, or {text, slots}.")
    k: int = Field(5, ge=1, le=256, description="Traces to return.")
    where: dict[str, Any] | None = Field(None, description="Keep traces whose slots/metadata equal every value.")
    max_tokens: int | None = Field(None, ge=1, description="Budget of the packed memory (tokens).")
    min_similarity: float | None = Field(None, ge=-1.0, le=1.0, description="Drop traces with a lower cosine to the cue.")


class RecallRequest(RecallQuery):
    user: str | None = Field(None, description="End user; the namespace is '<tenant>/<user>' (default 'default').")


class TraceList(BaseModel):
    traces: list[Trace]


class UserList(BaseModel):
    users: list[str]


@router.post("/write", response_model=WriteResponse, summary="Offer events to the write gate")
async def write(request: Request, req: WriteRequest, who: Caller) -> WriteResponse:
    ns = namespace(request, who, req.user)
    events: list[MemoryEvent] = req.events if req.events is not None else [req.event]  # type: ignore[list-item]
    return WriteResponse(decisions=await state(request).gateway.write(ns, list(events)))


@router.post("/recall", response_model=RecallResult, summary="Recall traces from a partial cue")
async def recall(request: Request, req: RecallRequest, who: Caller) -> RecallResult:
    ns = namespace(request, who, req.user)
    return await state(request).gateway.recall(ns, req.cue, req.k, where=req.where, max_tokens=req.max_tokens,
                                               min_similarity=req.min_similarity)


@router.get("/traces", response_model=TraceList, summary="The user's traces, oldest first")
async def list_traces(request: Request, limit: Annotated[int, Query(ge=0, le=1000)] = 100,
                      offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0, *,
                      who: Caller) -> TraceList:
    return TraceList(traces=await state(request).gateway.list_traces(namespace(request, who), limit=limit, offset=offset))


@router.get("/traces/{trace_id}", response_model=Trace, summary="One trace")
async def get_trace(request: Request, trace_id: str, who: Caller) -> Trace:
    return await state(request).gateway.get(namespace(request, who), trace_id)


@router.delete("/traces/{trace_id}", status_code=204, summary="Delete a trace (its data key is destroyed)")
async def delete_trace(request: Request, trace_id: str, who: Caller) -> Response:
    await state(request).gateway.delete(namespace(request, who), trace_id)
    return Response(status_code=204)


@router.post("/traces/{trace_id}/pin", status_code=204, summary="Pin a trace (never evicted)")
async def pin_trace(request: Request, trace_id: str, who: Caller) -> Response:
    await state(request).gateway.pin(namespace(request, who), trace_id, True)
    return Response(status_code=204)


@router.delete("/traces/{trace_id}/pin", status_code=204, summary="Unpin a trace")
async def unpin_trace(request: Request, trace_id: str, who: Caller) -> Response:
    await state(request).gateway.pin(namespace(request, who), trace_id, False)
    return Response(status_code=204)


@router.get("/users", response_model=UserList, summary="The tenant's users that hold traces")
async def users(request: Request, who: Caller) -> UserList:
    return UserList(users=await state(request).gateway.users(who.tenant))


@router.post("/verify", response_model=VerifyReport, summary="Check signatures, hash chain and the user's rows")
async def verify(request: Request, who: Caller) -> VerifyReport:
    return await state(request).gateway.verify(namespace(request, who))


@router.get("/stats", response_model=MemoryStats, summary="Counts, gate telemetry and recall latency of the user")
async def stats(request: Request, who: Caller) -> MemoryStats:
    return await state(request).gateway.stats(who.tenant, namespace(request, who))


class ConsolidateRequest(BaseModel):
    """Which users' memories to consolidate and the replay budget (defaults: ConsolidationConfig's)."""

    model_config = ConfigDict(extra="forbid")

    users: list[str] | None = Field(None, max_length=1000, description="Users to consolidate; None: every user of the tenant.")
    steps: int | None = Field(None, ge=1, le=100_000, description="Optimizer steps cap.")
    replay_size: int | None = Field(None, ge=1, le=1_000_000, description="Traces replayed (the budget).")
    order: Literal["scheduled", "shuffled"] = Field("scheduled", description="CA2 scheduler or the shuffled ablation.")
    max_seconds: float | None = Field(None, gt=0, description="Training time cap (s); an interrupted job resumes on the next POST.")
    fresh: bool = Field(False, description="Train from the base model on live traces only (drops deleted traces from weights).")


@router.post("/consolidate", status_code=202, summary="Start a consolidation job for the tenant (background)")
async def consolidate(request: Request, req: ConsolidateRequest, who: Caller) -> dict[str, Any]:
    st = state(request)
    users = req.users if req.users is not None else await st.gateway.users(who.tenant)
    namespaces = sorted({namespace_for(who.tenant, u) for u in users})
    if not namespaces:
        raise ApiError(409, "the tenant has no memories to consolidate yet", code="nothing_to_consolidate")
    config: dict[str, Any] = {"order": "ca2" if req.order == "scheduled" else "shuffled"}
    config |= {k: v for k, v in {"max_steps": req.steps, "replay_size": req.replay_size,
                                 "max_seconds": req.max_seconds}.items() if v is not None}
    job, task = st.consolidation.submit(who.tenant, namespaces, config, fresh=req.fresh, register=st.backend_ready)
    st.background.add(task)
    task.add_done_callback(st.background.discard)
    return job.public()


@router.get("/consolidate/{job_id}", summary="Status of a consolidation job")
async def consolidation_status(request: Request, job_id: str, who: Caller) -> dict[str, Any]:
    job = state(request).consolidation.get(who.tenant, job_id)
    if job is None:
        raise ApiError(404, f"no consolidation job {job_id!r}", code="not_found")
    return job.public()

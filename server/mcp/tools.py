"""The MCP tools and the trace resource, over one :class:`~server.gateway.MemoryGateway`.

Two choices shape this module:

* A tool's arguments are validated by the pydantic model the HTTP API already uses for that
  operation (``MemoryEvent`` for ``remember``, ``RecallQuery`` for ``recall``), given to FastMCP as
  the tool's argument model: the input schema a client lists is that model's JSON schema, unknown
  arguments are refused (``extra="forbid"``), and the tool receives the validated model whole.
  FastMCP would otherwise rebuild a model from the function's signature, a second copy of every
  field.
* The namespace is never an argument. It is ``<tenant>/<user>`` of the session: the configured
  :class:`SessionIdentity` on stdio (and in-process), the API key's tenant and the request's
  ``X-HEI-User`` header (or ``?user=``) over HTTP, where :mod:`server.mcp.transport` has put the
  authenticated principal into the request scope. A trace id of another tenant is simply not found.

Errors come back as MCP tool errors (``isError``) whose text names what is wrong: the argument
(``k: Input should be less than or equal to 256``) or the engine's message. Runtime faults get the
HTTP API's fixed texts; their details go to the log only. A refused call changes nothing stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ResourceError, ToolError
from mcp.server.fastmcp.tools import Tool
from mcp.server.fastmcp.utilities.func_metadata import ArgModelBase, FuncMetadata, func_metadata
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError, WithJsonSchema, create_model

from hei_nw_plugin.errors import InputError, RuntimeFault
from hei_nw_plugin.memory import MemoryStats, VerifyReport
from hei_nw_plugin.types import MemoryEvent, RecallResult, WriteDecision
from server.auth import Principal
from server.deps import user_of
from server.errors import ApiError, fault_answer, input_status, validation_message
from server.gateway import MemoryGateway, namespace_for
from server.routes.memory import RecallQuery
from server.settings import McpSettings

log = logging.getLogger("hei_nw.server.mcp")

PRINCIPAL = "hei_principal"  # key in an HTTP request's scope["state"]: the caller its API key names
TRACE_URI = "hei-nw://traces/{trace_id}"
INSTRUCTIONS = (
    "Long-term episodic memory of this user. Call `recall` with the user's question before answering anything "
    "that may depend on earlier conversations; call `remember` with one self-contained sentence when the user "
    "tells you something worth keeping (pin=true when they ask you to remember it). Recalled traces carry ids "
    "for `forget` and `pin`."
)
T = TypeVar("T")


@dataclass(frozen=True)
class SessionIdentity:
    """Whom a session without an API key speaks for (stdio, in-process): set once from configuration."""

    tenant: str
    user: str


class TraceRef(BaseModel):
    """One trace of the session's namespace."""

    model_config = ConfigDict(extra="forbid")

    trace_id: StrictStr = Field(..., description="The trace's id: `trace_id` of remember's decision, `traces[].trace.id` of recall.")


class PinRequest(TraceRef):
    pinned: StrictBool = Field(True, description="true pins the trace (always kept, never evicted); false unpins it.")


class NoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Forgotten(BaseModel):
    trace_id: str
    erased: bool = Field(description="True: the trace is gone from store, index and replay queue, and its data key is destroyed.")


class PinState(BaseModel):
    trace_id: str
    pinned: bool


class _ApiModelArguments(FuncMetadata):
    """FuncMetadata whose arguments are one of the API's pydantic models, handed to the tool whole."""

    api_model: Annotated[type[BaseModel], WithJsonSchema(None)]

    async def call_fn_with_arg_validation(self, fn: Callable[..., Any], fn_is_async: bool, arguments_to_validate: dict[str, Any],
                                          arguments_to_pass_directly: dict[str, Any] | None) -> Any:
        try:
            args = self.api_model.model_validate(arguments_to_validate)
        except ValidationError as err:
            try:  # some assistants send objects as JSON strings; FastMCP's own tools accept those too
                args = self.api_model.model_validate(self.pre_parse_json(arguments_to_validate))
            except ValidationError:
                raise ToolError(validation_message(err.errors(), skip=())) from None
        return await fn(args, **(arguments_to_pass_directly or {}))


def _tool(fn: Callable[..., Awaitable[Any]], model: type[BaseModel], *, title: str, annotations: ToolAnnotations) -> Tool:
    """A FastMCP tool taking ``model``'s fields, with the output schema of ``fn``'s return annotation."""
    name = fn.__name__
    out = func_metadata(fn, skip_names=["args", "ctx"])
    arg_model = create_model(f"{name}Arguments", __base__=(model, ArgModelBase))
    meta = _ApiModelArguments(arg_model=arg_model, api_model=model, output_schema=out.output_schema,
                              output_model=out.output_model, wrap_output=out.wrap_output)
    return Tool(fn=fn, name=name, title=title, description=(fn.__doc__ or "").strip(), parameters=model.model_json_schema(),
                fn_metadata=meta, is_async=True, context_kwarg="ctx", annotations=annotations)


@contextmanager
def _answer_errors(what: str, error: type[Exception] = ToolError) -> Iterator[None]:
    """Engine and server errors as ``error`` (a tool error) with a message for the caller."""
    try:
        yield
    except (ToolError, ResourceError):
        raise
    except ApiError as err:
        raise error(err.message) from None
    except InputError as err:
        if input_status(err)[0] == 500:  # a bad server setting is not the caller's business
            log.error("configuration error in %s: %s", what, err)
            raise error("server configuration error") from None
        raise error(str(err)) from None
    except RuntimeFault as err:
        log.error("%s in %s: %s", type(err).__name__, what, err)
        raise error(fault_answer(err)[1]) from None
    except Exception as err:
        log.exception("unexpected error in %s", what)
        raise error(f"internal error ({type(err).__name__})") from None


class MemoryTools:
    """The tools of one MCP server; ``gateway`` is called per request (the app builds it in its lifespan)."""

    def __init__(self, gateway: Callable[[], MemoryGateway], identity: SessionIdentity) -> None:
        self._gateway = gateway
        self.identity = identity

    def definitions(self) -> list[Tool]:
        read_only = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
        return [
            _tool(self.remember, MemoryEvent, title="Remember an event",
                  annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)),
            _tool(self.recall, RecallQuery, title="Recall memories", annotations=read_only),
            _tool(self.forget, TraceRef, title="Forget a memory",
                  annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)),
            _tool(self.pin, PinRequest, title="Pin or unpin a memory",
                  annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=False)),
            _tool(self.stats, NoArguments, title="Memory statistics", annotations=read_only),
            _tool(self.verify, NoArguments, title="Verify stored memory", annotations=read_only),
        ]

    def where(self, ctx: Context) -> tuple[str, str]:
        """(tenant, namespace) of the request ``ctx`` belongs to."""
        request = ctx.request_context.request
        if request is None:  # stdio or in-process: no HTTP request, the configured identity
            return self.identity.tenant, namespace_for(self.identity.tenant, self.identity.user)
        who = request.scope.get("state", {}).get(PRINCIPAL)
        if not isinstance(who, Principal):  # only server.mcp.transport's guarded route reaches here over HTTP
            raise ApiError(401, "missing or invalid API key (send 'Authorization: Bearer <key>')")
        return who.tenant, namespace_for(who.tenant, user_of(request) or self.identity.user)

    async def remember(self, args: MemoryEvent, ctx: Context) -> WriteDecision:
        """Offer an event to the write gate, which decides whether it is kept. `text` is one self-contained sentence;
        `slots` are optional key/value facts (who, what, where, when). pin=true always keeps it and never evicts it
        (an explicit "remember this"); force=true keeps it whatever the gate score, without protection. Returns the
        gate's decision: accepted, reason, score against threshold, and the stored trace_id."""
        with _answer_errors("remember"):
            _, ns = self.where(ctx)
            return (await self._gateway().write(ns, [args]))[0]

    async def recall(self, args: RecallQuery, ctx: Context) -> RecallResult:
        """Recall up to k memories for a cue: the question or a fragment as text, or {text, slots} with known slots.
        Returns the traces best first, each with its id, text, slots, created_at date and scores, and the packed
        memory text to give a model."""
        with _answer_errors("recall"):
            _, ns = self.where(ctx)
            return await self._gateway().recall(ns, args.cue, args.k, where=args.where, max_tokens=args.max_tokens,
                                                min_similarity=args.min_similarity)

    async def forget(self, args: TraceRef, ctx: Context) -> Forgotten:
        """Delete one memory by id. It is crypto-erased: removed from store, index and replay queue, and its data key
        destroyed, so no copy can be decrypted afterwards."""
        with _answer_errors("forget"):
            _, ns = self.where(ctx)
            await self._gateway().delete(ns, args.trace_id)
            return Forgotten(trace_id=args.trace_id, erased=True)

    async def pin(self, args: PinRequest, ctx: Context) -> PinState:
        """Pin a memory by id so it is never evicted (pinned=false unpins it)."""
        with _answer_errors("pin"):
            _, ns = self.where(ctx)
            await self._gateway().pin(ns, args.trace_id, args.pinned)
            return PinState(trace_id=args.trace_id, pinned=args.pinned)

    async def stats(self, args: NoArguments, ctx: Context) -> MemoryStats:
        """Counts of this user's memory (traces, index, replay queue), gate telemetry and recall latency (ms)."""
        with _answer_errors("stats"):
            tenant, ns = self.where(ctx)
            return await self._gateway().stats(tenant, ns)

    async def verify(self, args: NoArguments, ctx: Context) -> VerifyReport:
        """Check the stored memory: signatures, the provenance hash chain and this user's rows. ok=false lists each
        tampered, missing or unexpected item."""
        with _answer_errors("verify"):
            _, ns = self.where(ctx)
            return await self._gateway().verify(ns)

    async def trace(self, trace_id: str, ctx: Context) -> str:
        """One stored trace of this user, as JSON: id, text, slots, source pointer, created_at, pinned, gate score."""
        with _answer_errors("trace resource", ResourceError):
            _, ns = self.where(ctx)
            return (await self._gateway().get(ns, trace_id)).model_dump_json(indent=2)


def build_server(gateway: Callable[[], MemoryGateway], identity: SessionIdentity, settings: McpSettings) -> FastMCP[Any]:
    """The FastMCP server with the memory tools and the trace resource (``hei-nw://traces/{trace_id}``)."""
    tools = MemoryTools(gateway, identity)
    hosts = list(settings.allowed_hosts)
    security = TransportSecuritySettings(enable_dns_rebinding_protection=bool(hosts), allowed_hosts=hosts,
                                         allowed_origins=[f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")])
    # FastMCP() calls logging.basicConfig, which would give a root logger without handlers its own (rich) handler;
    # logging is the application's to configure, so the root logger has a placeholder handler meanwhile.
    root, placeholder = logging.getLogger(), logging.NullHandler()
    root.addHandler(placeholder)
    try:
        server: FastMCP[Any] = FastMCP("hei-nw", instructions=INSTRUCTIONS, tools=tools.definitions(),
                                       streamable_http_path=settings.path, session_idle_timeout=settings.session_idle_timeout_s,
                                       transport_security=security)
    finally:
        root.removeHandler(placeholder)
    server.resource(TRACE_URI, name="trace", title="A stored memory", mime_type="application/json")(tools.trace)
    return server

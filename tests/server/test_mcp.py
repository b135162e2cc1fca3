"""The memory over MCP, driven by the SDK's own ClientSession: in process, over streamable HTTP inside
``hei-nw serve``'s app and on its own (``hei-nw mcp --transport http``). The stdio transport, a real
``hei-nw mcp`` child process, is tests/integration/test_mcp_stdio.py.

What is under test: the tools a client lists and their schemas, the remember -> recall -> forget round
trip, bad arguments refused as tool errors that name what is wrong and change no stored byte, and
tenant isolation (one API key's tenant never reads, deletes or pins another's traces).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason='install the MCP extra: pip install "hei-nw[mcp]"')
import httpx
from hei_nw_eval.reliability.fuzz.common import changed_tables, snapshot
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.shared.memory import create_connected_server_and_client_session
from pydantic import AnyUrl

from hei_nw_plugin.cli import build_parser
from hei_nw_plugin.memory import HEIMemory
from hei_nw_plugin.types import MemoryEvent
from server.app import create_app
from server.auth import hash_key
from server.gateway import MemoryGateway
from server.mcp.tools import SessionIdentity, build_server
from server.mcp.transport import http_app
from server.routes.memory import RecallQuery
from server.settings import McpSettings, ServerSettings
from tests.server.fake_openai import fake_openai_server, serve_on_loopback

KEY_A, KEY_B = "hei_test-key-acme-0123456789", "hei_test-key-globex-987654321"
TOOLS = {"remember", "recall", "forget", "pin", "stats", "verify"}
FACT = "Priya keeps the spare studio key in the blue toolbox."


def server_settings(backend_url: str = "http://127.0.0.1:9", **over: Any) -> ServerSettings:
    base: dict[str, Any] = {"api_keys": [{"tenant": "acme", "hash": hash_key(KEY_A)}, {"tenant": "globex", "hash": hash_key(KEY_B)}],
                            "vllm": {"url": backend_url}, "limits": {"requests_per_s": 1000, "burst": 1000}}
    return ServerSettings.model_validate(base | over)


@contextlib.asynccontextmanager
async def http_session(url: str, key: str | None = KEY_A, **headers: str) -> AsyncIterator[ClientSession]:
    """A ClientSession over streamable HTTP, authenticated with ``key``."""
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(headers=headers, timeout=30) as http, \
            streamable_http_client(url, http_client=http) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@pytest.fixture
def served(mem: HEIMemory) -> Iterator[str]:
    """MCP endpoint URL of the whole server app (``hei-nw serve``) on loopback, over ``mem``."""
    with fake_openai_server() as (backend_url, _, _), serve_on_loopback(create_app(server_settings(backend_url), memory_obj=mem)) as url:
        yield f"{url}/mcp"


@pytest.fixture
def standalone(mem: HEIMemory) -> Iterator[str]:
    """MCP endpoint URL of the stand-alone HTTP app (``hei-nw mcp --transport http``) over ``mem``."""
    settings = server_settings()
    with serve_on_loopback(http_app(MemoryGateway(mem, settings.memory), settings)) as url:
        yield f"{url}/mcp"


@pytest.fixture
def open_session(mem: HEIMemory, request: pytest.FixtureRequest) -> Callable[[], contextlib.AbstractAsyncContextManager[ClientSession]]:
    """Opens a ClientSession as tenant acme on the transport named by the test's ``transport`` parameter."""
    kind = request.param
    if kind == "in-process":
        settings = ServerSettings()
        server = build_server(lambda: MemoryGateway(mem, settings.memory), SessionIdentity("acme", "default"), settings.mcp)
        return lambda: create_connected_server_and_client_session(server)
    url = request.getfixturevalue("served" if kind == "serve" else "standalone")
    return lambda: http_session(url)


TRANSPORTS = pytest.mark.parametrize("open_session", ["in-process", "serve", "standalone"], indirect=True)


def data(result: Any) -> dict[str, Any]:
    assert not result.isError, result.content[0].text
    assert isinstance(result.structuredContent, dict)
    return result.structuredContent


def recalled_ids(result: Any) -> list[str]:
    return [t["trace"]["id"] for t in data(result)["traces"]]


def error_text(result: Any) -> str:
    assert result.isError, result
    return str(result.content[0].text)


# ------------------------------------------------------------------ what a client lists
@pytest.mark.parametrize("open_session", ["in-process"], indirect=True)
async def test_tools_and_the_trace_resource_are_listed_with_the_apis_schemas(open_session: Any) -> None:
    async with open_session() as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        templates = (await session.list_resource_templates()).resourceTemplates
    assert set(tools) == TOOLS
    assert tools["remember"].inputSchema == MemoryEvent.model_json_schema()  # the HTTP API's event model, pin and force in it
    assert {"pin", "force", "text", "slots"} <= set(tools["remember"].inputSchema["properties"])
    assert tools["recall"].inputSchema == RecallQuery.model_json_schema()
    assert tools["forget"].inputSchema["required"] == ["trace_id"]
    assert tools["forget"].annotations is not None and tools["forget"].annotations.destructiveHint is True
    assert all(tools[n].annotations.readOnlyHint for n in ("recall", "stats", "verify"))  # type: ignore[union-attr]
    assert all(t.outputSchema for t in tools.values())
    assert [t.uriTemplate for t in templates] == ["hei-nw://traces/{trace_id}"]


# ------------------------------------------------------------------ remember -> recall -> forget
@TRANSPORTS
async def test_remember_recall_forget_round_trip(open_session: Any, mem: HEIMemory) -> None:
    async with open_session() as session:
        decision = data(await session.call_tool("remember", {"text": FACT, "slots": {"who": "Priya"}, "pin": True}))
        assert decision["accepted"] and decision["reason"] == "pinned" and decision["namespace"] == "acme/default"
        trace_id = decision["trace_id"]

        found = data(await session.call_tool("recall", {"cue": {"text": "Where is the spare studio key?", "slots": {"who": "Priya"}},
                                                         "k": 3}))
        top = found["traces"][0]
        assert top["trace"]["id"] == trace_id and top["trace"]["text"] == FACT
        assert top["trace"]["created_at"] and isinstance(top["score"], float)
        assert "blue toolbox" in found["memory_tokens"]["text"]

        stored = json.loads((await session.read_resource(AnyUrl(f"hei-nw://traces/{trace_id}"))).contents[0].text)  # type: ignore[union-attr]
        assert stored["id"] == trace_id and stored["pinned"] is True

        assert data(await session.call_tool("pin", {"trace_id": trace_id, "pinned": False})) == {"trace_id": trace_id, "pinned": False}
        assert data(await session.call_tool("stats", {}))["traces"] == 1
        assert data(await session.call_tool("verify", {}))["ok"] is True

        assert data(await session.call_tool("forget", {"trace_id": trace_id})) == {"trace_id": trace_id, "erased": True}
        assert trace_id not in recalled_ids(await session.call_tool("recall", {"cue": "Where is the spare studio key?"}))
        assert "no trace" in error_text(await session.call_tool("forget", {"trace_id": trace_id}))
        with pytest.raises(McpError, match="no trace"):
            await session.read_resource(AnyUrl(f"hei-nw://traces/{trace_id}"))
    assert mem.list_traces(namespace="acme/default") == []


# ------------------------------------------------------------------ bad arguments
BAD_CALLS = [
    ("remember", {}, "text: Field required"),
    ("remember", {"text": 5}, "text: Input should be a valid string"),
    ("remember", {"text": "Meeting moved to Friday", "pin": "yes please"}, "pin: Input should be a valid boolean"),
    ("remember", {"text": "Meeting moved to Friday", "namespace": "globex/default"}, "namespace: Extra inputs are not permitted"),
    ("remember", {"text": "Meeting moved to Friday", "reward": 7}, "reward: Input should be less than or equal to 1"),
    ("remember", {"text": "x" * 20_000}, "text"),
    ("remember", {"text": "   "}, "text"),
    ("recall", {}, "cue: Field required"),
    ("recall", {"cue": "the key", "k": 0}, "k: Input should be greater than or equal to 1"),
    ("recall", {"cue": "the key", "min_similarity": 3}, "min_similarity: Input should be less than or equal to 1"),
    ("forget", {"trace_id": "no-such-trace"}, "no trace 'no-such-trace'"),
    ("forget", {}, "trace_id: Field required"),
    ("pin", {"trace_id": 12}, "trace_id: Input should be a valid string"),
    ("pin", {"trace_id": "no-such-trace"}, "no trace 'no-such-trace'"),
    ("stats", {"user": "someone-else"}, "user: Extra inputs are not permitted"),
    ("delete_everything", {}, "Unknown tool: delete_everything"),
]


@TRANSPORTS
async def test_bad_arguments_give_tool_errors_naming_the_fault_and_change_nothing(open_session: Any, mem: HEIMemory, tmp_path: Path
                                                                                 ) -> None:
    async with open_session() as session:
        kept = data(await session.call_tool("remember", {"text": FACT, "pin": True}))["trace_id"]
        before = snapshot(tmp_path / "traces.db", tmp_path / "keys.json")
        for tool, arguments, expected in BAD_CALLS:
            message = error_text(await session.call_tool(tool, arguments))
            assert expected in message, (tool, arguments, message)
            assert "Traceback" not in message
        after = snapshot(tmp_path / "traces.db", tmp_path / "keys.json")
        assert changed_tables(before, after) == []
        assert recalled_ids(await session.call_tool("recall", {"cue": "spare studio key"}))[0] == kept


async def test_objects_sent_as_json_strings_are_accepted(mem: HEIMemory) -> None:
    settings = ServerSettings()
    server = build_server(lambda: MemoryGateway(mem, settings.memory), SessionIdentity("acme", "default"), settings.mcp)
    async with create_connected_server_and_client_session(server) as session:
        data(await session.call_tool("remember", {"text": FACT, "slots": '{"who": "Priya"}', "force": True}))
        found = data(await session.call_tool("recall", {"cue": "spare key", "where": '{"who": "Priya"}'}))
        assert [t["trace"]["slots"] for t in found["traces"]] == [{"who": "Priya"}]
        assert data(await session.call_tool("recall", {"cue": "spare key", "where": '{"who": "Ada"}'}))["traces"] == []
        # a cue that is itself valid JSON text stays text
        assert data(await session.call_tool("recall", {"cue": "null"}))["namespace"] == "acme/default"


# ------------------------------------------------------------------ tenants and users
async def test_one_tenant_cannot_read_forget_or_pin_anothers_traces(served: str, mem: HEIMemory) -> None:
    async with http_session(served, KEY_A) as acme:
        trace_id = data(await acme.call_tool("remember", {"text": FACT, "pin": True}))["trace_id"]
    async with http_session(served, KEY_B) as globex:
        own = data(await globex.call_tool("remember", {"text": "Globex keeps its spare key at the front desk.", "pin": True}))
        found = await globex.call_tool("recall", {"cue": "Where is the spare studio key?", "k": 10})
        assert recalled_ids(found) == [own["trace_id"]] and "blue toolbox" not in json.dumps(data(found))
        for tool in ("forget", "pin"):
            assert f"no trace '{trace_id}'" in error_text(await globex.call_tool(tool, {"trace_id": trace_id}))
        with pytest.raises(McpError, match="no trace"):
            await globex.read_resource(AnyUrl(f"hei-nw://traces/{trace_id}"))
        stats = data(await globex.call_tool("stats", {}))
        assert stats["traces"] == 1 and stats["namespaces"] == 1 and stats["namespace"] == "globex/default"
    # a user name that looks like another tenant's namespace stays inside the caller's tenant
    async with http_session(served, KEY_B, **{"X-HEI-User": "../acme/default"}) as sneaky:
        assert "has never been written" in error_text(await sneaky.call_tool("forget", {"trace_id": trace_id}))
        found = data(await sneaky.call_tool("recall", {"cue": "spare studio key"}))
        assert found["namespace"] == "globex/../acme/default" and found["traces"] == []
    async with http_session(served, KEY_A) as acme:
        assert recalled_ids(await acme.call_tool("recall", {"cue": "Where is the spare studio key?"})) == [trace_id]
    assert [t.id for t in mem.list_traces(namespace="acme/default")] == [trace_id]


async def test_users_of_a_tenant_are_separate_namespaces(served: str) -> None:
    async with http_session(served, KEY_A, **{"X-HEI-User": "alice"}) as alice:
        assert data(await alice.call_tool("remember", {"text": FACT, "pin": True}))["namespace"] == "acme/alice"
    async with http_session(served, KEY_A, **{"X-HEI-User": "bob"}) as bob:
        assert data(await bob.call_tool("recall", {"cue": "spare studio key"}))["traces"] == []
    async with http_session(served, KEY_A) as default_user:
        assert data(await default_user.call_tool("recall", {"cue": "spare studio key"}))["namespace"] == "acme/default"


async def test_stdio_identity_is_scoped_like_an_api_key(mem: HEIMemory) -> None:
    settings = ServerSettings()
    gateway = MemoryGateway(mem, settings.memory)
    mem.write({"text": FACT, "pin": True}, namespace="acme/default")
    server = build_server(lambda: gateway, SessionIdentity("globex", "default"), settings.mcp)
    async with create_connected_server_and_client_session(server) as session:
        assert data(await session.call_tool("recall", {"cue": "spare studio key"}))["traces"] == []


async def test_http_endpoint_refuses_requests_without_a_valid_key(served: str) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(timeout=10) as http:
        for headers in ({}, {"Authorization": "Bearer hei_wrong-key"}, {"X-API-Key": "hei_wrong-key"}):
            r = await http.post(served, json=init, headers=accept | headers)
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == "invalid_api_key"
        ok = await http.post(served, json=init, headers=accept | {"Authorization": f"Bearer {KEY_A}"})
        assert ok.status_code == 200 and ok.headers.get("mcp-session-id")


def test_serve_without_the_mcp_endpoint(mem: HEIMemory) -> None:
    from fastapi.testclient import TestClient

    with fake_openai_server() as (backend_url, _, _):
        app = create_app(server_settings(backend_url, mcp=McpSettings(enabled=False)), memory_obj=mem)
        with TestClient(app) as client:
            assert client.post("/mcp", headers={"Authorization": f"Bearer {KEY_A}"}, json={}).status_code == 404


def test_cli_has_the_mcp_command() -> None:
    args = build_parser().parse_args(["--data-dir", "d", "mcp", "--transport", "http", "--tenant", "acme", "--port", "0"])
    assert (args.command, args.transport, args.tenant, args.port) == ("mcp", "http", "acme", 0)
    assert build_parser().parse_args(["mcp"]).transport == "stdio"

"""``hei-nw mcp`` as a desktop assistant runs it: a child process speaking MCP on stdio, driven by the
SDK's own ``stdio_client`` and ``ClientSession``, on the default engine (real MiniLM, SQLite)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason='install the MCP extra: pip install "hei-nw[mcp]"')
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.memory import HEIMemory

pytestmark = pytest.mark.integration
FACT = "Marco moved the quarterly offsite to Thursday in the lake house."


def _data(result: Any) -> dict[str, Any]:
    assert not result.isError, result.content[0].text
    return dict(result.structuredContent)


async def test_stdio_round_trip_in_the_configured_namespace(tmp_path: Path) -> None:
    params = StdioServerParameters(command=sys.executable, cwd=str(tmp_path),
                                   args=["-m", "hei_nw_plugin.cli", "--data-dir", str(tmp_path / "data"), "mcp",
                                         "--tenant", "acme", "--user", "marco"],
                                   env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    errlog = (tmp_path / "stderr.log").open("w")
    async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        assert {t.name for t in (await session.list_tools()).tools} == {"remember", "recall", "forget", "pin", "stats", "verify"}

        decision = _data(await session.call_tool("remember", {"text": FACT, "slots": {"who": "Marco"}, "pin": True}))
        assert decision["accepted"] and decision["namespace"] == "acme/marco"
        found = _data(await session.call_tool("recall", {"cue": "When is the offsite?", "k": 3}))
        assert found["traces"][0]["trace"]["id"] == decision["trace_id"]

        bad = await session.call_tool("recall", {"cue": "When is the offsite?", "k": "many"})
        assert bad.isError and "k: Input should be a valid integer" in bad.content[0].text

        assert _data(await session.call_tool("forget", {"trace_id": decision["trace_id"]}))["erased"] is True
        after = _data(await session.call_tool("recall", {"cue": "When is the offsite?", "k": 3}))
        assert decision["trace_id"] not in [t["trace"]["id"] for t in after["traces"]]
        assert _data(await session.call_tool("verify", {}))["ok"] is True
    errlog.close()
    assert "Traceback" not in (tmp_path / "stderr.log").read_text()
    with HEIMemory(HeiNwSettings.build(store={"data_dir": tmp_path / "data"})) as mem:  # the child's store, reopened
        assert mem.list_traces(namespace="acme/marco") == [] and mem.verify().ok
        assert json.loads(mem.stats(namespace="acme/marco").model_dump_json())["traces"] == 0

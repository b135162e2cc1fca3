"""Bad input (issue 8, part 4; MCP: issue 18): CI-sized runs of the four fuzz suites, and one regression test per
defect the full-size run found (each reproduces the generated case that broke the property)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hei_nw_eval.reliability.fuzz import run
from hei_nw_eval.reliability.fuzz.cli_argv import _call, run_cli
from hei_nw_eval.reliability.fuzz.engine_api import run_engine_api
from hei_nw_eval.reliability.fuzz.http_api import API_KEY, run_http, serving

from hei_nw_plugin import memory as memory_module
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.errors import InputError, InvalidEventError
from hei_nw_plugin.memory import HEIMemory

AUTH = {"Authorization": f"Bearer {API_KEY}"}


# ---------------------------------------------------------------- CI-sized suites
def test_python_api_fuzz_ci_size() -> None:
    r = run_engine_api(200, seed=0)
    assert r.cases == 200 and r.rejected > 50 and r.accepted > 20
    assert r.failures == 0, r.distinct_failures


def test_cli_fuzz_ci_size() -> None:
    r = run_cli(100, seed=0)
    assert r.cases == 100 and r.outcomes.get("exit 2", 0) > 20 and r.outcomes.get("exit 0", 0) > 5
    assert r.failures == 0, r.distinct_failures


def test_http_fuzz_ci_size() -> None:
    r = run_http(80, seed=0)
    assert r.cases >= 70 and r.rejected > 10 and r.accepted > 5
    assert r.failures == 0, r.distinct_failures


def test_mcp_fuzz_ci_size() -> None:
    pytest.importorskip("mcp")
    from hei_nw_eval.reliability.fuzz.mcp_tools import run_mcp

    r = run_mcp(150, seed=0)
    assert r.cases >= 120 and r.rejected > 30 and r.accepted > 20  # calls no JSON client could send are not counted
    assert r.outcomes.get("recall: ok", 0) > 0 and r.outcomes.get("remember: ok", 0) > 0
    assert r.failures == 0, r.distinct_failures


def test_the_mcp_suite_reports_a_foreign_namespace_and_a_change_made_by_a_refused_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The MCP harness can fail too: a session reaching another user's traces, a tool error after a write."""
    pytest.importorskip("mcp")
    from hei_nw_eval.reliability.fuzz.mcp_tools import run_mcp

    from server.gateway import MemoryGateway
    from server.mcp.tools import MemoryTools

    with monkeypatch.context() as m:
        m.setattr(MemoryTools, "where", lambda self, ctx: ("fuzz", "fuzz/other"))
        assert "foreign_namespace" in {f.kind for f in run_mcp(150, seed=0).distinct_failures}

    async def pin_then_refuse(self: MemoryGateway, ns: str, trace_id: str, pinned: bool) -> None:
        self.memory.unpin(self.memory.list_traces(namespace=ns)[0].id, namespace=ns)
        raise InvalidEventError("refused after writing")

    monkeypatch.setattr(MemoryGateway, "pin", pin_then_refuse)
    assert "changed_on_reject" in {f.kind for f in run_mcp(150, seed=0).distinct_failures}


def test_report_json_counts_cases_and_failures(tmp_path: Path) -> None:
    report = run(40, out=tmp_path / "fuzz.json", suites=("python_api",))
    data = json.loads((tmp_path / "fuzz.json").read_text())
    assert data["cases_total"] == data["suites"][0]["cases"] == 40
    assert data["failures_total"] == 0 and data["ok"] is report.ok is True


def test_the_suite_reports_a_crash_and_a_change_made_by_a_rejected_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness itself can fail: a non-InputError and a refused call that wrote are both caught."""
    def crash(self: HEIMemory, *args: Any, **kwargs: Any) -> None:
        raise KeyError("boom")

    def write_then_refuse(self: HEIMemory, *args: Any, **kwargs: Any) -> None:
        self.store.set_pinned("fz", self.list_traces(namespace="fz")[0].id, False)
        raise InvalidEventError("refused after writing")

    for name in ("get", "get_by_key", "namespaces", "stats"):
        monkeypatch.setattr(HEIMemory, name, crash)
    for name in ("pin", "unpin", "set_expiry"):
        monkeypatch.setattr(HEIMemory, name, write_then_refuse)
    r = run_engine_api(150, seed=0)
    kinds = {f.kind for f in r.distinct_failures}
    assert {"crash", "changed_on_reject"} <= kinds and r.failures >= 10


# ------------------------------------------------------------ regressions: Python API
@pytest.mark.parametrize("call", [
    lambda m: m.recall("brass lantern", 3, namespace="n", where=("who",)),
    lambda m: m.recall("brass lantern", 3, namespace="n", where=[None, 1.0]),
    lambda m: m.recall("brass lantern", 3, namespace="n", where={1: "Ada"}),
    lambda m: m.recall("brass lantern", 3, namespace="n", min_similarity=(("",),)),
    lambda m: m.recall("brass lantern", 3, namespace="n", min_similarity=math.nan),
    lambda m: m.recall("brass lantern", 3, namespace="n", max_tokens="12"),
    lambda m: m.recall("brass lantern", 3, namespace="n", max_tokens=0),
    lambda m: m.list_traces(namespace="n", offset=({"a": 1.0},)),
    lambda m: m.list_traces(namespace="n", limit=[3]),
    lambda m: m.list_traces(namespace="n", limit=None, offset=None),
    lambda m: m.list_traces(namespace="n", limit=True),
    lambda m: m.list_traces(namespace="n", where=["who"]),
    lambda m: m.stats(namespace=({},)),
    lambda m: m.stats(namespace=[73]),
    lambda m: m.evict(namespace="n", now={"": None}),
    lambda m: m.evict(now=[]),
    lambda m: m.evict(now=math.inf),
], ids=["where-tuple", "where-list", "where-int-key", "min-sim-tuple", "min-sim-nan", "max-tokens-str", "max-tokens-0",
        "offset-tuple", "limit-list", "limit-none", "limit-bool", "list-where-list", "stats-ns-tuple", "stats-ns-list",
        "evict-now-dict", "evict-now-list", "evict-now-inf"])
def test_api_arguments_of_the_wrong_type_are_input_errors(mem: HEIMemory, call: Callable[[HEIMemory], Any]) -> None:
    """Found by the fuzz: these raised TypeError, AttributeError, numpy's UFuncTypeError or SQLAlchemy's
    StatementError from deep inside the engine instead of the caller's InputError."""
    mem.write({"text": "Ada keeps the brass lantern in the blue shed", "slots": {"who": "Ada"}, "force": True}, namespace="n")
    with pytest.raises(InputError):
        call(mem)
    assert mem.verify().ok


@pytest.mark.parametrize("event", [
    {"text": "Renew the parking permit", "ttl_s": 1e300},
    {"text": "Renew the parking permit", "ttl_s": 3e11},
    {"text": "Renew the parking permit", "timestamp": "9999-12-31T23:00:00", "ttl_s": 7200.0},
    {"text": "Renew the parking permit", "timestamp": "0001-01-01T00:00:00+05:00"},
], ids=["ttl-1e300", "ttl-past-9999", "expiry-past-9999", "created-before-year-1"])
def test_an_expiry_that_cannot_be_read_back_is_refused(mem: HEIMemory, event: dict[str, Any]) -> None:
    """Found by the HTTP fuzz: ttl_s=1e300 was stored, and from then on every recall of the namespace
    died in datetime.fromtimestamp (OverflowError, HTTP 500) — one bad write poisoned the namespace."""
    mem.write({"text": "Ada keeps the brass lantern in the blue shed", "force": True}, namespace="n")
    with pytest.raises(InputError):
        mem.write(event | {"force": True}, namespace="n")
    tid = mem.list_traces(namespace="n")[0].id
    with pytest.raises(InputError):
        mem.set_expiry(tid, 1e300, namespace="n")
    assert mem.recall("brass lantern", 3, namespace="n").traces  # the namespace still recalls
    assert mem.verify().ok


def test_list_traces_offset_beyond_sql_integers_is_an_input_error(mem: HEIMemory) -> None:
    """Found by the HTTP fuzz: offset=4247250670344336644339924992 overflowed SQLite's INTEGER (HTTP 500)."""
    mem.write({"text": "Ada keeps the brass lantern in the blue shed", "force": True}, namespace="n")
    with pytest.raises(InputError):
        mem.list_traces(namespace="n", offset=2**63)
    assert mem.list_traces(namespace="n", offset=2**63 - 1) == []


# ------------------------------------------------------------------- regressions: CLI
@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str, BaseException | None]]:
    monkeypatch.setattr(memory_module, "embedder_from_settings", lambda *_, **__: HashingEmbedder(dim=64))
    monkeypatch.chdir(tmp_path)
    return lambda *args: _call(["--data-dir", str(tmp_path / "data"), *args])


def test_cli_slot_without_equals_is_a_caller_error(cli: Callable[..., Any]) -> None:
    """Found by the CLI fuzz: it exited 1 (the runtime-fault status) through SystemExit(str)."""
    code, _, err, escaped = cli("write", "Ada keeps the brass lantern", "--slot", "who")
    assert (code, escaped) == (2, None)
    assert err.splitlines() == ["error: --slot expects key=value, got 'who'"]


def test_cli_usage_errors_stay_on_one_line(cli: Callable[..., Any]) -> None:
    """Found by the CLI fuzz: argparse echoed a carriage return and a vertical tab raw, so the error
    spilled over lines (and a terminal would overwrite it)."""
    code, _, err, _ = cli("verify", "\t\r", "\x94\x0b\x8a")
    assert code == 2
    assert not any(c in err for c in "\r\x0b\x8a")
    assert err.splitlines()[-1].startswith("hei-nw: error: unrecognized arguments: \\t\\r")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite:////proc/hei-nw-fuzz/x.db", "sqlite:///a\x00b.db"])
def test_cli_store_url_that_cannot_be_opened_is_one_error_line(cli: Callable[..., Any], url: str) -> None:
    """Found by the CLI fuzz: a missing database driver, a folder that cannot be made and a NUL in the
    path escaped SQLTraceStore as ModuleNotFoundError, FileNotFoundError and ValueError (tracebacks)."""
    code, _, err, escaped = cli("--store-url", url, "stats")
    assert (code, escaped) == (1, None)
    assert err.count("\n") == 1 and err.startswith("error: trace store at ")


# ------------------------------------------------------------------ regressions: HTTP
def test_http_error_answers_are_in_the_published_schema(tmp_path: Path) -> None:
    """Found by the HTTP fuzz: 400/404 were undocumented, and the schema promised FastAPI's
    ``{"detail": [...]}`` for 422 where the server sends ``{"error": {...}}``."""
    with serving(tmp_path) as client:
        paths = client.get("/openapi.json").json()["paths"]
        for path, method in [("/v1/memory/write", "post"), ("/v1/chat/completions", "post"),
                             ("/v1/memory/traces/{trace_id}", "delete")]:
            responses = paths[path][method]["responses"]
            assert responses["4XX"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
            assert "422" not in responses
        r = client.post("/v1/memory/write", headers=AUTH, json={"event": {"text": 3}})
        assert r.status_code == 422 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_http_bad_ttl_and_huge_offset_are_refused_not_500(tmp_path: Path) -> None:
    with serving(tmp_path) as client:
        r = client.post("/v1/memory/write", headers=AUTH, json={"event": {"text": "Renew the permit", "ttl_s": 1e300}})
        assert r.status_code == 400
        assert client.post("/v1/memory/recall", headers=AUTH, json={"cue": "spare key"}).status_code == 200
        assert client.get("/v1/memory/traces", headers=AUTH, params={"offset": 2**63}).status_code == 422


def test_rotating_another_store_that_shares_the_key_file_keeps_this_stores_data(cli: Callable[..., Any],
                                                                                 tmp_path: Path) -> None:
    assert cli("write", "Ada keeps the brass lantern in the blue shed", "--pin")[0] == 0
    assert cli("--store-url", f"sqlite:///{tmp_path}/other.db", "rotate-keys")[0] == 0  # same default key file
    code, _, err, _ = cli("verify")
    assert code == 0, err

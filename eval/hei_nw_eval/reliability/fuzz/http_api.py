"""Suite (c): the HTTP API, with schemathesis cases generated from the server's published OpenAPI schema.

The app is the real one (:func:`server.app.create_app`) on a SQLite store in a temporary folder with the
hashing embedder, reached in-process through Starlette's TestClient (its lifespan runs, so the routes
see the same state as under uvicorn); the generation backend is a small deterministic OpenAI-compatible
fake on 127.0.0.1, as in the server's unit tests. Each operation gets positive cases (valid per the
schema) and negative ones (violating it), all sent with a valid API key. The properties: no 5xx; status
code, content type, headers and body conform to the schema; schema-violating input is refused; a 4xx
changes no stored byte. ``POST /v1/memory/consolidate`` is left out: an accepted call starts training a
LoRA on the language model, which is not bad-input handling (tests/server/test_consolidation.py covers it).
"""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hei_nw_eval.reliability.fuzz.common import SuiteResult, Tally, changed_tables, drive, snapshot
from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import HashingEmbedder
from hei_nw_plugin.errors import require_extra
from hei_nw_plugin.memory import HEIMemory

API_KEY = "hei_fuzz-key-0123456789abcdef"
MODEL = "fuzz-model"
SKIPPED = {"POST /v1/memory/consolidate"}


def _fake_backend() -> Any:
    """An OpenAI-compatible stand-in for vLLM that answers anything with 200 or an OpenAI-style 4xx, never 5xx."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()

    def refuse(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "BadRequestError", "param": None, "code": status}},
                            status_code=status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "fuzz"}]}

    @app.post("/v1/{kind}")
    async def generate(kind: str, request: Request) -> Any:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return refuse(400, "body is not JSON")
        if not isinstance(body, dict) or body.get("model") != MODEL:
            return refuse(404, "no such model")
        text = "echo"
        chunk = {"id": "x", "object": f"{kind}.chunk", "created": 0, "model": MODEL,
                 "choices": [{"index": 0, "delta": {"content": text}, "text": text, "finish_reason": "stop"}]}
        if body.get("stream") is True:
            async def events() -> Any:
                yield f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        return {"id": "x", "object": kind, "created": 0, "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "text": text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    return app


@contextlib.contextmanager
def _serve_backend() -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_fake_backend(), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def serving(data_dir: Path) -> Iterator[Any]:
    """A started TestClient of the real app on a SQLite store in ``data_dir`` (one pinned trace in it), with the
    fake backend up and ``/readyz`` green. Requests need :data:`API_KEY`; rate limits are out of the way."""
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.auth import hash_key
    from server.settings import ServerSettings

    with _serve_backend() as backend_url:
        settings = ServerSettings.model_validate({
            "api_keys": [{"tenant": "fuzz", "hash": hash_key(API_KEY)}],
            "vllm": {"url": backend_url, "served_model_name": MODEL},
            "limits": {"requests_per_s": 1e6, "burst": 10**6, "auth_failures_per_s": 1e6, "auth_failure_burst": 10**6},
        })
        mem = HEIMemory(HeiNwSettings.build(store={"data_dir": data_dir}), embedder=HashingEmbedder(dim=64), persist_index=False)
        mem.write({"text": "The spare key hangs behind the kitchen door", "pin": True}, namespace="fuzz/default")
        try:
            with TestClient(create_app(settings, memory_obj=mem), raise_server_exceptions=False) as client:
                deadline = time.monotonic() + 30
                while client.get("/readyz").status_code != 200:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"server not ready: {client.get('/readyz').text}")
                    time.sleep(0.05)
                yield client
        finally:
            mem.close()


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi import checks

    return [not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
            checks.response_headers_conformance, checks.response_schema_conformance, checks.negative_data_rejection]


def run_http(examples: int, *, seed: int = 0) -> SuiteResult:
    """Fuzz the HTTP API with about ``examples`` schemathesis cases, spread over its operations."""
    try:
        import schemathesis
        from schemathesis import GenerationMode
        from schemathesis.core.failures import Failure, FailureGroup
    except ImportError as err:
        raise require_extra(err.name or "schemathesis", "dev") from err

    tally = Tally("http_api")
    t0 = time.perf_counter()
    auth = {"Authorization": f"Bearer {API_KEY}"}
    unsendable: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="hei-fuzz-http-") as tmp:
        data_dir = Path(tmp)
        with serving(data_dir) as client:
            schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
            ops = [r.ok() for r in schema.get_all_operations()]
            ops = [op for op in ops if op.label not in SKIPPED]
            tally.result.notes.append(f"operations fuzzed: {len(ops)}; left out: {sorted(SKIPPED)} (starts LoRA training)")
            checks = _checks()
            # Operations with few parameters run out of distinct cases early; their unused share moves on.
            ops.sort(key=lambda op: len(op.path_parameters) + len(op.query) + 10 * len(op.body))
            # Negative cases need something to violate: a body or query parameters (any text is a valid path segment).
            slots = [(op, mode) for op in ops for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                     if mode == GenerationMode.POSITIVE or len(op.body) or len(op.query)]
            per_op: dict[str, int] = {}

            def body_for(label: str) -> Any:
                def body(case: Any) -> None:
                    kwargs = case.as_transport_kwargs(headers=auth)
                    before = snapshot(data_dir / "traces.db", data_dir / "keys.json")
                    try:
                        response = client.request(**kwargs)
                    except (UnicodeEncodeError, ValueError, TypeError) as err:  # httpx refuses to send it at all
                        unsendable[type(err).__name__] = unsendable.get(type(err).__name__, 0) + 1
                        return
                    status = response.status_code
                    tally.case(str(status), rejected=400 <= status < 500)
                    try:
                        case.validate_response(response, checks=checks, headers=kwargs.get("headers"))
                    except (FailureGroup, Failure) as group:
                        for f in getattr(group, "exceptions", [group]):
                            kind = "server_error" if status >= 500 else "schema"
                            tally.fail(kind, label, f"{status} {f.title}: {f.message}",
                                       {k: v for k, v in kwargs.items() if k != "headers"})
                    if 400 <= status < 500:
                        after = snapshot(data_dir / "traces.db", data_dir / "keys.json")
                        if after != before:
                            tally.fail("changed_on_reject", label, f"{status} but {changed_tables(before, after)} changed",
                                       {k: v for k, v in kwargs.items() if k != "headers"})
                return body

            for i, (op, mode) in enumerate(slots):
                quota = (examples - tally.result.cases) // (len(slots) - i)
                n_before = tally.result.cases
                drive(body_for(op.label), op.as_strategy(generation_mode=mode), quota, seed + i)
                per_op[f"{op.label} ({mode.value})"] = tally.result.cases - n_before
            tally.result.notes.append(f"cases per operation: {per_op}")
        with HEIMemory(HeiNwSettings.build(store={"data_dir": data_dir}), embedder=HashingEmbedder(dim=64),
                       persist_index=False) as mem:
            report = mem.verify()
        if not report.ok:
            tally.fail("integrity", "verify", f"{len(report.problems)} problems: {report.problems[:3]}", "")
    if unsendable:
        tally.result.notes.append(f"generated requests the HTTP client could not send (not counted): {unsendable}")
    return tally.finish(time.perf_counter() - t0)

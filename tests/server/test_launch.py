"""ServerProcess (the launcher the vLLM integration tests use) gives up at once when the backend failed."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

pytest.importorskip("httpx")
from server.launch import ServerProcess


class _NotReady(BaseHTTPRequestHandler):
    body: ClassVar[dict[str, object]] = {}

    def do_GET(self) -> None:
        data = json.dumps(self.body).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def _serve(body: dict[str, object]) -> ThreadingHTTPServer:
    handler = type("H", (_NotReady,), {"body": body})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _launcher(tmp_path: Path, port: int) -> ServerProcess:
    sp = ServerProcess(tmp_path, {"host": "127.0.0.1", "port": port})
    sp.proc = subprocess.Popen(["sleep", "60"], start_new_session=True)  # stands in for the server process
    return sp


def test_a_failed_backend_stops_the_wait_at_once(tmp_path: Path) -> None:
    srv = _serve({"status": "not_ready", "store": True, "backend": False, "backend_error": "vLLM failed to start"})
    sp = _launcher(tmp_path, srv.server_address[1])
    child = sp.proc
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="generation backend failed to start"):
        sp.wait_ready(timeout_s=60)
    assert time.monotonic() - t0 < 10 and sp.proc is None and child is not None and child.poll() is not None
    srv.shutdown()


def test_a_backend_still_starting_is_waited_for_until_the_timeout(tmp_path: Path) -> None:
    srv = _serve({"status": "not_ready", "store": True, "backend": False})
    sp = _launcher(tmp_path, srv.server_address[1])
    with pytest.raises(RuntimeError, match="not ready after 2 s"):
        sp.wait_ready(timeout_s=2)
    srv.shutdown()

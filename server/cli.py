"""``hei-nw serve``, ``hei-nw mcp`` and ``hei-nw api-key``, added to the engine's command line.

``hei-nw serve`` runs the server with uvicorn; engine settings come from the
global ``--config`` / ``--data-dir`` / ``--store-url`` options and ``HEI_NW_*``,
server settings from ``--server-config`` and ``HEI_NW_SERVER__*``.
``hei-nw mcp`` serves the memory as MCP tools on stdio (what a desktop assistant
starts) or, with ``--transport http``, on its own port without vLLM.
``hei-nw api-key --tenant acme`` prints a new key (once) and the hash line to
configure; only the hash is ever stored.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add the server's subcommands to the ``hei-nw`` parser."""
    s = sub.add_parser("serve", help="OpenAI-compatible API with episodic memory, generating on vLLM")
    s.add_argument("--server-config", help="server settings file (.toml/.yaml); see server/settings.py")
    s.add_argument("--host", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to bind (default 8000)")
    s.add_argument("--vllm-url", help="attach to a running vLLM OpenAI server instead of starting one")
    s.add_argument("--vllm-python", help="python of the venv with vLLM (default ./.venv-vllm/bin/python)")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_serve)

    m = sub.add_parser("mcp", help="the memory as MCP tools for desktop and IDE assistants (stdio, or streamable HTTP)")
    m.add_argument("--transport", choices=["stdio", "http"], default="stdio",
                   help="stdio: one session on stdin/stdout (default); http: streamable HTTP at mcp.path, API key required")
    m.add_argument("--server-config", help="server settings file (.toml/.yaml): [mcp] section, and api_keys for http")
    m.add_argument("--tenant", help="tenant of the stdio session (default: mcp.tenant, 'local')")
    m.add_argument("--user", help="user of the stdio session, and of HTTP requests naming none (default: mcp.user, 'default')")
    m.add_argument("--host", help="http: address to bind (default 127.0.0.1)")
    m.add_argument("--port", type=int, help="http: port to bind (default 8000)")
    m.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"], help="log level (stderr)")
    m.set_defaults(func=cmd_mcp)

    k = sub.add_parser("api-key", help="make an API key for a tenant; prints the key once and the hash to configure")
    k.add_argument("--tenant", required=True)
    k.add_argument("--scheme", choices=["sha256", "scrypt"], default="sha256")
    k.set_defaults(func=cmd_api_key)


def _engine_settings(args: argparse.Namespace) -> Any:
    from hei_nw_plugin.config import HeiNwSettings

    over: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        over["store"] = {"data_dir": Path(args.data_dir)}
    if getattr(args, "store_url", None):
        over.setdefault("store", {})["url"] = args.store_url
    if getattr(args, "config", None):
        return HeiNwSettings.from_file(args.config, **over)
    return HeiNwSettings.build(**over)


def cmd_serve(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import uvicorn
    except ImportError as err:
        from hei_nw_plugin.errors import require_extra

        raise require_extra("uvicorn", "server") from err
    from server.app import create_app
    from server.settings import ServerSettings

    over: dict[str, Any] = {}
    if args.host:
        over["host"] = args.host
    if args.port is not None:
        over["port"] = args.port
    if args.vllm_url:
        over.setdefault("vllm", {})["url"] = args.vllm_url
    if args.vllm_python:
        over.setdefault("vllm", {})["python"] = args.vllm_python
    settings = ServerSettings.from_file(args.server_config, **over)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per vLLM call otherwise
    app = create_app(settings, _engine_settings(args))
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, access_log=False,
                timeout_graceful_shutdown=30)


def cmd_mcp(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import anyio
        import uvicorn

        from server.mcp.transport import http_app, run_stdio
    except ImportError as err:
        from hei_nw_plugin.errors import require_extra

        raise require_extra(err.name or "mcp", "mcp") from err
    from hei_nw_plugin.memory import HEIMemory
    from server.gateway import MemoryGateway, namespace_for
    from server.mcp.tools import SessionIdentity
    from server.settings import ServerSettings

    over: dict[str, Any] = {}
    for name in ("host", "port"):
        if getattr(args, name) is not None:
            over[name] = getattr(args, name)
    for name in ("tenant", "user"):
        if getattr(args, name) is not None:
            over.setdefault("mcp", {})[name] = getattr(args, name)
    settings = ServerSettings.from_file(args.server_config, **over)
    identity = SessionIdentity(settings.mcp.tenant, settings.mcp.user)
    namespace_for(identity.tenant, identity.user)  # a bad user fails here, not on the first call
    # stdout is the stdio transport's channel: logs go to stderr only
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with HEIMemory(_engine_settings(args)) as mem:
        gateway = MemoryGateway(mem, settings.memory)
        if args.transport == "stdio":
            anyio.run(run_stdio, gateway, identity, settings)
        else:
            uvicorn.run(http_app(gateway, settings), host=settings.host, port=settings.port, log_level=args.log_level,
                        access_log=False, timeout_graceful_shutdown=10)


def cmd_api_key(args: argparse.Namespace) -> None:
    from server.auth import hash_key, new_api_key
    from server.settings import TenantKey

    key = new_api_key()
    entry = TenantKey(tenant=args.tenant, hash=hash_key(key, scheme=args.scheme))
    print(f"API key (shown once, give it to the client): {key}")
    print("Add to the server settings:")
    print(f'[[api_keys]]\ntenant = "{entry.tenant}"\nhash = "{entry.hash}"')
    print(f"or HEI_NW_SERVER__API_KEYS='{json.dumps([entry.model_dump(exclude_defaults=True)])}'")

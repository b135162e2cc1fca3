"""The memory over the Model Context Protocol: tools any desktop or IDE assistant can call.

:mod:`server.mcp.tools` builds one FastMCP server (the official ``mcp`` SDK) with six tools
(``remember``, ``recall``, ``forget``, ``pin``, ``stats``, ``verify``) and a trace resource, over the
same :class:`~server.gateway.MemoryGateway` as the HTTP memory API, so every call is scoped to one
``<tenant>/<user>`` namespace exactly as there. :mod:`server.mcp.transport` runs it over stdio
(``hei-nw mcp``, a desktop assistant's child process) or streamable HTTP behind an API key (mounted
in ``hei-nw serve`` at ``mcp.path``, or alone with ``hei-nw mcp --transport http``). Needs
``pip install "hei-nw[mcp]"``; the engine never imports this package.
"""

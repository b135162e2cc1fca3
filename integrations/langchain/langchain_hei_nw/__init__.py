"""HEI-NW episodic memory for LangChain agents.

* :class:`HEINWStore` - a LangGraph ``BaseStore`` (``create_agent(..., store=...)``);
  search is an HEI-NW recall and puts pass the write gate.
* :class:`HEINWRetriever` - a ``BaseRetriever`` over one namespace.
* :class:`HEINWMemoryMiddleware` - recalls into the system message before each
  model call and writes the finished turn back through the gate.
* :func:`memory_tools` - ``remember`` / ``forget`` tools for agents.
* :class:`ChatHEINWLocal` - the embedded language model as a chat model (``[model]`` extra).

Each is a thin adapter over ``hei_nw_plugin.HEIMemory``'s public API.
"""

from langchain_hei_nw.chat_models import ChatHEINWLocal
from langchain_hei_nw.middleware import HEINWMemoryMiddleware
from langchain_hei_nw.namespaces import from_hei_namespace, resolve_namespace, to_hei_namespace
from langchain_hei_nw.retrievers import HEINWRetriever
from langchain_hei_nw.store import HEINWStore
from langchain_hei_nw.tools import forget_tool, memory_tools, remember_tool

__version__ = "0.1.0"

__all__ = [
    "ChatHEINWLocal", "HEINWMemoryMiddleware", "HEINWRetriever", "HEINWStore", "__version__", "forget_tool",
    "from_hei_namespace", "memory_tools", "remember_tool", "resolve_namespace", "to_hei_namespace",
]

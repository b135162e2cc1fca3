"""HEI-NW episodic memory for LlamaIndex.

Three thin adapters over ``hei_nw_plugin.HEIMemory``: a block for llama-index's
``Memory``, a ``BaseMemory`` for chat engines and agents, and a retriever. Plus
``HEINWLocalLLM``, the embedded model as a chat LLM for running offline (``[model]``
extra; importing it loads nothing).
"""

from llama_index.memory.hei_nw.block import HEINWMemoryBlock
from llama_index.memory.hei_nw.local_llm import HEINWLocalLLM
from llama_index.memory.hei_nw.memory import DEFAULT_MEMORY_TEMPLATE, HEINWMemory
from llama_index.memory.hei_nw.retriever import HEINWRetriever

__all__ = ["DEFAULT_MEMORY_TEMPLATE", "HEINWLocalLLM", "HEINWMemory", "HEINWMemoryBlock", "HEINWRetriever"]

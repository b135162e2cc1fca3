"""HEI-NW: hippocampus-inspired episodic memory for LLM agents.

``from hei_nw_plugin import HEIMemory`` is all an agent needs. Importing this
package loads no model and touches no network; the embedder loads on first use
of :class:`HEIMemory`.
"""

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.errors import HeiNwError
from hei_nw_plugin.memory import HEIMemory, MemoryStats, VerifyReport
from hei_nw_plugin.types import Cue, MemoryEvent, MemoryTokens, RecallResult, SourcePointer, Trace, WriteDecision

__version__ = "0.1.0"

__all__ = [
    "Cue", "HEIMemory", "HeiNwError", "HeiNwSettings", "MemoryEvent", "MemoryStats", "MemoryTokens",
    "RecallResult", "SourcePointer", "Trace", "VerifyReport", "WriteDecision", "__version__",
]

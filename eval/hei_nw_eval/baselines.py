"""What HEI-NW is compared against, and the probes that bound it.

* **long-context**: the whole transcript (every episode seen so far, in order)
  in the prompt's memory slot. When it does not fit the model window the
  oldest lines are dropped; :func:`fit_transcript` says how many.
* **rag**: transcript chunks in LangChain's ``InMemoryVectorStore`` embedded by
  the same MiniLM embedder HEI-NW uses (through :class:`EngineEmbeddings`), top-k
  chunks by cosine into the memory slot.
* **bm25-rag**: the same, with BM25 over the episodes seen so far
  (:class:`Bm25Store`: ``bm25s``, English stopwords, Porter stems) instead of vectors.
* **oracle** (probe E1): the gold evidence episodes, packed by the engine's own
  packer, as if recall were perfect.
* **retrieval-only** (probe E2): no language model; the answer is the top
  recalled trace's answer slot, else the last word of its text.

Every memory-slot text uses the packer's line shape (``1. [date] text``) so the
one prompt template of :mod:`hei_nw_plugin.model.prompting` serves all modes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hei_nw_eval.items import Episode

if TYPE_CHECKING:
    from hei_nw_plugin.embed import Embedder
    from hei_nw_plugin.pack import Packer
    from hei_nw_plugin.types import RecalledTrace


def episode_line(rank: int, episode: Episode) -> str:
    """One memory line: ``rank. [YYYY-MM-DD] text`` (date left out when unknown)."""
    text = " ".join(episode.text.split())
    return f"{rank}. [{episode.timestamp:%Y-%m-%d}] {text}" if episode.timestamp else f"{rank}. {text}"


@dataclass(frozen=True)
class FittedTranscript:
    """A transcript cut to a token budget: newest lines kept, oldest dropped."""

    text: str
    kept: int
    dropped: int
    tokens: int

    @property
    def truncated(self) -> bool:
        return self.dropped > 0


def fit_transcript(episodes: Sequence[Episode], budget_tokens: int, count: Callable[[str], int]) -> FittedTranscript:
    """All ``episodes`` as numbered lines, dropping the oldest until ``count(text) <= budget_tokens``.

    Questions are asked at the end of the stream, so the newest lines are the
    ones a truncating chat client keeps.
    """
    if budget_tokens < 0:
        raise ValueError("budget_tokens must be non-negative")
    lines = [episode_line(i + 1, e) for i, e in enumerate(episodes)]
    per_line = [count(line) + 1 for line in lines]  # +1 for the newline between lines
    start, total = len(lines), 0
    while start > 0 and total + per_line[start - 1] <= budget_tokens:
        start -= 1
        total += per_line[start]
    text = "\n".join(lines[start:])
    tokens = count(text) if text else 0
    while tokens > budget_tokens and start < len(lines):  # tokenizer merges across lines: trim until exact
        start += 1
        text = "\n".join(lines[start:])
        tokens = count(text) if text else 0
    return FittedTranscript(text=text, kept=len(lines) - start, dropped=start, tokens=tokens)


class EngineEmbeddings:
    """LangChain ``Embeddings`` over a HEI-NW embedder, so RAG and HEI-NW embed alike."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.embedder.embed(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)


class RagStore:
    """Transcript chunks of ``chunk_size`` consecutive episodes in an ``InMemoryVectorStore``."""

    def __init__(self, embedder: Embedder, *, chunk_size: int = 1) -> None:
        try:
            from langchain_core.embeddings import Embeddings
            from langchain_core.vectorstores import InMemoryVectorStore
        except ImportError as err:
            raise ImportError('the rag baseline needs LangChain: pip install "hei-nw[langchain]"') from err
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")

        class _Adapter(EngineEmbeddings, Embeddings):  # registers as a LangChain Embeddings
            pass

        self.chunk_size = chunk_size
        self.store = InMemoryVectorStore(embedding=_Adapter(embedder))
        self._pending: list[Episode] = []

    def add(self, episodes: Sequence[Episode]) -> None:
        """Append episodes in stream order; a chunk is stored once it is full (see :meth:`flush`)."""
        self._pending.extend(episodes)
        full = len(self._pending) - len(self._pending) % self.chunk_size
        self._store(self._pending[:full])
        self._pending = self._pending[full:]

    def flush(self) -> None:
        """Store a last, partial chunk (call before searching)."""
        self._store(self._pending)
        self._pending = []

    def _store(self, episodes: Sequence[Episode]) -> None:
        if not episodes:
            return
        from langchain_core.documents import Document

        docs = []
        for start in range(0, len(episodes), self.chunk_size):
            chunk = list(episodes[start : start + self.chunk_size])
            text = "\n".join(" ".join(e.text.split()) for e in chunk)
            when = chunk[0].timestamp.isoformat() if chunk[0].timestamp else None
            docs.append(Document(page_content=text, metadata={"episode_ids": [e.id for e in chunk], "timestamp": when}))
        self.store.add_documents(docs)

    def search(self, query: str, k: int) -> tuple[str, list[str]]:
        """Top-``k`` chunks for ``query`` as memory lines, and the ranked episode ids inside them."""
        self.flush()
        docs = self.store.similarity_search(query, k=k)
        lines, ranked = [], []
        for rank, doc in enumerate(docs, start=1):
            when = doc.metadata.get("timestamp")
            date = f"[{when[:10]}] " if when else ""
            lines.append(f"{rank}. {date}{' '.join(doc.page_content.split())}")
            ranked.extend(doc.metadata["episode_ids"])
        return "\n".join(lines), ranked


class Bm25Store:
    """The lexical RAG baseline: top-k episodes by BM25, as memory lines in the packer's shape."""

    def __init__(self) -> None:
        from hei_nw_eval.recall_eval import Bm25Turns  # recall_eval imports this module

        self.index = Bm25Turns()
        self._by_id: dict[str, Episode] = {}

    def add(self, episodes: Sequence[Episode]) -> None:
        """Append episodes in stream order (indexed at the next search)."""
        self.index.add(episodes)
        self._by_id.update((e.id, e) for e in episodes)

    def search(self, query: str, k: int) -> tuple[str, list[str]]:
        """Top-``k`` episodes for ``query`` as memory lines, and their ids in rank order."""
        ranked = self.index.search(query, k)
        lines = [episode_line(rank, self._by_id[eid]) for rank, eid in enumerate(ranked, start=1)]
        return "\n".join(lines), ranked


def oracle_memory(evidence: Sequence[Episode], packer: Packer, namespace: str = "oracle") -> str:
    """The gold evidence packed exactly as recall would pack it (slots, dates, token budget)."""
    from hei_nw_plugin.types import SourcePointer, Trace

    traces = [
        Trace(
            id=e.id, namespace=namespace, text=e.text, slots=dict(e.slots), source=SourcePointer(),
            created_at=e.timestamp or datetime(1970, 1, 1, tzinfo=UTC), pinned=True, gate_score=1.0,
        )
        for e in evidence
    ]
    return packer.pack(traces).text


_WORD = re.compile(r"[\w'-]+")


def answer_from_trace(recalled: RecalledTrace | None, answer_slot: str | None) -> str:
    """Probe E2's answer: the top trace's ``answer_slot`` value, else the last word of its text.

    (bAbI-style facts end with the answer: "Mary went to the kitchen.")
    """
    if recalled is None:
        return ""
    trace = recalled.trace
    if answer_slot and answer_slot in trace.slots:
        return str(trace.slots[answer_slot])
    words = _WORD.findall(trace.text)
    return words[-1] if words else ""


"""Shared fixtures: fast fake-embedder memories for unit tests, real ones for integration."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hei_nw_plugin.config import HeiNwSettings  # noqa: E402
from hei_nw_plugin.embed import HashingEmbedder  # noqa: E402
from hei_nw_plugin.memory import HEIMemory  # noqa: E402

PG_BASE = os.environ.get("HEI_NW_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def make_settings(data_dir: Path, **over: Any) -> HeiNwSettings:
    over.setdefault("store", {})["data_dir"] = data_dir
    return HeiNwSettings.build(**over)


@pytest.fixture
def mem_factory(tmp_path: Path) -> Iterator[Callable[..., HEIMemory]]:
    """Build HEIMemory objects on SQLite in tmp_path with the hashing embedder (no model)."""
    made: list[HEIMemory] = []

    def make(*, data_dir: Path | None = None, embedder: Any = None, **over: Any) -> HEIMemory:
        m = HEIMemory(make_settings(data_dir or tmp_path, **over), embedder=embedder or HashingEmbedder(dim=128))
        made.append(m)
        return m

    yield make
    for m in made:
        try:
            m.close()
        except Exception:
            pass


@pytest.fixture
def mem(mem_factory: Callable[..., HEIMemory]) -> HEIMemory:
    return mem_factory()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    schema = f"hei_test_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(PG_BASE)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except Exception as err:  # pragma: no cover - CI always has PostgreSQL
        pytest.fail(f"PostgreSQL at {PG_BASE} is needed for this test: {err}")
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


@pytest.fixture(scope="session")
def minilm() -> Any:
    """The real all-MiniLM-L6-v2 embedder, loaded once."""
    from hei_nw_plugin.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()

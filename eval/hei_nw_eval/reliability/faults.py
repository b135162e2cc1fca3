"""What the crash, tamper and deletion checks share: the memory they open, the events they write,
raw-file searches and the JSON they leave.

The embedder is loaded once per run and handed to every :class:`HEIMemory` the
check opens (and, through ``fork``, to every child process it kills), so a check
pays the model load once, not once per trial.
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Literal

from hei_nw_plugin.config import HeiNwSettings
from hei_nw_plugin.embed import Embedder, HashingEmbedder, default_embedder
from hei_nw_plugin.memory import HEIMemory

EmbedderName = Literal["minilm", "hashing"]

_WORDS = ["amber", "lantern", "harbour", "violin", "pepper", "quartz", "meadow", "cobalt", "falcon", "ginger", "hollow", "ivory", "jasmine", "kettle", "lilac", "marble", "nectar", "orchid", "pebble", "quill", "raven", "saffron", "timber", "umbra", "velvet", "willow", "yarrow", "zephyr", "anchor", "bramble", "cedar", "dune", "ember", "fjord", "glacier", "heron", "indigo", "juniper", "kelp", "lagoon", "mango", "nutmeg"]
_PLACES = ("attic", "garage", "blue toolbox", "north pier", "seed vault", "boiler room", "rose garden", "fish market")


def load_embedder(name: EmbedderName, *, threads: int | None = None) -> Embedder:
    """The engine's default MiniLM embedder (``threads``: its ONNX threads per call), or the deterministic hashing one."""
    return HashingEmbedder(dim=128) if name == "hashing" else default_embedder(threads=threads)


def settings_for(data_dir: Path, *, save_every: int = 1000) -> HeiNwSettings:
    """Default settings on ``data_dir``; ``save_every`` is the index save interval (changes)."""
    return HeiNwSettings.build(store={"data_dir": data_dir}, index={"save_every": save_every})


def open_memory(data_dir: Path, embedder: Embedder, *, save_every: int = 1000) -> HEIMemory:
    return HEIMemory(settings_for(data_dir, save_every=save_every), embedder=embedder)


def event_text(rng: random.Random, tag: str) -> str:
    """A distinct sentence: ``tag`` makes it unique, the words make it look like an episode."""
    a, b, c = rng.sample(_WORDS, 3)
    return f"{tag}: the {a} {b} was left in the {rng.choice(_PLACES)} next to the {c}."


def raw_bytes(files: list[Path]) -> bytes:
    """Concatenated contents of the files that exist (a database, its WAL and shared-memory file, ...)."""
    return b"".join(f.read_bytes() for f in files if f.is_file())


def db_files(db: Path) -> list[Path]:
    """A SQLite database and its ``-wal`` and ``-shm`` companions."""
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def integrity_check(db: Path) -> str:
    """SQLite's ``PRAGMA integrity_check`` verdict ('ok' when the file is sound)."""
    with sqlite3.connect(db) as conn:
        return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())


def write_json(result: Any, out: Path) -> Path:
    """Write a dataclass result as indented JSON (folders created)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(result) if is_dataclass(result) and not isinstance(result, type) else result
    out.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return out

"""The user-facing docs: a short README whose links, like those of docs/, point at files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file(doc: Path) -> None:
    links = [m for m in LINK.findall(doc.read_text(encoding="utf-8")) if "://" not in m]
    missing = [m for m in links if not (doc.parent / m).exists()]
    assert not missing, f"{doc.name} links to missing files: {missing}"


def test_the_readme_quotes_the_command_of_its_retrieval_table() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "hei-nw eval --mode retrieval --suite dev" in text and "reports/retrieval/" in text

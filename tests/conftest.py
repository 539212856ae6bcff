"""Shared fixtures. Tests never write into the user's results/ except the notebook tests (by design:
their smoke results feed the scoreboard)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_CHAPTER = Path(__file__).resolve().parent / "fixtures" / "tiny-sweep.ipynb"
TINY_TOC = "format: jb-book\nroot: book/intro\nparts:\n  - caption: Tests\n    chapters:\n      - file: book/tiny-sweep\n"


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def results_tmp(tmp_path, monkeypatch) -> Path:
    """Point $PHENOMENA_RESULTS at a temporary folder."""
    folder = tmp_path / "results"
    monkeypatch.setenv("PHENOMENA_RESULTS", str(folder))
    return folder


@pytest.fixture
def tiny_book(tmp_path, monkeypatch) -> Path:
    """A book whose only chapter is the tiny test chapter (tests/fixtures/tiny-sweep.ipynb), as $PHENOMENA_ROOT."""
    book_root = tmp_path / "book-root"
    (book_root / "book").mkdir(parents=True)
    shutil.copy(TINY_CHAPTER, book_root / "book" / "tiny-sweep.ipynb")
    (book_root / "_toc.yml").write_text(TINY_TOC)
    monkeypatch.setenv("PHENOMENA_ROOT", str(book_root))
    return book_root

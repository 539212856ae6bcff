"""Filling jupyter-book's execution cache with chapters executed side by side.

The point of the cache filler is that ``jupyter-book build`` then finds every chapter and only
renders; so the test asks jupyter-cache the question myst-nb asks (does this stored notebook
match a cached execution?), on a one-chapter book made of the sweep tests' tiny chapter.
"""

from pathlib import Path

import pytest

from phenomena import bookcache
from phenomena.contract import ContractError


@pytest.fixture
def book(tiny_book, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PHENOMENA_RESULTS", str(tmp_path / "results"))
    return tiny_book


def test_an_executed_chapter_is_found_by_the_build_and_not_executed_twice(book):
    from jupyter_cache import get_cache

    cache_dir = book / bookcache.CACHE_FOLDER
    first = bookcache.fill(scale="smoke", jobs=2, root=book, log=lambda _: None)
    assert [(c.slug, c.status) for c in first] == [("tiny-sweep", "executed")]
    cache = get_cache(str(cache_dir))
    assert bookcache.is_cached(cache, book / "book" / "tiny-sweep.ipynb")
    record = cache.match_cache_notebook(bookcache._read(book / "book" / "tiny-sweep.ipynb"))
    assert record.data["execution_seconds"] == pytest.approx(first[0].seconds)
    _, merged = cache.merge_match_into_notebook(bookcache._read(book / "book" / "tiny-sweep.ipynb"))
    assert any(cell.get("outputs") for cell in merged.cells if cell.cell_type == "code")
    again = bookcache.fill(scale="smoke", jobs=2, root=book, log=lambda _: None)
    assert [c.status for c in again] == ["cached"]
    # a code change is a new hash: the chapter is executed again
    path = book / "book" / "tiny-sweep.ipynb"
    path.write_text(path.read_text().replace("x = 1.0  #", "x = 2.0  #"))
    assert [c.status for c in bookcache.fill(scale="smoke", root=book, log=lambda _: None)] == ["executed"]


def test_unknown_chapters_and_bad_jobs_are_named(book):
    with pytest.raises(ContractError, match="unknown chapter.*tiny-sweep"):
        bookcache.fill(["nope"], root=book, log=lambda _: None)
    with pytest.raises(ContractError, match="at least 1"):
        bookcache.fill(jobs=-1, root=book, log=lambda _: None)

"""The browser check of the built book (tools/check_book.py): what counts as broken on a page.

The checks run on the DOM Chromium returns after the page's scripts ran; here they run on
hand-written DOMs, so the rules are pinned without a browser. One test opens a real page in
Chromium when the machine has it.
"""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("check_book", Path(__file__).resolve().parents[1] / "tools" / "check_book.py")
check_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_book)


@pytest.fixture
def site(tmp_path) -> Path:
    (tmp_path / "book").mkdir()
    (tmp_path / "index.html").write_text('<html><body><h1 id="top">Home</h1></body></html>')
    (tmp_path / "book" / "fig.png").write_bytes(b"png")
    return tmp_path


def _problems(site: Path, body: str) -> list[str]:
    page = site / "book" / "page.html"
    dom = f"<html><body>{body}</body></html>"
    page.write_text(dom)
    return check_book.problems(page, dom, site, lambda p: check_book.parse(p.read_text()).ids)


def test_a_clean_page_passes(site):
    body = ('<p>Math <mjx-container>x</mjx-container> and <code>\\(x\\)</code> in code.</p>'
            '<img src="fig.png"><a href="../index.html#top">home</a><a href="#here">x</a><span id="here"></span>'
            '<a href="https://example.org/missing">out</a>')
    assert _problems(site, body) == []


@pytest.mark.parametrize("body, what", [
    ('<p>The law \\(y = x\\) unrendered.</p>', "raw TeX"),
    ('<p>$$ y = x $$</p>', "raw TeX"),
    ('<img src="nothere.png">', "missing image"),
    ('<a href="other.html">x</a>', "broken link"),
    ('<a href="../index.html#nope">x</a>', "broken anchor"),
    ('<div class="output traceback highlight-ipythontb"><pre>Traceback</pre></div>', "error output"),
])
def test_each_kind_of_breakage_is_named(site, body, what):
    found = _problems(site, body)
    assert len(found) == 1 and what in found[0], found


@pytest.mark.skipif(check_book.chromium_binary() is None, reason="Chromium is not installed here")
def test_chromium_renders_the_page_before_it_is_checked(site):
    page = site / "book" / "js.html"
    page.write_text('<html><body><div id="x"></div><script>document.getElementById("x").textContent = '
                    '"written by script"</script></body></html>')
    assert "written by script" in check_book.rendered(check_book.chromium_binary(), page, budget_ms=2000)


def test_a_chapter_page_without_figures_is_named(site):
    (site / "_sources" / "book").mkdir(parents=True)
    (site / "_sources" / "book" / "page.ipynb").write_text("{}")
    found = _problems(site, "<p>A chapter whose figures were lost.</p>")
    assert len(found) == 1 and "no figure" in found[0]
    assert _problems(site, '<img src="fig.png">') == []

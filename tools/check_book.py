"""Open every page of the built book in headless Chromium and fail on what a reader would see broken.

Usage: ``python tools/check_book.py [_build/html] [--out _build/check-book]`` (``make check-book``).

Each page is loaded by Debian's ``chromium`` (no network: the book ships its MathJax) and its DOM
is read back *after* the scripts ran, so the checks see what the reader sees:

- raw TeX left in the text (``\\(``, ``\\[``, ``$$``, ``\\begin{``): the math renderer did not run;
- an image whose file is missing;
- an internal link to a page or an anchor that does not exist;
- an error output (a traceback) in an executed chapter;
- a chapter (a page made from a notebook) with no figure at all.

It saves screenshots of the scoreboard and of one chapter into ``--out``. Exit status 0: no
problem; 1: problems (listed); 2: no built book or no Chromium (the message says how to get it).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{")
SKIP_TEXT = {"script", "style", "pre", "code", "textarea", "mjx-container", "mjx-assistive-mml", "math", "svg"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
SCREENSHOTS = {"scoreboard": "book/scoreboard.html", "chapter": "book/part1-solvable/saxe-deep-linear.html"}


class _Page(HTMLParser):
    """Collects a page's visible text (outside code and rendered math), images, links, ids and error outputs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.errors = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if a.get("id"):
            self.ids.add(a["id"])
        if a.get("name") and tag == "a":
            self.ids.add(a["name"])
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        classes = a.get("class", "").split()
        if "traceback" in classes or ("output" in classes and "error" in classes):
            self.errors += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if not SKIP_TEXT.intersection(self.stack):
            self.text.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _local(ref: str) -> bool:
    parts = urlsplit(ref)
    return not parts.scheme and not parts.netloc and not ref.startswith(("mailto:", "javascript:", "data:"))


def problems(page_path: Path, dom: str, root: Path, ids_of) -> list[str]:
    """What is wrong with one rendered page; ``ids_of(path)`` gives the anchors of another page."""
    page = parse(dom)
    found = []
    text = " ".join(page.text)
    for m in RAW_TEX.finditer(text):
        found.append(f"raw TeX {text[max(0, m.start() - 30): m.end() + 30]!r}")
        break
    for src in page.images:
        if _local(src) and not (page_path.parent / unquote(urlsplit(src).path)).is_file():
            found.append(f"missing image {src}")
    for href in page.links:
        if not _local(href):
            continue
        parts = urlsplit(href)
        target = (page_path.parent / unquote(parts.path)).resolve() if parts.path else page_path
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            found.append(f"broken link {href}")
        elif parts.fragment and target.suffix == ".html" and parts.fragment not in (
            page.ids if target == page_path else ids_of(target)
        ):
            found.append(f"broken anchor {href}")
    if page.errors:
        found.append(f"{page.errors} error output(s)")
    rel = page_path.relative_to(root).with_suffix(".ipynb")
    if (root / "_sources" / rel).is_file() and not page.images:
        found.append("a chapter with no figure (were its figures drawn with a non-inline backend?)")
    return found


def book_pages(root: Path) -> list[Path]:
    """The book's pages: not Sphinx's index and search pages, not assets, not redirects (the root
    ``index.html`` only forwards to the first page, which Chromium would show in its place)."""
    return sorted(p for p in root.rglob("*.html")
                  if p.name not in SKIP_PAGES and not {"_static", "_sources", "_images"} & set(p.relative_to(root).parts)
                  and 'http-equiv="refresh"' not in p.read_text(errors="replace")[:2000].lower())


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _chromium(binary: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-dev-shm-usage", *args], capture_output=True, text=True, timeout=timeout)


def rendered(binary: str, page: Path, budget_ms: int = 10000) -> str:
    """The page's DOM after its scripts (MathJax) ran, as Chromium serialises it."""
    return _chromium(binary, f"--virtual-time-budget={budget_ms}", "--dump-dom", page.resolve().as_uri()).stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("html", nargs="?", default="_build/html", help="the built book (default _build/html)")
    ap.add_argument("--out", default="_build/check-book", help="folder for the screenshots")
    args = ap.parse_args(argv)
    root = Path(args.html)
    if not (root / "index.html").is_file():
        print(f"no built book at {root}: run `make book` first", file=sys.stderr)
        return 2
    binary = chromium_binary()
    if binary is None:
        print("no Chromium found: install Debian's package (`apt-get install chromium`); nothing is downloaded "
              "at check time", file=sys.stderr)
        return 2
    cache: dict[Path, set[str]] = {}

    def ids_of(path: Path) -> set[str]:
        if path not in cache:
            cache[path] = parse(path.read_text(errors="replace")).ids
        return cache[path]

    pages = book_pages(root)
    bad = 0
    for page in pages:
        dom = rendered(binary, page)
        if not dom.strip():
            print(f"{page.relative_to(root)}: Chromium returned no DOM")
            bad += 1
            continue
        found = problems(page.resolve(), dom, root.resolve(), ids_of)
        for p in found:
            print(f"{page.relative_to(root)}: {p}")
        bad += bool(found)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rel in SCREENSHOTS.items():
        if (root / rel).is_file():
            shot = out / f"{name}.png"
            _chromium(binary, "--virtual-time-budget=10000", "--window-size=1280,1600",
                      f"--screenshot={shot.resolve()}", (root / rel).resolve().as_uri())
            print(f"screenshot: {shot}" + ("" if shot.is_file() else " (not written)"))
    print(f"check-book: {len(pages)} page(s), {bad} with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

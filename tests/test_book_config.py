"""The rendered book is self-contained: math from a package, not from a CDN."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_math_renders_without_a_network():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    sphinx = config["sphinx"]
    assert "sphinx-mathjax-offline" in sphinx["extra_extensions"]
    path = sphinx["config"]["mathjax_path"]
    assert not path.startswith(("http://", "https://", "//")), f"MathJax from the network: {path}"
    import importlib.util

    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    assert spec is not None and (Path(spec.origin).parent / "static" / path).is_file()


def test_references_parse_and_every_citation_has_an_entry():
    """Every page that cites lists its own references: its bibliography has a ``:keyprefix:`` and every
    key it cites carries that prefix. sphinxcontrib-bibtex lists a key in one bibliography only, so
    without per-page prefixes a paper cited by two chapters would be missing from the second one's
    references and its citations would link to the first chapter."""
    import re

    from pybtex.database import parse_file

    keys = set(parse_file(str(ROOT / "book" / "references.bib")).entries)
    cited: set[str] = set()
    prefixes: dict[str, Path] = {}
    for path in [*ROOT.glob("book/**/*.ipynb"), *ROOT.glob("book/**/*.md")]:
        text = path.read_text()
        groups = re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", text)
        if not groups:
            continue
        name = path.relative_to(ROOT)
        assert "{bibliography}" in text, f"{name} cites but has no bibliography of its own"
        prefix = re.findall(r":keyprefix: ([^\s\\]+)", text)
        assert len(prefix) == 1, f"{name}: its bibliography needs one ':keyprefix: <page>-' option"
        assert prefix[0] not in prefixes, f"{name} and {prefixes[prefix[0]]} share the key prefix {prefix[0]}"
        prefixes[prefix[0]] = name
        for group in groups:
            for key in (k.strip() for k in group.split(",")):
                assert key.startswith(prefix[0]), f"{name}: {key!r} lacks the page's key prefix {prefix[0]!r}"
                cited.add(key.removeprefix(prefix[0]))
    assert cited, "no citation found: the pattern no longer matches how chapters cite"
    assert not cited - keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_every_reference_key_is_defined_once():
    """Two chapters citing the same paper share one entry; a second one makes Sphinx warn and pick one."""
    import collections
    import re

    keys = re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "book" / "references.bib").read_text(), flags=re.M)
    twice = sorted(k for k, n in collections.Counter(keys).items() if n > 1)
    assert not twice, f"defined more than once in references.bib: {twice}"


def test_page_titles_hold_no_math():
    """A page's title also appears where MathJax does not typeset it (the sidebar, the previous/next
    links, the scoreboard's chapter column), so TeX there shows raw on every page: titles use Unicode."""
    import json
    import re

    for path in ROOT.glob("book/**/*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        title = re.search(r"^# (.+)$", text, flags=re.M)
        assert title, f"{path.relative_to(ROOT)} has no '# title'"
        assert "$" not in title.group(1), f"{path.relative_to(ROOT)}: math in the title {title.group(1)!r}"
    for path in ROOT.glob("book/**/*.md"):
        title = re.search(r"^# (.+)$", path.read_text(), flags=re.M)
        assert not title or "$" not in title.group(1), f"{path.relative_to(ROOT)}: math in the title"

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

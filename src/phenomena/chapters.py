"""The book's chapters as data: found from ``_toc.yml``, with their parameters and claim names.

A chapter is a notebook listed in ``_toc.yml``. Its knobs are the assignments in the one cell
tagged ``parameters``; its claims are the literal names passed to ``run.check``. Both are read
from the stored notebook without executing it, so that a bad command line fails before any
compute is spent.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .contract import ContractError, project_root


class ChapterError(ContractError):
    """A chapter, parameter or value that does not exist or does not fit; the message lists the valid ones."""


@dataclass(frozen=True)
class Parameter:
    """One knob of a chapter: its name, default value (a Python literal) and the comment beside it."""

    name: str
    default: Any
    comment: str = ""

    @property
    def type_name(self) -> str:
        return type(self.default).__name__ if self.default is not None else "any"


@dataclass(frozen=True)
class Chapter:
    """A chapter notebook: slug, path, title, its parameters and the names of the claims it checks."""

    slug: str
    path: Path
    title: str
    part: str
    parameters: dict[str, Parameter] = field(default_factory=dict)
    claims: tuple[str, ...] = ()

    def validate(self, values: dict[str, Any]) -> dict[str, Any]:
        """Check names and types of ``values`` against the parameters cell; return them coerced.

        Ints are accepted where a float is expected; ``None`` defaults accept anything; lists
        must be lists. Errors name the parameter, the expected type and the valid names.
        """
        out: dict[str, Any] = {}
        for name, value in values.items():
            if name not in self.parameters:
                raise ChapterError(
                    f"chapter {self.slug!r} has no parameter {name!r}; its parameters are: "
                    f"{', '.join(self.parameters)}"
                )
            out[name] = coerce(self.parameters[name], value, self.slug)
        return out


def coerce(param: Parameter, value: Any, chapter: str = "") -> Any:
    """``value`` converted to the type of ``param``'s default, or a :class:`ChapterError`."""
    default = param.default
    where = f"parameter {param.name!r}" + (f" of {chapter!r}" if chapter else "")
    wrong = ChapterError(
        f"{where} expects a {param.type_name} (default {default!r}), got {value!r} ({type(value).__name__})"
    )
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise wrong
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise wrong
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise wrong
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise wrong
    if isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
        raise wrong
    if isinstance(default, dict):
        if isinstance(value, dict):
            return value
        raise wrong
    return value


def parse_value(text: str) -> Any:
    """A command-line value as Python: literals (``3``, ``0.1``, ``[2, 4]``, ``True``, ``None``) or a plain string.

    ``true``/``false``/``null`` are accepted too, as YAML would.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def read_parameters(nb: dict[str, Any], source: str = "notebook") -> dict[str, Parameter]:
    """The assignments in the cell tagged ``parameters``; exactly one such cell must exist."""
    cells = [c for c in nb.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ChapterError(f"{source} must have exactly one cell tagged 'parameters', found {len(cells)}")
    text = "".join(cells[0]["source"]) if isinstance(cells[0]["source"], list) else cells[0]["source"]
    lines = text.splitlines()
    params: dict[str, Parameter] = {}
    for node in ast.parse(text).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                target, value_node = node.target, node.value
            else:
                continue
        else:
            target, value_node = node.targets[0], node.value
        try:
            default = ast.literal_eval(value_node)
        except ValueError:
            raise ChapterError(
                f"{source}: parameter {target.id!r} must be a literal (number, string, list, None)"
            ) from None
        line = lines[node.lineno - 1]
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        params[target.id] = Parameter(target.id, default, comment)
    return params


def read_claim_names(nb: dict[str, Any]) -> tuple[str, ...]:
    """Names passed as the first argument (or ``name=``) to any ``.check(...)`` call in the code cells."""
    names: list[str] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "check":
                arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value not in names:
                    names.append(arg.value)
    return tuple(names)


INSTALL_TAG = "install-phenomena"
"""The tag of every chapter's first cell, which installs ``phenomena`` outside the book."""


def install_cell_source(root: Path | None = None) -> str:
    """The first cell of every chapter: installs ``phenomena`` where it is not importable.

    Inside the book (the repository, `make test`, `make book`) the package imports and the cell does
    nothing. Opened in Colab, on Binder or downloaded alone, it installs the package from the
    book's repository (``repository.url`` in ``_config.yml``, the one setting the launch buttons also
    use), pinned to the book's version tag, so that the chapter runs against the code it was written for.
    """
    from . import __version__

    root = root or project_root()
    config = yaml.safe_load((root / "_config.yml").read_text()) or {}
    url = str((config.get("repository") or {}).get("url", "")).rstrip("/")
    if not url:
        raise ChapterError("_config.yml has no repository.url: the install cell needs the book's repository")
    return (
        "# Outside the book (Colab, Binder, a downloaded notebook) this installs the `phenomena` package,\n"
        "# pinned to the book's version; inside the book it does nothing.\n"
        "import importlib.util\n"
        "\n"
        'if importlib.util.find_spec("phenomena") is None:\n'
        f'    %pip install --quiet "phenomena @ git+{url}@v{__version__}"'
    )


def _toc_files(toc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(part caption, file) for every file in a jupyter-book ``_toc.yml``."""

    def walk(entries: list[dict[str, Any]], part: str) -> Iterator[tuple[str, str]]:
        for entry in entries or []:
            if "file" in entry:
                yield part, entry["file"]
            yield from walk(entry.get("sections", []), part)

    if "root" in toc:
        yield "", toc["root"]
    for part in toc.get("parts", []):
        yield from walk(part.get("chapters", []), part.get("caption", ""))
    yield from walk(toc.get("chapters", []), "")


def load(path: Path, part: str = "") -> Chapter:
    """Read one chapter notebook (parameters and claim names), without executing it."""
    nb = json.loads(Path(path).read_text())
    title = next(
        (
            line.lstrip("# ").strip()
            for c in nb.get("cells", [])
            if c.get("cell_type") == "markdown"
            for line in ("".join(c["source"]) if isinstance(c["source"], list) else c["source"]).splitlines()
            if line.startswith("# ")
        ),
        Path(path).stem,
    )
    return Chapter(
        slug=Path(path).stem,
        path=Path(path),
        title=title,
        part=part,
        parameters=read_parameters(nb, str(path)),
        claims=read_claim_names(nb),
    )


def discover(root: Path | None = None) -> dict[str, Chapter]:
    """Every chapter notebook in ``_toc.yml``, by slug, in book order."""
    root = root or project_root()
    toc_path = root / "_toc.yml"
    if not toc_path.is_file():
        raise ChapterError(f"no _toc.yml in {root}; run from the book's folder or set $PHENOMENA_ROOT")
    toc = yaml.safe_load(toc_path.read_text())
    chapters: dict[str, Chapter] = {}
    for part, file in _toc_files(toc):
        path = root / file
        if path.suffix != ".ipynb":
            path = path.with_suffix(".ipynb")
        if path.is_file():
            chapter = load(path, part)
            chapters[chapter.slug] = chapter
    return chapters


def get(slug: str, root: Path | None = None) -> Chapter:
    """The chapter called ``slug``, or a :class:`ChapterError` listing the valid slugs."""
    chapters = discover(root)
    if slug not in chapters:
        raise ChapterError(f"unknown chapter {slug!r}; chapters are: {', '.join(chapters) or '(none)'}")
    return chapters[slug]

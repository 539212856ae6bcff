"""The command line's error paths: every bad input is caught before a kernel starts."""

import json
import subprocess
import sys

import nbformat
import pytest

from phenomena.__main__ import main
from phenomena.chapters import ChapterError, Parameter, coerce, discover, parse_value, read_parameters


def fake_book(tmp_path, params_src='scale = None  # s\nseed = 0  # s\ndevice = None  # d\nlr = 0.1  # step\n'
              'n = 3  # count\nflag = False  # f\nwidths = [1, 2]  # list\nname = "a"  # text\n'):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A fake chapter"),
                nbformat.v4.new_code_cell(params_src, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('run.check("claim-one", 1, upper=2, law="l", reason="r")')]
    (tmp_path / "book").mkdir()
    nbformat.write(nb, str(tmp_path / "book" / "fake.ipynb"))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nparts:\n  - caption: P\n"
                                       "    chapters:\n      - file: book/fake\n")
    return tmp_path


@pytest.fixture
def book(tmp_path, monkeypatch):
    root = fake_book(tmp_path)
    monkeypatch.setenv("PHENOMENA_ROOT", str(root))
    return root


def test_discover_reads_parameters_and_claims(book):
    ch = discover(book)["fake"]
    assert ch.title == "A fake chapter" and ch.part == "P"
    assert list(ch.parameters) == ["scale", "seed", "device", "lr", "n", "flag", "widths", "name"]
    assert ch.parameters["lr"].comment == "step"
    assert ch.claims == ("claim-one",)


def test_list(book, capsys):
    assert main(["list", "-v"]) == 0
    out = capsys.readouterr().out
    assert "fake" in out and "lr = 0.1  # step" in out and "claim-one" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "nope", "--scale", "smoke"], "unknown chapter 'nope'; chapters are: fake"),
        (["run", "fake", "--scale", "huge"], "valid scales are: smoke, default, full"),
        (["run", "fake", "--scale", "smoke", "-p", "learning_rate", "0.1"],
         "no parameter 'learning_rate'; its parameters are: scale, seed, device, lr"),
        (["run", "fake", "--scale", "smoke", "-p", "lr", "fast"], "parameter 'lr' of 'fake' expects a float"),
        (["run", "fake", "--scale", "smoke", "-p", "n", "2.5"], "expects a int"),
        (["run", "fake", "--scale", "smoke", "-p", "flag", "1"], "expects a bool"),
        (["run", "fake", "--scale", "smoke", "-p", "widths", "3"], "expects a list"),
        (["run", "fake", "--scale", "smoke", "-p", "seed", "3"], "'seed' is set with --seed"),
        (["run", "fake", "--scale", "smoke", "-p", "lr", "0.1", "-p", "lr", "0.2"], "given twice"),
    ],
)
def test_run_rejects_bad_input_before_executing(book, capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (book / "_build").exists()  # nothing was executed or half-written


def test_values_parse_as_literals():
    assert parse_value("0.1") == 0.1 and parse_value("[2, 4]") == [2, 4] and parse_value("true") is True
    assert parse_value("None") is None and parse_value("relu") == "relu"
    assert coerce(Parameter("lr", 0.1), 1) == 1.0
    with pytest.raises(ChapterError):
        coerce(Parameter("n", 1), True)


def test_parameters_cell_must_be_unique_and_literal():
    nb = nbformat.v4.new_notebook()
    with pytest.raises(ChapterError, match="exactly one cell tagged 'parameters', found 0"):
        read_parameters(nb)
    nb.cells = [nbformat.v4.new_code_cell("x = compute()", metadata={"tags": ["parameters"]})]
    with pytest.raises(ChapterError, match="must be a literal"):
        read_parameters(nb)


def test_cli_as_a_process_exits_2_with_a_message(book):
    proc = subprocess.run([sys.executable, "-m", "phenomena", "run", "nope"], capture_output=True, text=True,
                          env={**__import__("os").environ, "PHENOMENA_ROOT": str(book)})
    assert proc.returncode == 2 and "unknown chapter" in proc.stderr


def test_scoreboard_command(book, tmp_path, capsys):
    results = tmp_path / "res" / "fake"
    results.mkdir(parents=True)
    (results / "smoke-seed0.json").write_text(json.dumps({
        "chapter": "fake", "scale": "smoke", "seed": 0, "device": "cpu", "seconds": 1.0, "complete": True,
        "claims": [{"name": "claim-one", "status": "pass", "measured": 1.0, "tolerance": "≤ 2"}]}))
    out = tmp_path / "table.md"
    assert main(["scoreboard", "--results", str(tmp_path / "res"), "--out", str(out), "-q"]) == 0
    text = out.read_text()
    assert "A fake chapter" in text and "claim-one" in text and "pass 1/1" in text
    assert main(["scoreboard", "--results", str(tmp_path / "res"), "--out", str(out), "-q"]) == 0
    assert "(unchanged)" in capsys.readouterr().out


def test_scoreboard_reads_the_tracked_ledgers_and_local_runs_win(book, tmp_path, monkeypatch):
    monkeypatch.delenv("PHENOMENA_RESULTS", raising=False)

    def write(folder, scale, measured, device="cpu"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{scale}-seed0.json").write_text(json.dumps({
            "chapter": "fake", "scale": scale, "seed": 0, "device": device, "seconds": 1.0, "complete": True,
            "claims": [{"name": "claim-one", "status": "pass", "measured": measured, "tolerance": "≤ 9",
                        "law": "one"}]}))

    write(book / "book" / "results-full" / "fake", "full", 7.0, device="cuda (H100)")
    write(book / "book" / "results-full" / "fake", "smoke", 1.0)
    write(book / "results" / "fake", "smoke", 2.0)  # this machine's fresh run of the same point wins
    out = tmp_path / "table.md"
    assert main(["scoreboard", "--out", str(out), "-q"]) == 0
    text = out.read_text()
    assert "measured at full" in text and "| 2<br>" in text and "| 1<br>" not in text
    assert "No `full`-scale result" not in text

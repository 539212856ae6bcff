"""The chapter contract: one home, no torch, one check of the reserved knobs for every driver."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from phenomena import contract
from phenomena.contract import ContractError, check_reserved, result_path, run_name


def test_result_path_is_chapter_then_scale_and_seed(tmp_path):
    assert run_name("smoke", 3) == "smoke-seed3"
    assert result_path("saxe-deep-linear", "default", 2, tmp_path) == tmp_path / "saxe-deep-linear" / "default-seed2.json"


def test_results_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PHENOMENA_RESULTS", str(tmp_path / "elsewhere"))
    assert contract.results_dir() == (tmp_path / "elsewhere").resolve()
    assert result_path("c", "smoke", 0) == (tmp_path / "elsewhere").resolve() / "c" / "smoke-seed0.json"


def test_reserved_knobs_are_checked_once_with_the_flag_to_use():
    check_reserved("c", ["scale", "seed", "device", "lr"], ["lr"])
    with pytest.raises(ContractError, match=r"lacks the 'device' knob"):
        check_reserved("c", ["scale", "seed", "lr"])
    with pytest.raises(ContractError, match=r"set with --seed \(--seeds in a sweep\), not with -p.*of 'c' are: lr"):
        check_reserved("c", ["scale", "seed", "device", "lr"], ["seed"])


def test_atomic_writes_leave_no_temporary_file(tmp_path):
    contract.write_json_atomic(tmp_path / "a" / "x.json", {"v": float("nan")})
    contract.write_text_atomic(tmp_path / "a" / "y.txt", "hello\n")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.json", "y.txt"]
    assert json.loads((tmp_path / "a" / "x.json").read_text().replace("NaN", "null")) == {"v": None}


def test_the_command_line_and_the_sweep_package_load_no_torch_and_no_dask():
    code = (
        "import sys\n"
        "from phenomena.__main__ import main\n"
        "assert main(['list']) == 0\n"
        "import phenomena.sweep, phenomena.scoreboard\n"
        "print(sorted(m for m in ('torch', 'dask', 'distributed') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_only_bad_input_is_exit_status_2(monkeypatch, capsys):
    from phenomena import __main__ as cli

    assert cli.main(["run", "no-such-chapter", "--scale", "smoke"]) == 2
    assert "unknown chapter" in capsys.readouterr().err

    def boom(args):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(cli, "cmd_list", boom)
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), boom))
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["list"])


def _with_func(parser, func):
    parser.set_defaults(func=func)
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            sub.set_defaults(func=func)
    return parser

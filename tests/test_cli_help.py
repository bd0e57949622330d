"""Every command answers --help (and -h) with its docstring and its flags, exit 0, writing nothing."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOOLS = ["bandit", "benchmark", "eval", "lqr", "plot", "report", "search", "train"]


def run(tool: str, *arguments: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bin" / tool), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.mark.parametrize("tool", TOOLS)
def test_help_prints_the_docstring_and_the_flags(tool, tmp_path):
    docstring = ast.get_docstring(ast.parse((ROOT / "bin" / tool).read_text()))
    result = run(tool, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(docstring.strip())
    flags_part = result.stdout[len(docstring.strip()) :]
    assert flags_part.startswith("\n\nflags:\n")
    # Each flag the tool defines is listed with its help text.
    defined = {
        node.args[0].value
        for node in ast.walk(ast.parse((ROOT / "bin" / tool).read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", "").startswith("DEFINE")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    assert defined
    for name in defined:  # a boolean flag reads --[no]name
        assert f"--{name}:" in flags_part or f"--[no]{name}:" in flags_part, name
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("tool", ["train", "report"])
def test_short_help_is_the_same(tool, tmp_path):
    assert run(tool, "-h", cwd=tmp_path).stdout == run(tool, "--help", cwd=tmp_path).stdout


@pytest.mark.parametrize("tool", TOOLS)
def test_an_unknown_flag_is_one_line_and_exit_2(tool, tmp_path):
    result = run(tool, "--no_such_flag=1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"bin/{tool}: error: Unknown command line flag 'no_such_flag'\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_bin_test_help_prints_its_docstring_and_runs_nothing(flag, tmp_path):
    docstring = ast.get_docstring(ast.parse((ROOT / "bin" / "test").read_text()))
    result = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "test"), flag],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, docstring.strip(), "")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["unknown_agent", "out_under_a_file", "out_not_png", "logdir_is_a_file"])
@pytest.mark.parametrize("tool", ["bandit", "lqr"])
def test_bad_methods_or_outputs_are_refused_before_any_training(tool, case, tmp_path):
    notes = tmp_path / "notes"
    notes.write_text("a file\n")
    logdir, out, agents = tmp_path / "runs", tmp_path / "figure.png", "ddpg"
    if case == "unknown_agent":
        agents = "ddpg,sac"
        expected = "--agents takes smoothie and/or ddpg, got ddpg,sac"
    elif case == "out_under_a_file":
        out = notes / "figure.png"
        expected = f"--out: {notes} is a file, so {out} cannot be made"
    elif case == "out_not_png":
        out = tmp_path / "figure.pdf"
        expected = f"--out: must name a .png file, got {out}"
    else:
        logdir = notes
        expected = f"--logdir: {notes} is a file, not a directory"
    result = run(tool, "--seeds=1", f"--agents={agents}", f"--logdir={logdir}", f"--out={out}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"bin/{tool}: error: {expected}"]
    assert list(tmp_path.iterdir()) == [notes] and notes.read_text() == "a file\n"

"""Help texts as a user reads them at 80 columns (issue 12, frictions 1 and 10)."""

import os
import subprocess
import sys

import pytest

COMMANDS = [[], ["train"], ["evaluate"], ["predict"], ["calibrate"], ["export"], ["data"],
            ["data", "prepare"], ["data", "inspect"], ["models"], ["models", "list"]]


def _help(args: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-m", "babyemo", *args, "--help"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "babyemo")
def test_help_fits_80_columns_and_shows_no_type_after_flags(args):
    text = _help(args)
    assert "<bool>" not in text  # flags take no value
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "[bold" not in text and "[/" not in text  # no rich markup left as text


def test_command_lists_are_whole_lines_and_extras_survive():
    top = _help([])
    commands = top.split("Commands:")[1]
    assert "..." not in commands  # no summary cut mid-sentence
    assert "babyemo[onnx]" in top  # square brackets are text, not markup
    assert "pip install 'babyemo[onnx]'" in _help(["export"])
    for group in (["data"], ["models"]):
        assert "..." not in _help(group).split("Commands:")[1]


def test_a_mistyped_split_fails_before_importing_torch():
    from tests.conftest import run_cli_in_subprocess

    proc = run_cli_in_subprocess(["evaluate", "--split", "testt"], exit_code=1)
    assert "Unknown split 'testt'" in proc.stderr and "train, val, test, all" in proc.stderr
    proc = run_cli_in_subprocess(["calibrate", "--split", "all"], exit_code=1)
    assert "use one of train, val, test" in proc.stderr

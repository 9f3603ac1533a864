"""``--help`` is complete, and the command line introduces itself: usage without a subcommand, ``--version``."""

import argparse
import subprocess
import sys

import pytest

from ov_sdxl.cli import build_parser, main


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _options():
    parser = build_parser()
    for action in parser._actions:
        if action.option_strings:
            yield "ov-sdxl", action
    for name, sub in _subparsers(parser).items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                yield f"ov-sdxl {name}", action


def test_every_option_has_help_that_names_its_default():
    missing, no_default = [], []
    for command, action in _options():
        where = f"{command} {max(action.option_strings, key=len)}"
        if not (action.help or "").strip():
            missing.append(where)
        quiet = action.default in (None, False, argparse.SUPPRESS) or action.required
        if not quiet and "default" not in (action.help or ""):
            no_default.append(f"{where} (default {action.default!r})")
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"options whose help does not say their default: {no_default}"


def test_plain_command_prints_the_usage_with_every_subcommand(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    for name in _subparsers(build_parser()):
        assert name in err
    assert "--version" in err


def test_version_names_the_libraries():
    done = subprocess.run([sys.executable, "-m", "ov_sdxl.cli", "--version"], capture_output=True, text=True)
    from importlib.metadata import version

    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"ov-sdxl {version('ov-sdxl')} (openvino {version('openvino')}, ")
    assert f"optimum-intel {version('optimum-intel')}" in line and f"diffusers {version('diffusers')}" in line


@pytest.mark.parametrize("command", list(_subparsers(build_parser())))
def test_each_subcommand_help_runs(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0 and f"usage: ov-sdxl {command}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--verbose", "schedulers"], ["schedulers", "--verbose"], ["schedulers"]])
def test_verbose_and_debug_go_before_or_after_the_subcommand(argv):
    args = build_parser().parse_args(argv)
    assert args.verbose is ("--verbose" in argv) and args.debug is False

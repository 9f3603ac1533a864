"""The ``ov-sdxl`` command line: convert, generate, demo, tiny, verify, devices, schedulers.

    ov-sdxl tiny --output models/tiny
    ov-sdxl generate --model models/tiny --prompt "a lighthouse at dusk" --mode base+refiner --output out.png
    ov-sdxl demo --model models/sdxl        # the browser demo on http://127.0.0.1:7860 (no --model: tiny model)
    python convert.py --base stabilityai/stable-diffusion-xl-base-1.0 --output models/sdxl --weights int8

``main(argv) -> int`` translates errors once: bad input exits 2, failures exit 1, each with one line on stderr
that begins with ``error:``; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ov_sdxl.errors import InputError, OvSdxlError

log = logging.getLogger("ov_sdxl")

EXIT_OK, EXIT_FAILURE, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line and exit code 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


class _Version(argparse.Action):
    """``ov-sdxl --version``: the package and the libraries that decide what it computes, read without importing."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the versions of ov-sdxl and its libraries")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        def of(package: str) -> str:
            try:
                return version(package)
            except PackageNotFoundError:
                return "not installed"

        libraries = ("openvino", "optimum-intel", "diffusers", "transformers", "nncf", "torch")
        print(f"ov-sdxl {of('ov-sdxl')} ({', '.join(f'{name} {of(name)}' for name in libraries)})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from ov_sdxl.parsers import add_subcommands

    parser = _Parser(prog="ov-sdxl", description="Stable Diffusion XL on Intel CPUs and GPUs with OpenVINO")
    parser.add_argument("--version", action=_Version)
    parser.add_argument("--verbose", action="store_true", help="also show what ov-sdxl loads, shapes and compiles")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and the libraries' logs and warnings")
    add_subcommands(parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND"))
    return parser


def command_line(args: argparse.Namespace, **changes: object) -> str:
    """The ``ov-sdxl`` command that runs ``args`` again with ``changes`` (option dest -> value; None leaves the
    option out): what a PNG records to regenerate its image. Paths are made absolute, so it runs from anywhere."""
    import shlex

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    words = ["ov-sdxl", args.command]
    for action in sub._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = changes[action.dest] if action.dest in changes else getattr(args, action.dest)
        if value is None or value is False or value == [] or (value == action.default and not action.required):
            continue
        flag = max(action.option_strings, key=len)
        values = value if isinstance(value, list) else [] if value is True else [value]
        text = [str(v.resolve()) if isinstance(v, Path) else str(v) for v in values]
        words += [flag, *text] if action.nargs in ("+", "*") else [w for t in text for w in (flag, t)] or [flag]
    return shlex.join(words)


def _configure_logging(debug: bool, verbose: bool) -> None:
    """Our progress bars and result lines; our details with --verbose; the libraries' logs, warnings and tables
    only with --debug (converter children learn it from the environment, see libraries.py)."""
    import os
    import warnings

    from ov_sdxl.libraries import DEBUG_VARIABLE, LIBRARY_LOGGERS, VERBOSITY_VARIABLES

    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.DEBUG if debug or verbose else logging.INFO)
    if debug:
        os.environ[DEBUG_VARIABLE] = "1"
        return
    warnings.filterwarnings("ignore")
    for variable in VERBOSITY_VARIABLES:
        os.environ.setdefault(variable, "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        if not argv:  # no subcommand: the usage with every subcommand, not argparse's one line
            build_parser().print_help(sys.stderr)
            return EXIT_INPUT
        args = build_parser().parse_args(argv)
        _configure_logging(args.debug, args.verbose)
        from ov_sdxl.commands import COMMANDS

        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OvSdxlError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT if isinstance(exc, InputError) else EXIT_FAILURE
    except Exception as exc:  # the boundary: one line, the cause named, the traceback one flag away
        if debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())

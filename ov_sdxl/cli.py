"""The ``ov-sdxl`` command line: convert, generate, demo, tiny, verify, devices, schedulers.

    ov-sdxl tiny --output models/tiny
    ov-sdxl generate --model models/tiny --prompt "a lighthouse at dusk" --mode base+refiner --output out.png
    ov-sdxl demo --model models/sdxl        # the browser demo on http://127.0.0.1:7860 (no --model: tiny model)
    python convert.py --base stabilityai/stable-diffusion-xl-base-1.0 --output models/sdxl --weights int8

``main(argv) -> int`` translates errors once: bad input exits 2, failures exit 1, each with one line on stderr
that begins with ``error:``; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from ov_sdxl.errors import InputError, OvSdxlError
from ov_sdxl.parsers import build_parser

log = logging.getLogger("ov_sdxl")

EXIT_OK, EXIT_FAILURE, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


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

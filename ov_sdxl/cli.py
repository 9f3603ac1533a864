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
from enum import Enum
from pathlib import Path

from ov_sdxl.errors import InputError, OvSdxlError

log = logging.getLogger("ov_sdxl")

EXIT_OK, EXIT_FAILURE, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line and exit code 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def _values(enum: type[Enum], *, leave_out: Sequence[Enum] = ()) -> list[str]:
    """The choices of an option, from its enum: the one place that lists them."""
    return [member.value for member in enum if member not in leave_out]


def _add_convert(sub: argparse._SubParsersAction) -> None:
    from ov_sdxl.formats import WeightFormat

    p = sub.add_parser("convert", help="export SDXL base (+ refiner) to OpenVINO IR")
    p.add_argument("--base", required=True, help="SDXL base: hub id, diffusers folder or single .safetensors file")
    p.add_argument("--refiner", help="SDXL refiner: hub id, diffusers folder or single .safetensors file")
    p.add_argument("--output", required=True, type=Path, help="model folder to create")
    p.add_argument(
        "--weights",
        default="fp16",
        choices=_values(WeightFormat),
        help="default: fp16; hybrid-int8: int8 weights, and int8 activations in the UNet (calibrated offline)",
    )
    p.add_argument(
        "--calibration-prompts",
        type=Path,
        metavar="FILE",
        help="hybrid-int8: the prompts to calibrate the UNet on, one per line (default: the ones shipped)",
    )
    p.add_argument(
        "--calibration-samples",
        type=int,
        metavar="N",
        help="hybrid-int8: UNet calls to calibrate each UNet on (default 32; fewer converts faster, less exactly)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    p.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="FILE[:SCALE]",
        help="fuse an SDXL LoRA (diffusers/PEFT or kohya .safetensors) into the base; repeatable; scale default 1",
    )
    p.add_argument("--allow-pickle", action="store_true", help="accept a .ckpt single file (unpickling can run code)")
    p.add_argument(
        "--single-file-config",
        type=Path,
        metavar="DIR",
        help="a diffusers folder whose configs describe a single-file checkpoint (default: SDXL 1.0's, shipped)",
    )
    p.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="the most memory conversion may use, e.g. 8GB; refused at once if it needs more, stopped if it does",
    )
    p.add_argument(
        "--few-step",
        metavar="KIND[:STEPS]",
        help="a few-step model: turbo (SDXL-Turbo), lightning:N (SDXL-Lightning's N-step UNet: 1, 2, 4 or 8) or "
        "lcm (LCM-SDXL, LCM-LoRA); recorded with its scheduler, steps and guidance, the defaults of generate",
    )


def _add_generate(sub: argparse._SubParsersAction) -> None:
    from ov_sdxl.config import DEFAULT_GUIDANCE, DEFAULT_HIGH_NOISE_FRAC, DEFAULT_STEPS, Mode, Precision

    p = sub.add_parser("generate", help="generate images with a converted model")
    p.add_argument("--model", required=True, type=Path, help="converted model folder (see convert, tiny)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--prompt-2", help="prompt for the second text encoder (default: --prompt)")
    p.add_argument("--negative-prompt")
    p.add_argument("--negative-prompt-2")
    p.add_argument("--mode", default=Mode.TEXT2IMG.value, choices=_values(Mode))
    p.add_argument("--image", type=Path, help="input image for img2img and refine")
    p.add_argument("--strength", type=float, help="img2img/refine noise strength in (0, 1]; default 0.6 / 0.3")
    p.add_argument(
        "--high-noise-frac",
        type=float,
        default=DEFAULT_HIGH_NOISE_FRAC,
        help=f"base+refiner hand-off fraction in (0, 1); default {DEFAULT_HIGH_NOISE_FRAC}",
    )
    own = "default: the model's own ({} for SDXL, {} for SDXL-Turbo...; see convert --few-step)"
    p.add_argument("--steps", type=int, help=own.format(DEFAULT_STEPS, 4))
    p.add_argument("--guidance", type=float, help=own.format(DEFAULT_GUIDANCE, 0))
    p.add_argument("--width", type=int, help="default: the model's native size (1024 for SDXL)")
    p.add_argument("--height", type=int)
    p.add_argument("--seed", type=int, help="default: a random seed, printed")
    p.add_argument("--num-images", type=int, default=1)
    p.add_argument("--scheduler", help="default: the model's own; see `ov-sdxl schedulers`")
    p.add_argument("--device", default="CPU", help="CPU, GPU, GPU.1, AUTO...; see `ov-sdxl devices`")
    p.add_argument(
        "--precision",
        default="auto",
        choices=_values(Precision),
        help="OpenVINO inference precision; auto = the device's default",
    )
    _add_feature_reuse(p)
    p.add_argument("--dynamic-shapes", action="store_true", help="skip static reshaping (no recompile per size)")
    p.add_argument("--max-pixels", type=int, default=2048 * 2048, help="refuse larger images; default 2048x2048")
    p.add_argument("--output", type=Path, default=Path("out.png"), help="PNG path; several images are numbered")
    _add_runtime_options(p)


def _add_feature_reuse(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-interval",
        type=int,
        metavar="N",
        help="feature reuse (DeepCache): the whole UNet every N steps, only its outermost layers between; "
        "1: off, the exact path; default: the preset's (fast: 3, quality and balanced: 1)",
    )
    p.add_argument(
        "--cache-branch",
        type=int,
        metavar="K",
        help="with --cache-interval: how deep a reused step goes (DeepCache's branch; default 0, the shallowest)",
    )


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    """Runtime options of generate and demo: the preset, textual-inversion embeddings, the invisible watermark."""
    from ov_sdxl.formats import Preset

    p.add_argument(
        "--preset",
        choices=_values(Preset),
        help="quality (fp16 weights), balanced (int8) or fast (hybrid-int8, guidance in the early steps only); "
        "each runs the weights of its conversion (convert --weights); default: the model's own",
    )
    p.add_argument(
        "--embedding",
        action="append",
        default=[],
        metavar="FILE[:TOKEN]",
        help="an SDXL textual-inversion .safetensors (clip_l + clip_g); its token, default <file stem>, then works "
        "in the prompts; repeatable",
    )
    p.add_argument(
        "--watermark",
        action="store_true",
        help="mark every image with SDXL's invisible watermark (needs: pip install 'ov-sdxl[watermark]')",
    )


def _add_compare(sub: argparse._SubParsersAction) -> None:
    from ov_sdxl.config import Mode, Precision

    p = sub.add_parser("compare", help="one labelled grid: the same prompt and seeds on several models")
    p.add_argument("--models", required=True, nargs="+", type=Path, help="converted model folders (columns)")
    p.add_argument("--seeds", required=True, nargs="+", type=int, help="one row per seed")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt")
    p.add_argument("--mode", default=Mode.TEXT2IMG.value, choices=_values(Mode, leave_out=(Mode.IMG2IMG, Mode.REFINE)))
    p.add_argument("--steps", type=int, help="default: each model's own (30 for SDXL, 4 for SDXL-Turbo...)")
    p.add_argument("--guidance", type=float, help="default: each model's own (5.0 for SDXL, 0 for Turbo...)")
    p.add_argument("--width", type=int, help="default: the first model's native size")
    p.add_argument("--height", type=int)
    p.add_argument("--scheduler", help="default: each model's own")
    _add_feature_reuse(p)
    p.add_argument("--device", default="CPU")
    p.add_argument("--precision", default=Precision.AUTO.value, choices=_values(Precision))
    p.add_argument("--output", type=Path, default=Path("grid.png"))


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the Gradio demo in the browser (and its API)")
    p.add_argument("--model", type=Path, help="converted model folder; default: the tiny offline model (noise)")
    p.add_argument("--device", default="CPU", help="CPU, GPU, GPU.1, AUTO...; see `ov-sdxl devices`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=7860, help="default 7860")
    p.add_argument("--share", action="store_true", help="also ask Gradio for a public share link")
    p.add_argument("--max-queue", type=int, default=16, help="requests that may wait; more are told to retry")
    _add_runtime_options(p)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from ov_sdxl.bench import CONTENDERS, DEFAULT_CACHE, DEFAULT_SYNTHETIC, MODES, QUICK_STEPS, STEPS, TORCH_STEPS
    from ov_sdxl.config import DEFAULT_HIGH_NOISE_FRAC

    p = sub.add_parser("bench", help="measure generation speed and memory against diffusers and optimum-intel")
    p.add_argument("--mode", default="text2img", choices=MODES)
    p.add_argument("--width", type=int, help="default: the model's native size (1024 for SDXL); --quick: 512")
    p.add_argument("--height", type=int)
    p.add_argument("--steps", type=int, help=f"default {STEPS}; --quick: {QUICK_STEPS}")
    p.add_argument(
        "--torch-steps",
        type=int,
        help=f"diffusers PyTorch runs at most this many steps, extrapolated to --steps (default {TORCH_STEPS})",
    )
    p.add_argument("--high-noise-frac", type=float, default=DEFAULT_HIGH_NOISE_FRAC, help="base+refiner hand-off")
    p.add_argument("--quick", action="store_true", help="512x512 and a few steps")
    p.add_argument(
        "--cache-interval",
        type=int,
        metavar="N",
        help="ov-sdxl's feature reuse for every ov-sdxl contender (1: off); default: each preset's own (fast: 3)",
    )
    p.add_argument("--contenders", nargs="+", metavar="NAME", help=f"default: all of {', '.join(CONTENDERS)}")
    p.add_argument("--model", type=Path, help="a converted model to measure (default: the synthetic full-size SDXL)")
    p.add_argument(
        "--torch-source",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="with --model: the diffusers folders (base [refiner]) it came from, for the PyTorch contenders",
    )
    p.add_argument("--tiny", action="store_true", help="the tiny random model instead (checks the harness quickly)")
    p.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where the synthetic model's conversions are kept"
    )
    p.add_argument("--synthetic", type=Path, default=DEFAULT_SYNTHETIC, help="the synthetic SDXL's sources")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="warm images measured per contender (median)")
    p.add_argument("--json", type=Path, help="also write every figure, the machine and the settings as JSON")
    p.add_argument("--chart", type=Path, help="also draw a PNG chart (needs matplotlib: ov-sdxl[notebooks])")


def build_parser() -> argparse.ArgumentParser:
    from ov_sdxl.bench import CONVERSION_CONTENDERS, CONVERSION_WEIGHTS
    from ov_sdxl.formats import WeightFormat

    parser = _Parser(prog="ov-sdxl", description="Stable Diffusion XL on Intel CPUs and GPUs with OpenVINO")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_convert(sub)
    _add_generate(sub)
    _add_demo(sub)
    _add_compare(sub)
    p = sub.add_parser("tiny", help="build and convert a tiny random SDXL (offline; for trying things out)")
    p.add_argument("--output", required=True, type=Path)
    # the tiny model is made by plain export; hybrid-int8 calibrates too (convert --weights hybrid-int8 does it)
    p.add_argument("--weights", default="fp32", choices=_values(WeightFormat, leave_out=(WeightFormat.HYBRID_INT8,)))
    p.add_argument("--overwrite", action="store_true")
    _add_bench(sub)
    p = sub.add_parser("bench-convert", help="measure conversion time and peak memory against optimum-cli")
    p.add_argument("--base", help="source of the base (default: the synthetic full-size SDXL, built once)")
    p.add_argument("--refiner", help="source of the refiner (with --base)")
    p.add_argument(
        "--synthetic",
        type=Path,
        default=Path.home() / ".cache" / "ov-sdxl" / "synthetic",
        help="where the synthetic SDXL sources are kept (default: ~/.cache/ov-sdxl/synthetic)",
    )
    p.add_argument("--weights", nargs="+", default=["fp16"], choices=CONVERSION_WEIGHTS)
    p.add_argument("--contenders", nargs="+", default=list(CONVERSION_CONTENDERS), choices=CONVERSION_CONTENDERS)
    p.add_argument("--work", type=Path, help="folder for the temporary outputs (default: the system's temp folder)")
    p.add_argument("--json", type=Path, help="also write the measurements as JSON")
    p = sub.add_parser("verify", help="check every file of a model folder against its manifest's sha256")
    p.add_argument("--model", required=True, type=Path)
    sub.add_parser("devices", help="list the OpenVINO devices of this machine")
    sub.add_parser("schedulers", help="list the scheduler names")
    return parser


def _configure_logging(debug: bool) -> None:
    """Our own progress lines on stderr; the libraries' warnings and loading bars only with --debug."""
    import os
    import warnings

    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    if debug:
        return
    warnings.filterwarnings("ignore")
    for variable in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):  # read when those libraries load
        os.environ.setdefault(variable, "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("optimum", "nncf", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        _configure_logging(args.debug)
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

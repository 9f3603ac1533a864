"""The ``ov-sdxl`` parser: every subcommand's options, each with its help and default, and the way back from
parsed options to a command line.

    from ov_sdxl.parsers import build_parser, command_line
    args = build_parser().parse_args(["generate", "--model", "models/tiny", "--prompt", "a fox"])
    command_line(args, seed=8)     # "ov-sdxl generate --model /abs/models/tiny --prompt 'a fox' --seed 8"

Every option's help says its default (``tests/cli/test_help.py`` walks them all); the choices of an option come
from its enum; a usage error is one ``error:`` line and exit code 2, like every other bad input (``cli.py``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

from ov_sdxl.errors import InputError


def _values(enum: type[Enum], *, leave_out: Sequence[Enum] = ()) -> list[str]:
    """The choices of an option, from its enum: the one place that lists them."""
    return [member.value for member in enum if member not in leave_out]


def _add_convert(sub: argparse._SubParsersAction) -> None:
    from ov_sdxl.formats import WeightFormat

    p = sub.add_parser("convert", help="export SDXL base (+ refiner) to OpenVINO IR")
    p.add_argument(
        "--base",
        help="SDXL base: hub id, diffusers folder or single .safetensors file (leave it out to add only --taesdxl "
        "to the converted model in --output)",
    )
    p.add_argument("--refiner", help="SDXL refiner: hub id, diffusers folder or single .safetensors file")
    p.add_argument(
        "--output", required=True, type=Path, help="model folder to create (or, with --taesdxl alone, to add to)"
    )
    p.add_argument(
        "--taesdxl",
        metavar="SRC",
        help="also convert TAESDXL (madebyollin/taesdxl, or a local AutoencoderTiny folder): a fast approximate "
        "decoder for generate --vae taesdxl and sharper previews; with --output a converted model and no --base, "
        "only TAESDXL is added to it",
    )
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
    p.add_argument("--prompt", required=True, help="what to draw; (word:1.2) weights a word, as in AUTOMATIC1111")
    p.add_argument("--prompt-2", help="prompt for the second text encoder (default: --prompt)")
    p.add_argument("--negative-prompt", help="what to keep out of the image (default: nothing)")
    p.add_argument(
        "--negative-prompt-2", help="negative prompt for the second text encoder (default: --negative-prompt)"
    )
    p.add_argument(
        "--mode",
        default=Mode.TEXT2IMG.value,
        choices=_values(Mode),
        help="text2img (default), img2img (--image), base+refiner (the base, then the refiner finishes), refine, "
        "inpaint (--image, --mask), outpaint (--image, --expand)",
    )
    p.add_argument("--image", type=Path, help="input image for img2img, refine, inpaint and outpaint")
    p.add_argument(
        "--strength",
        type=float,
        help="noise strength in (0, 1] of the modes with --image; default 0.6 img2img, 0.3 refine, 0.99 in/outpaint",
    )
    p.add_argument(
        "--high-noise-frac",
        type=float,
        default=DEFAULT_HIGH_NOISE_FRAC,
        help=f"base+refiner hand-off fraction in (0, 1); default {DEFAULT_HIGH_NOISE_FRAC}",
    )
    own = "default: the model's own ({} for SDXL, {} for SDXL-Turbo...; see convert --few-step)"
    p.add_argument("--steps", type=int, help=own.format(DEFAULT_STEPS, 4))
    p.add_argument("--guidance", type=float, help=own.format(DEFAULT_GUIDANCE, 0))
    p.add_argument("--width", type=int, help="default: the model's native size (1024 for SDXL), or --image's")
    p.add_argument("--height", type=int, help="default: the model's native size (1024 for SDXL), or --image's")
    p.add_argument("--seed", type=int, help="default: a random seed, printed; image i of a batch gets seed + i")
    p.add_argument(
        "--num-images",
        type=int,
        default=1,
        help="images in one batch, default 1; each PNG records its own seed and the command that makes it alone",
    )
    p.add_argument("--scheduler", help="default: the model's own; see `ov-sdxl schedulers`")
    _add_repaint(p)
    p.add_argument("--device", default="CPU", help="CPU (default), GPU, GPU.1, AUTO...; see `ov-sdxl devices`")
    p.add_argument(
        "--precision",
        default="auto",
        choices=_values(Precision),
        help="OpenVINO inference precision; default auto, the device's own",
    )
    _add_feature_reuse(p)
    p.add_argument("--dynamic-shapes", action="store_true", help="skip static reshaping (no recompile per size)")
    _add_limits(p)
    _add_output(p, "out.png")
    _add_runtime_options(p)


class _Sides(tuple):
    """--expand's four pixel counts, written back as given (L,T,R,B) in the command a PNG records."""

    def __str__(self) -> str:
        return ",".join(map(str, self))


def _sides(text: str) -> _Sides:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: four whole numbers left,top,right,bottom, e.g. 256,0,256,0")
    return _Sides(values)


def _add_repaint(p: argparse.ArgumentParser) -> None:
    from ov_sdxl.repaint import DEFAULT_MASK_BLUR, DEFAULT_MASKED_PADDING, InpaintArea, OutpaintFill

    p.add_argument(
        "--mask",
        type=Path,
        help="inpaint: white (or transparent) is repainted; any size, resized to --image; default: --image's "
        "own transparent pixels",
    )
    blur = f"inpaint/outpaint: blur of the mask's edge in pixels; default {DEFAULT_MASK_BLUR}"
    p.add_argument("--mask-blur", type=int, help=blur)
    p.add_argument(
        "--inpaint-area",
        choices=_values(InpaintArea),
        help="inpaint/outpaint: whole (default) generates the whole image; masked generates only the mask's "
        "surroundings at the model's size (or --width/--height) and pastes them back",
    )
    p.add_argument(
        "--masked-padding",
        type=int,
        help=f"--inpaint-area masked: pixels kept around the mask; default {DEFAULT_MASKED_PADDING}",
    )
    p.add_argument("--expand", type=_sides, help="outpaint: pixels added left,top,right,bottom (multiples of 8)")
    fill = "outpaint: what the new area starts as: edge (default, the border stretched), noise, blur"
    p.add_argument("--fill", choices=_values(OutpaintFill), help=fill)
    p.add_argument(
        "--refiner-frac",
        type=float,
        help="inpaint/outpaint: the refiner's inpainting finishes from this fraction of the steps, in (0, 1) "
        "(diffusers' inpainting ensemble); default: the base alone",
    )
    p.add_argument(
        "--refine-strength",
        type=float,
        help="inpaint/outpaint: then the refiner repaints the masked part of the result at this strength, "
        "in (0, 1]; default: no refiner pass",
    )


def _add_limits(p: argparse.ArgumentParser) -> None:
    """The runtime's caps (RuntimeConfig's max_*, whose defaults these are), which refuse a request before any work."""
    import dataclasses

    from ov_sdxl.config import RuntimeConfig

    caps = {f.name: f.default for f in dataclasses.fields(RuntimeConfig) if f.name.startswith("max_")}
    side = math.isqrt(caps["max_pixels"])
    shown = {**caps, "max_pixels": f"{side}x{side}" if side * side == caps["max_pixels"] else caps["max_pixels"]}
    for name, what in (
        ("max_pixels", "refuse larger images"),
        ("max_steps", "refuse more steps (a typo can cost hours)"),
        ("max_images", "refuse a larger --num-images"),
    ):
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, type=int, default=caps[name], help=f"{what}; default {shown[name]}")


def _add_output(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--output",
        type=Path,
        default=Path(default),
        help=f"PNG path, default {default} in the current folder; an existing file is kept and the new one numbered "
        f"({Path(default).stem}-2.png...), as are the images of a batch; the path is printed",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file at --output instead")
    p.add_argument("--make-dirs", action="store_true", help="create --output's folder if it does not exist")


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
    """Runtime options of generate and demo: the preset, the decoder, embeddings, the invisible watermark."""
    from ov_sdxl.config import Vae
    from ov_sdxl.formats import Preset

    p.add_argument(
        "--preset",
        choices=_values(Preset),
        help="quality (fp16 weights), balanced (int8) or fast (hybrid-int8, guidance in the early steps only); "
        "each runs the weights of its conversion (convert --weights); default: the model's own",
    )
    p.add_argument(
        "--vae",
        default=Vae.FULL.value,
        choices=_values(Vae),
        help="full (default): SDXL's VAE decodes; taesdxl: TAESDXL, about 40x faster and approximate (fine detail "
        "differs), also for the previews; needs convert --taesdxl",
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
    p.add_argument("--prompt", required=True, help="the one prompt of every cell")
    p.add_argument("--negative-prompt", help="what to keep out of the images (default: nothing)")
    p.add_argument(
        "--mode",
        default=Mode.TEXT2IMG.value,
        choices=_values(Mode, leave_out=(Mode.IMG2IMG, Mode.REFINE, Mode.INPAINT, Mode.OUTPAINT)),
        help="text2img (default) or base+refiner",
    )
    p.add_argument("--steps", type=int, help="default: each model's own (30 for SDXL, 4 for SDXL-Turbo...)")
    p.add_argument("--guidance", type=float, help="default: each model's own (5.0 for SDXL, 0 for Turbo...)")
    p.add_argument("--width", type=int, help="default: the first model's native size")
    p.add_argument("--height", type=int, help="default: the first model's native size")
    p.add_argument("--scheduler", help="default: each model's own")
    _add_feature_reuse(p)
    p.add_argument("--device", default="CPU", help="CPU (default), GPU, GPU.1, AUTO...; see `ov-sdxl devices`")
    p.add_argument(
        "--precision",
        default=Precision.AUTO.value,
        choices=_values(Precision),
        help="OpenVINO inference precision; default auto, the device's own",
    )
    _add_limits(p)
    _add_output(p, "grid.png")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the Gradio demo in the browser (and its API)")
    p.add_argument("--model", type=Path, help="converted model folder; default: the tiny offline model (noise)")
    p.add_argument("--device", default="CPU", help="CPU (default), GPU, GPU.1, AUTO...; see `ov-sdxl devices`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=7860, help="default 7860")
    p.add_argument("--share", action="store_true", help="also ask Gradio for a public share link")
    p.add_argument(
        "--max-queue", type=int, default=16, help="requests that may wait, default 16; more are told to retry later"
    )
    _add_runtime_options(p)


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Every subcommand, in the order ``ov-sdxl --help`` lists them."""
    from ov_sdxl.bench import add_bench_commands
    from ov_sdxl.formats import WeightFormat

    _add_convert(sub)
    _add_generate(sub)
    _add_demo(sub)
    _add_compare(sub)
    p = sub.add_parser("tiny", help="build and convert a tiny random SDXL (offline; for trying things out)")
    p.add_argument("--output", required=True, type=Path, help="model folder to create, e.g. models/tiny")
    # the tiny model is made by plain export; hybrid-int8 calibrates too (convert --weights hybrid-int8 does it)
    p.add_argument(
        "--weights",
        default="fp32",
        choices=_values(WeightFormat, leave_out=(WeightFormat.HYBRID_INT8,)),
        help="default fp32 (exact, for parity checks); hybrid-int8: convert --weights hybrid-int8 on the sources",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    add_bench_commands(sub)
    p = sub.add_parser("verify", help="check every file of a model folder against its manifest's sha256")
    p.add_argument("--model", required=True, type=Path, help="converted model folder")
    sub.add_parser("devices", help="list the OpenVINO devices of this machine")
    sub.add_parser("schedulers", help="list the scheduler names")


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


VERBOSE_HELP = "also show what ov-sdxl loads, shapes and compiles"
DEBUG_HELP = "show tracebacks and the libraries' logs and warnings"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ov-sdxl", description="Stable Diffusion XL on Intel CPUs and GPUs with OpenVINO")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    add_subcommands(sub)
    for target, default in ((parser, False), *((p, argparse.SUPPRESS) for p in sub.choices.values())):
        # before or after the subcommand; SUPPRESS: a subcommand's absent flag leaves the top-level value
        target.add_argument("--verbose", action="store_true", default=default, help=VERBOSE_HELP)
        target.add_argument("--debug", action="store_true", default=default, help=DEBUG_HELP)
    return parser


def command_line(args: argparse.Namespace, **changes: object) -> str:
    """The ``ov-sdxl`` command that runs ``args`` again with ``changes`` (option dest -> value; None leaves the
    option out): what a PNG records to regenerate its image. Paths are made absolute, so it runs from anywhere."""
    import shlex

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    words = ["ov-sdxl", args.command]
    for action in sub._actions:
        if not action.option_strings or action.dest in ("help", "verbose", "debug"):
            continue
        value = changes[action.dest] if action.dest in changes else getattr(args, action.dest)
        if value is None or value is False or value == [] or (value == action.default and not action.required):
            continue
        flag = max(action.option_strings, key=len)
        values = value if isinstance(value, list) else [] if value is True else [value]
        text = [str(v.resolve()) if isinstance(v, Path) else str(v) for v in values]
        words += [flag, *text] if action.nargs in ("+", "*") else [w for t in text for w in (flag, t)] or [flag]
    return shlex.join(words)

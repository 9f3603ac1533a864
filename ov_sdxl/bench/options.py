"""The options of ``ov-sdxl bench`` and ``ov-sdxl bench-convert`` (the command line's parser adds them).

from ov_sdxl.bench import add_bench_commands
add_bench_commands(parser.add_subparsers(dest="command"))
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_bench_commands(sub: argparse._SubParsersAction) -> None:
    """``ov-sdxl bench`` and ``ov-sdxl bench-convert``, with every option's help and default."""
    from ov_sdxl.bench.contenders import CONTENDERS
    from ov_sdxl.bench.conversion import CONVERSION_CONTENDERS, CONVERSION_WEIGHTS
    from ov_sdxl.bench.generation import DEFAULT_CACHE, DEFAULT_SYNTHETIC, MODES, QUICK_STEPS, STEPS, TORCH_STEPS
    from ov_sdxl.config import DEFAULT_HIGH_NOISE_FRAC

    p = sub.add_parser("bench", help="measure generation speed and memory against diffusers and optimum-intel")
    p.add_argument("--mode", default="text2img", choices=MODES, help="what to time; default text2img")
    p.add_argument("--width", type=int, help="default: the model's native size (1024 for SDXL); --quick: 512")
    p.add_argument("--height", type=int, help="default: the model's native size (1024 for SDXL); --quick: 512")
    p.add_argument("--steps", type=int, help=f"default {STEPS}; --quick: {QUICK_STEPS}")
    p.add_argument(
        "--torch-steps",
        type=int,
        help=f"diffusers PyTorch runs at most this many steps, extrapolated to --steps (default {TORCH_STEPS})",
    )
    p.add_argument(
        "--high-noise-frac",
        type=float,
        default=DEFAULT_HIGH_NOISE_FRAC,
        help=f"base+refiner hand-off; default {DEFAULT_HIGH_NOISE_FRAC}",
    )
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
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help="where the synthetic model's conversions are kept; default ~/.cache/ov-sdxl/bench",
    )
    p.add_argument(
        "--synthetic",
        type=Path,
        default=DEFAULT_SYNTHETIC,
        help="the synthetic SDXL's sources; default ~/.cache/ov-sdxl/synthetic",
    )
    p.add_argument("--seed", type=int, default=0, help="the seed of every contender's image; default 0")
    p.add_argument("--repeat", type=int, default=1, help="warm images measured per contender (median); default 1")
    p.add_argument("--json", type=Path, help="also write every figure, the machine and the settings as JSON")
    p.add_argument("--chart", type=Path, help="also draw a PNG chart (needs matplotlib: ov-sdxl[notebooks])")
    p = sub.add_parser("bench-convert", help="measure conversion time and peak memory against optimum-cli")
    p.add_argument("--base", help="source of the base (default: the synthetic full-size SDXL, built once)")
    p.add_argument("--refiner", help="source of the refiner (with --base)")
    p.add_argument(
        "--synthetic",
        type=Path,
        default=DEFAULT_SYNTHETIC,
        help="where the synthetic SDXL sources are kept (default: ~/.cache/ov-sdxl/synthetic)",
    )
    p.add_argument("--weights", nargs="+", default=["fp16"], choices=CONVERSION_WEIGHTS, help="default: fp16")
    p.add_argument(
        "--contenders",
        nargs="+",
        choices=CONVERSION_CONTENDERS,
        help=f"default: all of {', '.join(CONVERSION_CONTENDERS)} (optimum-cli not in hybrid-int8)",
    )
    p.add_argument(
        "--calibration-samples",
        type=int,
        help="hybrid-int8: UNet calls calibrated on per UNet; default: the converter's",
    )
    p.add_argument("--work", type=Path, help="folder for the temporary outputs (default: the system's temp folder)")
    p.add_argument("--json", type=Path, help="also write the measurements as JSON")

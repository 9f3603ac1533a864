"""The bench wing: generation and conversion measured against the peers (diffusers, optimum-intel) in one run.

    ov-sdxl bench --quick                         # generation: every contender on the synthetic full-size SDXL
    ov-sdxl bench-convert --weights fp16 int8     # conversion: ov-sdxl against optimum-cli

- ``generation``: the generation bench (``ov-sdxl bench``); ``contenders``: each peer, run in a child of its own;
  ``targets``: the model measured (synthetic, tiny or the user's); ``floor``: the machine's matmul floor;
  ``report``: tables, ratios and the chart.
- ``conversion``: the conversion bench (``ov-sdxl bench-convert``); ``options``: the two commands' options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ov_sdxl.exports import lazy_exports

if TYPE_CHECKING:
    from ov_sdxl.bench.contenders import CONTENDERS
    from ov_sdxl.bench.conversion import CONVERSION_CONTENDERS, CONVERSION_WEIGHTS, conversion_command
    from ov_sdxl.bench.generation import (
        DEFAULT_CACHE,
        DEFAULT_SYNTHETIC,
        MODES,
        QUICK_STEPS,
        STEPS,
        TORCH_STEPS,
        generation_command,
    )
    from ov_sdxl.bench.options import add_bench_commands

__getattr__ = lazy_exports(
    __name__,
    {
        "CONTENDERS": "ov_sdxl.bench.contenders",
        "CONVERSION_CONTENDERS": "ov_sdxl.bench.conversion",
        "CONVERSION_WEIGHTS": "ov_sdxl.bench.conversion",
        "DEFAULT_CACHE": "ov_sdxl.bench.generation",
        "DEFAULT_SYNTHETIC": "ov_sdxl.bench.generation",
        "MODES": "ov_sdxl.bench.generation",
        "QUICK_STEPS": "ov_sdxl.bench.generation",
        "STEPS": "ov_sdxl.bench.generation",
        "TORCH_STEPS": "ov_sdxl.bench.generation",
        "add_bench_commands": "ov_sdxl.bench.options",
        "conversion_command": "ov_sdxl.bench.conversion",
        "generation_command": "ov_sdxl.bench.generation",
    },
)
__all__ = [
    "add_bench_commands",
    "CONTENDERS",
    "CONVERSION_CONTENDERS",
    "CONVERSION_WEIGHTS",
    "DEFAULT_CACHE",
    "DEFAULT_SYNTHETIC",
    "MODES",
    "QUICK_STEPS",
    "STEPS",
    "TORCH_STEPS",
    "conversion_command",
    "generation_command",
]

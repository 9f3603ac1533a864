"""Comparison grids: the same prompt and seeds on several models, one labelled image (rows: seeds, columns: models).

    from ov_sdxl.runtime.compare import compare_models
    grid = compare_models(["models/a", "models/b"], GenerationParams(prompt="a fox", steps=20), seeds=[1, 2, 3])
    grid.save("grid.png")

Models are loaded one at a time and released before the next, so a grid of many fine-tunes needs the memory of
one. The seed of each row is the same in every column: differences come from the models alone.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ov_sdxl.config import GenerationParams, RuntimeConfig
from ov_sdxl.errors import ConfigError

log = logging.getLogger(__name__)

LABEL_HEIGHT = 28
LABEL_WIDTH = 96
MAX_CELLS = 64


def make_grid(cells: Sequence[Sequence[Any]], row_labels: Sequence[str], column_labels: Sequence[str]) -> Any:
    """Lay out ``cells[row][column]`` (PIL images of one size) with labels above the columns and left of rows."""
    from PIL import Image, ImageDraw

    width, height = cells[0][0].size
    grid = Image.new(
        "RGB", (LABEL_WIDTH + width * len(column_labels), LABEL_HEIGHT + height * len(row_labels)), "white"
    )
    draw = ImageDraw.Draw(grid)
    for column, label in enumerate(column_labels):
        draw.text((LABEL_WIDTH + column * width + 4, 6), _fit(draw, label, width - 8), fill="black")
    for row, label in enumerate(row_labels):
        draw.text((4, LABEL_HEIGHT + row * height + height // 2 - 6), _fit(draw, label, LABEL_WIDTH - 8), fill="black")
        for column, cell in enumerate(cells[row]):
            if cell.size != (width, height):
                raise ConfigError(f"grid cells must share one size, got {cell.size} and {(width, height)}")
            grid.paste(cell, (LABEL_WIDTH + column * width, LABEL_HEIGHT + row * height))
    return grid


def _fit(draw: Any, text: str, room: int) -> str:
    """``text``, or its end after an ellipsis when the whole does not fit in ``room`` pixels."""
    if draw.textlength(text) <= room:
        return text
    while text and draw.textlength("…" + text) > room:
        text = text[1:]
    return "…" + text


def compare_models(
    model_dirs: Sequence[str | Path],
    params: GenerationParams,
    seeds: Sequence[int],
    runtime_options: dict[str, Any] | None = None,
) -> Any:
    """Generate ``params`` with every seed on every model and return the labelled grid."""
    from ov_sdxl.runtime.sdxl_runtime import SDXLRuntime

    if not model_dirs or not seeds:
        raise ConfigError("compare needs at least one model and one seed")
    if len(model_dirs) * len(seeds) > MAX_CELLS:
        raise ConfigError(f"{len(model_dirs)} models x {len(seeds)} seeds is over {MAX_CELLS} images")
    if params.num_images != 1:
        raise ConfigError("compare makes one image per model and seed; leave num_images at 1")
    configs = [RuntimeConfig(model_dir=Path(m), **(runtime_options or {})) for m in model_dirs]
    runtimes: list[Any] = [SDXLRuntime(c) for c in configs]  # checks every folder first; loading is lazy
    columns: list[list[Any]] = []
    for i, config in enumerate(configs):
        log.debug("comparing: %s", config.model_dir)
        columns.append([runtimes[i].generate(dataclasses.replace(params, seed=seed)).images[0] for seed in seeds])
        runtimes[i] = None
        gc.collect()  # one model in memory at a time
    rows = [[column[i] for column in columns] for i in range(len(seeds))]
    return make_grid(rows, [f"seed {s}" for s in seeds], [c.model_dir.name or str(c.model_dir) for c in configs])

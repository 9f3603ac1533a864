"""Measuring for the tutorials: folder sizes, time and peak memory of a block, small tables, images in a row.

from ov_sdxl.tutorial.measurements import measure, size_table, side_by_side
with measure("load") as m:
    ...                          # m.seconds, m.peak_mb, m.held_mb once the block is done
size_table({"fp16": "models/sdxl-base-fp16/base", "int8": "models/sdxl/base"})
side_by_side([image_a, image_b], ["base", "refined"])
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ov_sdxl.resources import folder_size

log = logging.getLogger(__name__)


# -- sizes -----------------------------------------------------------------------------------------------------------
def human_size(size: float) -> str:
    """Bytes as text with a decimal unit: 1.8 MB, 5.14 GB."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def part_sizes(model_dir: str | Path) -> dict[str, int]:
    """Bytes per sub-model of a model folder: ``{"base/unet": ..., "refiner/unet": ..., "other": ...}``.

    A sub-model is a folder holding ``openvino_model.xml``; "other" is the rest (tokenizers, configs, manifest).
    """
    model_dir = Path(model_dir)
    sizes = {}
    for xml in sorted(model_dir.rglob("openvino_model.xml")):
        sizes[xml.parent.relative_to(model_dir).as_posix()] = folder_size(xml.parent)
    sizes["other"] = folder_size(model_dir) - sum(sizes.values())
    return sizes


@dataclass(frozen=True)
class Table:
    """Rows of a small table; Jupyter shows it as markdown, ``str()`` gives the same text."""

    rows: list[dict[str, Any]]

    def _repr_markdown_(self) -> str:
        if not self.rows:
            return "(no rows)"
        headers = list(dict.fromkeys(key for row in self.rows for key in row))
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for row in self.rows:
            lines.append("| " + " | ".join(str(row.get(h, "")) for h in headers) + " |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._repr_markdown_()


def size_table(folders: Mapping[str, str | Path]) -> Table:
    """Sub-model sizes of several model folders side by side (``{"fp32": dir, "int8": dir}``), plus a total.

    With two folders a last column gives the second's size as a fraction of the first's.
    """
    sizes = {label: part_sizes(folder) for label, folder in folders.items()}
    labels = list(sizes)
    parts = list(dict.fromkeys(part for per in sizes.values() for part in per if part != "other")) + ["other"]
    rows = []
    for part in [*parts, "total"]:
        row: dict[str, Any] = {"part": f"**{part}**" if part == "total" else part}
        values = [sum(sizes[x].values()) if part == "total" else sizes[x].get(part) for x in labels]
        for label, value in zip(labels, values, strict=True):
            row[label] = human_size(value) if value is not None else "–"
        if len(labels) == 2:
            first, second = values
            row[f"{labels[1]} / {labels[0]}"] = f"{second / first:.2f}" if first and second is not None else "–"
        rows.append(row)
    return Table(rows)


# -- time and memory -------------------------------------------------------------------------------------------------
@dataclass
class Measurement:
    """Wall time and this process's resident memory (RSS) around a block; filled in when the block ends."""

    label: str
    seconds: float = 0.0
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    samples: int = field(default=0, repr=False)

    @property
    def peak_mb(self) -> float:
        """Highest RSS seen during the block, in MB."""
        return self.rss_peak / 1e6

    @property
    def held_mb(self) -> float:
        """RSS the block left behind (loaded models, caches), in MB; negative when it freed memory."""
        return (self.rss_after - self.rss_before) / 1e6

    @property
    def transient_mb(self) -> float:
        """How far the peak rose above the memory before the block, in MB (working memory of the step)."""
        return (self.rss_peak - self.rss_before) / 1e6

    def row(self) -> dict[str, str]:
        return {
            "step": self.label,
            "time": f"{self.seconds:.1f} s",
            "peak RSS": f"{self.peak_mb:,.0f} MB",
            "peak − before": f"{self.transient_mb:+,.0f} MB",
            "held after": f"{self.held_mb:+,.0f} MB",
        }


def _lifetime_peak_rss() -> int | None:
    """The process's highest RSS so far (Linux ``ru_maxrss``, in kB), or None where that is not available."""
    if not sys.platform.startswith("linux"):
        return None
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def measure(label: str, interval: float = 0.01) -> Iterator[Measurement]:
    """Time a block and sample this process's RSS with psutil every ``interval`` seconds.

    The peak is the highest sample; on Linux, when the block set a new lifetime peak, the kernel's exact figure
    (``ru_maxrss``) is used instead. Memory of child processes is not counted.
    """
    import psutil

    process = psutil.Process()
    result = Measurement(label)
    stop = threading.Event()
    peak = [process.memory_info().rss]
    result.rss_before = peak[0]
    lifetime_before = _lifetime_peak_rss()

    def sample() -> None:
        while not stop.wait(interval):
            peak[0] = max(peak[0], process.memory_info().rss)
            result.samples += 1

    sampler = threading.Thread(target=sample, daemon=True, name=f"measure-{label}")
    sampler.start()
    started = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
        result.rss_after = process.memory_info().rss
        lifetime_after = _lifetime_peak_rss()
        exact = lifetime_after if lifetime_before is not None and lifetime_after > lifetime_before else 0
        result.rss_peak = max(peak[0], result.rss_after, exact or 0)
        log.debug("%s: %.2f s, peak RSS %.0f MB", label, result.seconds, result.peak_mb)


def measurements_table(measurements: Sequence[Measurement]) -> Table:
    """One row per measured step: time, peak RSS, the rise above the memory before it, and what it kept."""
    return Table([m.row() for m in measurements])


# -- images ----------------------------------------------------------------------------------------------------------
def side_by_side(images: Sequence[Any], titles: Sequence[str] | None = None, height: int = 320) -> Any:
    """One PIL image: ``images`` scaled to ``height`` pixels, left to right, each with its title above it."""
    from PIL import Image, ImageDraw, ImageFont

    titles = list(titles) if titles is not None else [""] * len(images)
    if len(titles) != len(images):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    font = ImageFont.load_default(size=max(12, height // 18))
    band = (font.size + 10) if any(titles) else 0
    gap = 8
    scaled = [im.convert("RGB").resize((max(1, round(im.width * height / im.height)), height)) for im in images]
    width = sum(im.width for im in scaled) + gap * (len(scaled) - 1)
    sheet = Image.new("RGB", (max(width, 1), height + band), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for im, title in zip(scaled, titles, strict=True):
        sheet.paste(im, (x, band))
        draw.text((x + 4, 4), title, fill="black", font=font)
        x += im.width + gap
    return sheet

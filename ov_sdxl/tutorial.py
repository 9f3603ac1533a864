"""Small helpers for the tutorials in ``notebooks/``: which model to use, folder sizes, time and peak memory.

    import os
    from ov_sdxl import tutorial
    choice = tutorial.choose_model(os.environ.get("OV_SDXL_MODEL_DIR"), os.environ.get("OV_SDXL_DEVICE", "CPU"),
                                   tiny=os.environ.get("OV_SDXL_TINY") == "1")
    print(choice.summary())          # which model, on which device, and why
    S = choice.settings              # sizes and steps: SDXL's own, or small ones on the tiny model
    tutorial.ensure_model(choice)    # convert (real SDXL) or build (tiny) it unless already done
    with tutorial.measure("load") as m:
        ...                          # m.seconds, m.peak_mb, m.held_mb once the block is done
    tutorial.size_table({"fp16": "models/sdxl-base-fp16/base", "int8": "models/sdxl/base"})
    tutorial.side_by_side([image_a, image_b], ["base", "refined"])

Which model: a folder given in ``OV_SDXL_MODEL_DIR`` wins; else the tiny offline model when asked for
(``OV_SDXL_TINY=1``) or when the Hugging Face hub cannot be reached (offline with ``HF_HUB_OFFLINE=1`` counts as
unreachable unless the SDXL models are already in the local cache); else real SDXL from the hub, converted by
``ov_sdxl.convert_models`` into the clone's ``models/sdxl`` (the README's folder; the tiny model goes to
``models/tiny``, as ``ov-sdxl tiny --output models/tiny`` builds it). A folder that is already there is used in
the weight format it holds.
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

from ov_sdxl.layout import MANIFEST_NAME, ModelLayout, read_manifest
from ov_sdxl.testing import TINY_SOURCES

log = logging.getLogger(__name__)

BASE_ID = "stabilityai/stable-diffusion-xl-base-1.0"
REFINER_ID = "stabilityai/stable-diffusion-xl-refiner-1.0"
HUB_TIMEOUT = 3.0  # seconds: how long the tutorials wait to learn whether the hub answers

# Sizes and steps for each kind of model. Real SDXL: its native 1024x1024 and common settings. Tiny: small and
# few, so that every notebook runs in seconds; its images are noise anyway (random weights).
REAL_SETTINGS: dict[str, Any] = {
    "weights": "int8",  # the format the tutorials run
    "compare_weights": "fp16",  # the base converted a second time in 01-convert, to compare sizes
    "width": 1024,
    "height": 1024,
    "other_size": (1152, 896),  # another of SDXL's trained sizes (width, height)
    "steps": 25,
    "fast_scheduler": "dpm++2m-karras",
    "fast_steps": 15,
    "strengths": (0.4, 0.6, 0.8),
    "refine_strength": 0.3,
    "high_noise_frac": 0.8,
    "seed": 42,
}
TINY_SETTINGS: dict[str, Any] = {
    **REAL_SETTINGS,
    "weights": "fp32",
    "compare_weights": "int8",
    "width": 256,
    "height": 256,
    "other_size": (320, 192),
    "steps": 5,
    "fast_steps": 4,
}
BITS = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4}


def _settings(tiny: bool, weights: str | None = None) -> dict[str, Any]:
    """The settings for a model; an existing folder's own weight format replaces the default one, and the format
    compared with it in 01-convert is then int8 for a float model, a float format for a compressed one."""
    settings = dict(TINY_SETTINGS if tiny else REAL_SETTINGS)
    if weights and weights != settings["weights"]:
        settings["weights"] = weights
        settings["compare_weights"] = "int8" if BITS.get(weights, 0) >= 16 else ("fp32" if tiny else "fp16")
    return settings


def _weights_in(folder: Path) -> str | None:
    """The weight format of a finished conversion in ``folder``, or None when there is none."""
    manifest = read_manifest(folder) if (folder / MANIFEST_NAME).is_file() else None
    return manifest.get("weights") if manifest else None


@dataclass(frozen=True)
class ModelChoice:
    """The model the tutorials use, where it lives, on which device, why, and the settings that fit it."""

    model_dir: Path
    device: str
    tiny: bool
    reason: str
    settings: dict[str, Any]
    given: bool = False  # True when the folder came from OV_SDXL_MODEL_DIR (used as it is, never converted)

    @property
    def comparison_dir(self) -> Path:
        """Where ``01-convert`` puts the base converted a second time, in ``settings["compare_weights"]``."""
        name = "tiny" if self.tiny else "sdxl"
        return self.model_dir.parent / f"{name}-base-{self.settings['compare_weights']}"

    def base_folders(self) -> dict[str, Path]:
        """``{weight format: base folder}`` of the model and its comparison, widest format first."""
        folders = {
            self.settings["weights"]: self.model_dir / "base",
            self.settings["compare_weights"]: self.comparison_dir / "base",
        }
        return dict(sorted(folders.items(), key=lambda item: -BITS.get(item[0], 0)))

    def summary(self) -> str:
        kind = "the tiny random SDXL (images are noise)" if self.tiny else "Stable Diffusion XL"
        s = self.settings
        return (
            f"model: {kind} in {self.model_dir} ({self.reason})\n"
            f"device: {self.device}; settings: {s['width']}x{s['height']}, {s['steps']} steps, seed {s['seed']}"
        )


def models_root(start: str | Path | None = None) -> Path:
    """Where converted models go: the clone's ``models/`` when run inside the clone (``notebooks/`` beside it),
    else ``./models`` in the working directory."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "models").is_dir() and (folder / "notebooks").is_dir():
            return folder / "models"
    return here / "models"


def hub_status(repo_ids: Sequence[str] = (BASE_ID, REFINER_ID), timeout: float = HUB_TIMEOUT) -> tuple[bool, str]:
    """(available, why): can these hub models be used, from the local cache or from the hub within ``timeout``?"""
    from huggingface_hub import HfApi, constants, snapshot_download

    missing = []
    for repo_id in repo_ids:
        try:
            snapshot_download(repo_id, local_files_only=True)
        except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError: not in the cache
            missing.append(repo_id)
    if not missing:
        return True, "in the local Hugging Face cache"
    if constants.HF_HUB_OFFLINE:
        return False, f"HF_HUB_OFFLINE=1 and {', '.join(missing)} not in the local Hugging Face cache"
    outcome: dict[str, str] = {}

    def probe() -> None:
        try:
            HfApi().model_info(missing[0], timeout=timeout)
            outcome["ok"] = ""
        except Exception as exc:  # DNS, proxy, TLS, HTTP errors: all mean "not reachable from here"
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=probe, daemon=True)  # a thread bounds DNS lookups too, not only the socket
    thread.start()
    thread.join(timeout)
    if "ok" in outcome:
        return True, "reachable on the Hugging Face hub (downloaded on first conversion)"
    why = outcome.get("error", f"no answer within {timeout:g} s")
    return False, f"the Hugging Face hub cannot be reached ({why})"


def choose_model(
    model_dir: str | Path | None = None,
    device: str = "CPU",
    tiny: bool = False,
    root: str | Path | None = None,
    timeout: float = HUB_TIMEOUT,
) -> ModelChoice:
    """Decide which model the tutorials run (see the module docstring) and check the device exists here.

    ``model_dir`` is a converted model folder (``OV_SDXL_MODEL_DIR``); ``root`` is where models are converted
    to when none is given (default: :func:`models_root`).
    """
    from ov_sdxl.pipelines import check_device

    device = (device or "CPU").strip().upper()
    check_device(device)  # DeviceNotAvailableError names this machine's devices
    if model_dir:
        path = Path(model_dir).expanduser()
        manifest = ModelLayout.open(path).manifest or {}  # ModelNotFoundError... naming the command that converts
        is_tiny = tiny or manifest.get("sources") == TINY_SOURCES
        settings = _settings(is_tiny, manifest.get("weights"))
        return ModelChoice(path, device, is_tiny, "OV_SDXL_MODEL_DIR", settings, given=True)
    root = Path(root) if root is not None else models_root()
    real_dir, tiny_dir = root / "sdxl", root / "tiny"
    if tiny:
        reason = "OV_SDXL_TINY=1"
    elif weights := _weights_in(real_dir):  # the manifest is written last: the conversion finished
        return ModelChoice(real_dir, device, False, "converted earlier", _settings(False, weights))
    else:
        available, why = hub_status(timeout=timeout)
        if available:
            return ModelChoice(real_dir, device, False, f"{BASE_ID} {why}", _settings(False))
        reason = f"{why}: using the tiny offline model instead"
    log.info("tutorials use the tiny model: %s", reason)
    return ModelChoice(tiny_dir, device, True, reason, _settings(True, _weights_in(tiny_dir)))


def ensure_model(choice: ModelChoice) -> Path:
    """Make sure ``choice.model_dir`` holds the converted model; convert or build it if not (idempotent).

    Real SDXL is converted from the hub (base and refiner) in ``settings["weights"]``; this is what
    ``01-convert.ipynb`` does step by step. A folder from ``OV_SDXL_MODEL_DIR`` is only checked.
    """
    if choice.given:
        ModelLayout.open(choice.model_dir)
        return choice.model_dir
    weights = choice.settings["weights"]
    if choice.tiny:
        from ov_sdxl.testing import build_tiny_model

        return build_tiny_model(choice.model_dir, weights=weights)
    from ov_sdxl.config import ConvertConfig
    from ov_sdxl.convert import convert_models

    config = ConvertConfig(base=BASE_ID, refiner=REFINER_ID, output=choice.model_dir, weights=weights)
    return convert_models(config).output


def base_source(choice: ModelChoice) -> str:
    """What to convert the base from: the hub id, or for the tiny model its diffusers folder (built once, offline,
    beside the model folder)."""
    if not choice.tiny:
        return BASE_ID
    folder = choice.model_dir.parent / "tiny-sources"
    if not (folder / "base" / "model_index.json").is_file():
        import shutil
        import tempfile

        from ov_sdxl.testing import build_tiny_sources

        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".tiny-sources.partial-", dir=folder.parent))
        build_tiny_sources(partial)  # written beside the target, then renamed: never half a folder
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return str(folder / "base")


def device_options(current: str | None = None) -> list[str]:
    """This machine's OpenVINO devices (``openvino.Core().available_devices``), AUTO, and ``current`` if it is
    something else (``AUTO:GPU,CPU``): the choices of a device dropdown."""
    import openvino as ov

    options = list(ov.Core().available_devices)
    for extra in ("AUTO", current):
        if extra and extra not in options:
            options.append(extra)
    return options


def notebook_logging(level: int = logging.INFO) -> None:
    """Notebook output: ov_sdxl's own messages (conversion steps, reshapes, recompiles) shown on stdout; the
    libraries' routine notices and deprecation warnings hidden (their errors, and progress bars, still show).

    Call it before the libraries are imported (the first cell); calling it again changes only the level.
    """
    import os
    import warnings

    logger = logging.getLogger("ov_sdxl")
    logger.setLevel(level)
    if not any(getattr(handler, "_ov_sdxl_tutorial", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        handler._ov_sdxl_tutorial = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    for name in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):  # read when they are first imported
        os.environ.setdefault(name, "error")
    for name in ("optimum", "torch.utils.cpp_extension"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)


def import_libraries() -> None:
    """Import what the first model load needs (PyTorch, diffusers, transformers, optimum-intel, OpenVINO), so
    that their time and memory can be measured apart from the model's own."""
    import openvino  # noqa: F401
    import torch  # noqa: F401
    from optimum.intel import OVStableDiffusionXLImg2ImgPipeline, OVStableDiffusionXLPipeline  # noqa: F401


def free_port(start: int = 7860, tries: int = 100) -> int:
    """The first local TCP port from ``start`` that nothing listens on (Gradio's own default range)."""
    import socket

    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port from {start} to {start + tries - 1}")


def under_ci() -> bool:
    """True when the notebook runs unattended in CI (``CI`` set, as GitHub/GitLab and tests/test_notebooks.py do)."""
    import os

    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# -- sizes -----------------------------------------------------------------------------------------------------------
def human_size(size: float) -> str:
    """Bytes as text with a decimal unit: 1.8 MB, 5.14 GB."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def folder_size(path: str | Path) -> int:
    """Bytes of every file below ``path`` (a single file: its size)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


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

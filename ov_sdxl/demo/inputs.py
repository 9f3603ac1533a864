"""The demo's form, checked: labels, size presets, limits, and form values -> ``GenerationParams``.

    from ov_sdxl.demo.inputs import DemoLimits, to_params
    params = to_params(Mode.TEXT2IMG, {"prompt": "a fox", "steps": 4.0, "width": 128.0, "height": 128.0},
                       native=(1024, 1024), has_refiner=True, limits=DemoLimits())

An empty prompt is refused, not run. Number boxes and sliders send floats: 64.5 is refused, not rounded. A value
over a limit is refused with the limit named, never reduced. Nothing here imports Gradio, so the checks are plain
functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ov_sdxl.config import GenerationParams, Mode
from ov_sdxl.errors import ConfigError, ImageError

MODES = {
    "Text to image": Mode.TEXT2IMG,
    "Text to image + refiner": Mode.BASE_REFINER,
    "Image to image": Mode.IMG2IMG,
    "Refine an image": Mode.REFINE,
    "Inpaint": Mode.INPAINT,
    "Outpaint": Mode.OUTPAINT,
}
SIZE_PRESETS = [(1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344)]
SIZE_PRESETS += [(1536, 640), (640, 1536)]  # SDXL's trained aspect ratios
INPUT_SIZE, CUSTOM_SIZE = "Input image size", "Custom"
MODEL_SCHEDULER = "model default"
RANDOM_SEED = "random"
PROMPT_HINT = "Describe the picture you want, e.g. a lighthouse at dusk, oil painting"
NEGATIVE_HINT = "Optional: what to keep out of it, e.g. blurry, low quality"
EMPTY_PROMPT = "the prompt is empty: describe the picture you want (the negative prompt may stay empty)"
CONVERT_COMMAND = (
    "python convert.py --base stabilityai/stable-diffusion-xl-base-1.0 "
    "--refiner stabilityai/stable-diffusion-xl-refiner-1.0 --output models/sdxl --weights int8"
)
TINY_NOTICE = (  # here, not in app.py, so that ``ov-sdxl demo`` reads it before Gradio is imported (session.py)
    "**This is the tiny offline test model**: random weights, so the pictures are noise. It shows that "
    "everything works. For real pictures, convert SDXL once (this downloads it from the Hugging Face hub) "
    "and start the demo on it:\n\n"
    f"`{CONVERT_COMMAND}`  \n`ov-sdxl demo --model models/sdxl`"
)


@dataclass(frozen=True)
class DemoLimits:
    """What one request may ask of a shared server; larger values are refused with a message, never reduced."""

    max_queue: int = 16  # requests waiting; beyond it a request is answered "busy, try again shortly"
    max_file_size: int = 20 * 1024 * 1024  # bytes per upload
    max_upload_pixels: int = 4096 * 4096  # checked from the image header, before decoding
    max_side: int = 2048
    max_steps: int = 100
    max_num_images: int = 4
    output_ttl_s: int = 3600  # generated files older than this are deleted (ours and Gradio's copies)
    max_kept_runs: int = 200

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"demo limit {item.name} {value!r} must be a whole number >= 1")


def size_label(width: int, height: int) -> str:
    return f"{width}×{height}"


def preset_size(size: str | None, width: Any, height: Any, native: tuple[int, int]) -> tuple[Any, Any]:
    """(width, height) for a size choice: a preset, the custom boxes, or (None, None) for the input's size."""
    if size in (None, INPUT_SIZE):
        return None, None
    if size == CUSTOM_SIZE:
        return width, height
    for preset in [*SIZE_PRESETS, native]:
        if size == size_label(*preset):
            return preset
    raise ConfigError(f"size {size!r} is not one of the presets, {INPUT_SIZE!r} or {CUSTOM_SIZE!r}")


def whole(name: str, value: Any) -> int:
    """A whole number from a number box or slider (which send floats); 64.5 is an error, not 64."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value != int(value):
        raise ConfigError(f"{name} {value!r} must be a whole number")
    return int(value)


def parse_seed(value: Any) -> int | None:
    """``"random"``, empty or -1 draw a fresh seed (None); otherwise a whole number from 0 to 2**64-1.

    Text, not a number box: a browser's numbers are doubles and would change seeds above 2**53.
    """
    text = "" if value is None else str(value).strip().lower()
    if text in ("", RANDOM_SEED, "-1"):
        return None
    if not text.isdigit():
        raise ConfigError(f"seed {value!r} must be a whole number from 0 to 2**64-1, or 'random'")
    return int(text)


def load_upload(path: str | Path | None, limits: DemoLimits, what: str = "image", keep_alpha: bool = False) -> Any:
    """The uploaded image as RGB (``keep_alpha``: RGBA when it has transparent pixels), its pixel count checked from
    the header; errors name the upload, not our path."""
    from ov_sdxl.images import load_image

    if path is None:
        raise ConfigError(f"this mode needs an input {what}: upload one")
    try:
        return load_image(path, max_pixels=limits.max_upload_pixels, keep_alpha=keep_alpha)
    except ImageError as exc:
        named = f"the uploaded {what} ({Path(path).name})"
        raise ImageError(str(exc).replace(f"image {path}", named).replace(str(path), named)) from None


def to_params(
    mode: Mode,
    values: dict[str, Any],
    *,
    native: tuple[int, int],
    has_refiner: bool,
    limits: DemoLimits,
    repaint: dict[str, Any] | None = None,
) -> GenerationParams:
    """GenerationParams from form values (prompt, negative_prompt, image path, width, height, steps, guidance,
    strength, high_noise_frac, seed, scheduler, num_images, cache_interval), checked against the demo's limits;
    ``repaint``: the inpaint and outpaint fields, from repaint.py's ``repaint_fields``."""
    values = dict(values)
    if not str(values.get("prompt") or "").strip():
        raise ConfigError(EMPTY_PROMPT)
    if mode.needs_refiner and not has_refiner:
        raise ConfigError(
            f"this model has no refiner, so {mode.value} is not available; convert one with it: {CONVERT_COMMAND}"
        )
    for name in ("width", "height", "steps", "num_images", "cache_interval"):
        if values.get(name) is not None:
            values[name] = whole(name, values[name])
    caps = {"width": limits.max_side, "height": limits.max_side, "steps": limits.max_steps}
    caps["num_images"] = limits.max_num_images
    for name, cap in caps.items():
        if values.get(name) is not None and values[name] > cap:
            raise ConfigError(f"{name} {values[name]} is over this demo's limit of {cap}")
    if mode is not Mode.BASE_REFINER:
        values.pop("high_noise_frac", None)
    repaint = repaint or {}
    image = values.pop("image", None)
    if mode.needs_image:
        if (values.get("width") is None) != (values.get("height") is None):
            raise ConfigError("give both width and height to resize the input image, or neither to keep its size")
        image = load_upload(image, limits, keep_alpha=mode is Mode.INPAINT)  # inpaint: transparent = repaint
        if values.get("width") is None and repaint.get("inpaint_area") != "masked":
            check_input_size(*image.size)
    else:
        image = None  # a hidden upload from another mode is not part of this request
        values.pop("strength", None)
        for name, side in zip(("width", "height"), native, strict=True):
            if values.get(name) is None:  # the model's native size
                values[name] = side
    scheduler = values.pop("scheduler", None)
    return GenerationParams(
        mode=mode,
        image=image,
        seed=parse_seed(values.pop("seed", None)),
        scheduler=None if scheduler in (None, "", MODEL_SCHEDULER) else scheduler,
        negative_prompt=values.pop("negative_prompt", None) or None,
        keep_base_images=mode is Mode.BASE_REFINER,
        **values,
        **repaint,
    )


def check_input_size(width: int, height: int) -> None:
    if width % 8 or height % 8 or min(width, height) < 64:
        raise ConfigError(
            f"the input image is {width}×{height}; at its own size its sides must be multiples of 8 and at least "
            f"64. Choose a size to resize it to (a preset or {CUSTOM_SIZE})"
        )

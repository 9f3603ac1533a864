"""PIL in and out: reading input images safely, RGB conversion, PNGs that carry their generation parameters.

from ov_sdxl.images import load_image, save_images
image = load_image("photo.jpg")                      # RGB, EXIF rotation applied, bombs refused
mask = load_image("mask.png", keep_alpha=True)       # RGBA when it has transparent pixels (inpaint masks)
alpha_mask(mask)                                     # its transparent pixels as white on black, or None
paths = save_images(result.images, "out.png", result.metadata())   # never replacing a file: see outputs.py
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ov_sdxl.errors import ImageError, OutputError
from ov_sdxl.outputs import OutputPlan

MAX_INPUT_PIXELS = 64 * 1024 * 1024  # refuse larger inputs from their header, before decoding


def to_rgb(image: Any) -> Any:
    """Convert any PIL mode to RGB: transparency over white, 16-bit grey scaled down, CMYK/P/L converted."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise ImageError(f"expected a PIL image, got {type(image).__name__}")
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        scale = 1 / 256 if image.mode.startswith("I;16") else 1 / 65536
        image = image.point(lambda v: v * scale).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def alpha_mask(image: Any) -> Any:
    """The transparent pixels of ``image`` as an L mask (255 = fully transparent), or None when it has none (or is
    not a PIL image)."""
    from PIL import Image, ImageOps

    if not isinstance(image, Image.Image):
        return None
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La"):
        return None
    alpha = image.getchannel("A")
    return None if alpha.getextrema()[0] == 255 else ImageOps.invert(alpha)


def load_image(path: str | Path, max_pixels: int = MAX_INPUT_PIXELS, keep_alpha: bool = False) -> Any:
    """Open an image file as RGB (with ``keep_alpha``, RGBA when it has transparent pixels). Raises ImageError
    naming the file and the problem."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image {path} is {width}x{height} ({width * height} pixels), over the limit of {max_pixels}"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            if keep_alpha and alpha_mask(image) is not None:
                return image.convert("RGBA")
            return to_rgb(image)
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image PIL can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image {path} is too large to decode safely: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image {path} cannot be decoded (truncated or corrupt): {exc}") from None


def png_info(metadata: dict[str, str]) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in metadata.items():
        info.add_itxt(key, value)
    summary = ", ".join(f"{k}: {v}" for k, v in metadata.items() if k not in ("prompt", "negative_prompt"))
    text = metadata.get("prompt", "")
    if metadata.get("negative_prompt"):
        text += f"\nNegative prompt: {metadata['negative_prompt']}"
    info.add_itxt("parameters", f"{text}\n{summary}")
    return info


def save_images(
    images: list[Any],
    output: str | Path | OutputPlan,
    metadata: dict[str, str] | Sequence[dict[str, str]],
    *,
    overwrite: bool = False,
    make_dirs: bool = True,
) -> list[Path]:
    """Write PNGs with the generation parameters as text chunks (one dict for all, or one per image), named as
    outputs.py says (never replacing a file unless ``overwrite``); each file appears whole (temp file + rename)."""
    import os

    plan = (
        output
        if isinstance(output, OutputPlan)
        else OutputPlan.check(output, len(images), overwrite=overwrite, make_dirs=make_dirs)
    )
    per_image = [metadata] * len(images) if isinstance(metadata, dict) else list(metadata)
    paths: list[Path] = []
    for image, info in zip(images, per_image, strict=True):
        path = plan.claim(after=paths[-1] if paths else None)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            image.save(tmp, format="PNG", pnginfo=png_info(info))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if not plan.overwrite:
                path.unlink(missing_ok=True)  # the empty file that reserved the name
            raise OutputError(f"cannot write {path}: {exc}") from exc
        paths.append(path)
    return paths

"""PIL in and out: reading input images safely, RGB conversion, PNGs that carry their generation parameters.

from ov_sdxl.images import load_image, save_images
image = load_image("photo.jpg")                      # RGB, EXIF rotation applied, bombs refused
paths = save_images(result.images, "out.png", result.metadata())   # out.png, or out-1.png, out-2.png...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ov_sdxl.errors import ImageError, OutputError

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


def load_image(path: str | Path, max_pixels: int = MAX_INPUT_PIXELS) -> Any:
    """Open an image file as RGB. Raises ImageError naming the file and the problem."""
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
            return to_rgb(image)
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image PIL can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image {path} is too large to decode safely: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image {path} cannot be decoded (truncated or corrupt): {exc}") from None


def output_paths(output: str | Path, count: int) -> list[Path]:
    """``out.png`` for one image; ``out-1.png``, ``out-2.png``... for several."""
    output = Path(output)
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(1, count + 1)]


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


def save_images(images: list[Any], output: str | Path, metadata: dict[str, str]) -> list[Path]:
    """Write PNGs with the generation parameters as text chunks; each file appears whole (temp file + rename)."""
    import os

    paths = output_paths(output, len(images))
    for image, path in zip(images, paths, strict=True):
        if path.suffix.lower() != ".png":
            raise ImageError(f"output {path} must end in .png (the parameters are stored as PNG text)")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            image.save(tmp, format="PNG", pnginfo=png_info(metadata))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {path}: {exc}") from exc
    return paths

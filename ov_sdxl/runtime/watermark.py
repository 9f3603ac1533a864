"""SDXL's invisible watermark, on request: ``RuntimeConfig(watermark=True)``, ``--watermark``.

    from ov_sdxl.runtime.watermark import Watermarker, has_watermark
    marker = Watermarker()                    # ConfigError if invisible-watermark is not installed
    marker.check_size(1024, 1024)             # ConfigError below what the watermark can be written into
    marked = marker.apply(images)             # PIL images -> PIL images carrying SDXL's 48-bit message
    has_watermark(marked[0])                  # True

The mark is diffusers' ``StableDiffusionXLWatermarker`` (the ``invisible-watermark`` package, dwtDct, the fixed
48-bit message of Stability AI's generative-models), applied to the decoded images as diffusers applies it, except
that it starts from the 8-bit image rather than the VAE's float output (a difference of at most one level).
It is invisible and survives PNG, not heavy editing. ``pip install "ov-sdxl[watermark]"`` installs the package.
"""

from __future__ import annotations

from typing import Any

from ov_sdxl.errors import ConfigError

MIN_WIDTH = 256  # diffusers leaves narrower images unmarked; here they are refused
MIN_PIXELS = 256 * 256  # invisible-watermark refuses smaller images
WATERMARK_METADATA = {"watermark": "invisible-watermark dwtDct, SDXL's 48-bit message"}  # in each image's metadata
INSTALL = 'pip install "ov-sdxl[watermark]" (or pip install invisible-watermark)'


def check_available() -> None:
    """Raise ConfigError unless the invisible-watermark package can be imported."""
    try:
        import imwatermark  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the watermark needs the invisible-watermark package ({exc}); {INSTALL}") from None


def watermark_bits() -> list[int]:
    """The 48 bits SDXL writes: diffusers' (and generative-models') ``WATERMARK_BITS``."""
    check_available()
    from diffusers.pipelines.stable_diffusion_xl.watermark import WATERMARK_BITS

    return list(WATERMARK_BITS)


class Watermarker:
    """diffusers' SDXL watermarker, for PIL images."""

    def __init__(self) -> None:
        check_available()
        from diffusers.image_processor import VaeImageProcessor
        from diffusers.pipelines.stable_diffusion_xl.watermark import StableDiffusionXLWatermarker

        self._marker = StableDiffusionXLWatermarker()
        self._processor = VaeImageProcessor()

    @staticmethod
    def check_size(width: int, height: int) -> None:
        if width < MIN_WIDTH or width * height < MIN_PIXELS:
            raise ConfigError(
                f"the invisible watermark needs images at least {MIN_WIDTH} pixels wide and {MIN_PIXELS} pixels "
                f"in all (256x256); {width}x{height} is smaller: choose a larger size or turn the watermark off"
            )

    def apply(self, images: list[Any]) -> list[Any]:
        """Mark each image (all of one size, as a generation's are); [-1, 1] tensors in and out, as diffusers."""
        if not images:
            return images
        tensor = self._processor.normalize(self._processor.numpy_to_pt(self._processor.pil_to_numpy(images)))
        return self._processor.postprocess(self._marker.apply_watermark(tensor), output_type="pil")


DETECTION_BITS = 44  # of the 48: an unmarked image matches about half of them by chance (2e-10 to reach 44)


def watermark_bits_matched(image: Any) -> int:
    """How many of the 48 message bits invisible-watermark's decoder reads back from ``image`` (PIL)."""
    import numpy as np
    from imwatermark import WatermarkDecoder

    bits = watermark_bits()
    bgr = np.asarray(image.convert("RGB"))[:, :, ::-1]
    decoded = WatermarkDecoder("bits", len(bits)).decode(bgr, "dwtDct")
    return sum(int(a) == int(b) for a, b in zip(decoded, bits, strict=True))


def has_watermark(image: Any) -> bool:
    """True when ``image`` (PIL) carries SDXL's watermark message: at least 44 of its 48 bits read back. The dwtDct
    decoder does not recover every bit of every picture, so an exact match would miss some marked images."""
    return watermark_bits_matched(image) >= DETECTION_BITS

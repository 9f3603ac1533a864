"""Inpainting and outpainting inputs: the mask, the outpaint canvas, "masked only", and the paste back.

    job = RepaintJob.build(params, seed)      # params.mode inpaint or outpaint (params.py); seed: the request's
    job.image, job.mask                       # the RGB image (outpaint: the canvas) and its L mask, same size
    pipe(**job.inputs(pipe, job.image, width, height), ...)                 # diffusers' inpainting call
    images = [job.paste(pipe, image, (width, height)) for image in images]  # the originals kept outside

Masks: white (or any grey above black) is repainted; a mask, or an image, with transparent pixels is read by its
alpha instead (transparent = repaint, as OpenAI's image edits take it). A mask of another size is resized to the
image, with a note. An empty mask is an error; a full one repaints everything, with a note. The mask is blurred by
``mask_blur`` pixels with diffusers' own ``mask_processor.blur``, and the same blurred mask pastes the generated
pixels over the original (``image_processor.apply_overlay``), so pixels outside it keep their values. "Masked only"
(``inpaint_area="masked"``) is what diffusers' ``padding_mask_crop`` does, done here because diffusers refuses it
when the latents are handed on (to the refiner, to our decode): the mask's bounding box plus ``masked_padding``,
widened to the generation size's aspect (``get_crop_region``), cropped and resized to that size (``resize_mode
"fill"``), generated, and pasted back (``apply_overlay`` with the crop).

Outpainting pads the image by ``expand`` (left, top, right, bottom), fills the new area (``edge``: the border pixels
stretched; ``noise``: seeded random pixels; ``blur``: the stretched border blurred), and repaints it with a mask that
reaches ``SEAM`` pixels into the original, so the join is generated too.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from ov_sdxl.errors import ConfigError
from ov_sdxl.images import alpha_mask, to_rgb
from ov_sdxl.params import GenerationParams, Mode
from ov_sdxl.repaint import InpaintArea, OutpaintFill

log = logging.getLogger(__name__)

SEAM = 16  # pixels of the original an outpaint mask reaches into, so the join is repainted too


@dataclass(frozen=True)
class RepaintJob:
    """One inpaint or outpaint request's inputs, ready for diffusers' inpainting ``__call__``."""

    image: Any  # RGB PIL image: the input, or the outpaint canvas
    mask: Any  # L PIL image of the same size, blurred: 255 repaints, 0 keeps
    padding: int | None  # "masked only": pixels around the mask's box; None: the whole image is generated
    mask_sha256: str  # of the mask before blurring, for the PNG metadata
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, params: GenerationParams, seed: int) -> RepaintJob:
        notes: list[str] = []
        if params.mode is Mode.OUTPAINT:
            image, mask = outpaint_canvas(to_rgb(params.image), params.expand, params.fill, seed)
        else:
            image = to_rgb(params.image)
            mask = read_mask(params.mask if params.mask is not None else params.image, image.size, notes)
        digest = hashlib.sha256(mask.tobytes()).hexdigest()[:16]
        blurred = _blur(mask, params.mask_blur) if params.mask_blur else mask
        masked = params.inpaint_area is InpaintArea.MASKED
        return cls(image, blurred, params.masked_padding if masked else None, digest, notes)

    @property
    def masked_only(self) -> bool:
        return self.padding is not None

    def crop(self, pipe: Any, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """The box generated with "masked only", (x1, y1, x2, y2) of the image; None: the whole image."""
        if not self.masked_only:
            return None
        return pipe.mask_processor.get_crop_region(self.mask, size[0], size[1], pad=self.padding)

    def inputs(self, pipe: Any, image: Any, size: tuple[int, int]) -> dict[str, Any]:
        """diffusers' inpainting inputs for ``image`` (the job's own, or a finished one to refine): image and mask,
        with "masked only" their crop resized to the generation ``size`` as ``padding_mask_crop`` would."""
        crop = self.crop(pipe, size)
        if crop is None:
            return {"image": image, "mask_image": self.mask}
        width, height = size
        return {
            "image": pipe.image_processor.resize(image.crop(crop), height, width, resize_mode="fill"),
            "mask_image": pipe.mask_processor.resize(self.mask.crop(crop), height, width, resize_mode="fill"),
        }

    def paste(self, pipe: Any, generated: Any, size: tuple[int, int]) -> Any:
        """The generated image (at the generation ``size``) over the original, through the blurred mask; with
        "masked only", the generated crop put back in its place."""
        image, mask, crop = self.image, self.mask, self.crop(pipe, size)
        if crop is None and image.size != generated.size:
            image, mask = image.resize(generated.size), mask.resize(generated.size)
        return pipe.image_processor.apply_overlay(mask, image, generated, crop)

    def metadata(self, width: int, height: int) -> dict[str, str]:
        """For the PNG: the mask's hash and, with "masked only", the size the crop was generated at."""
        out = {"mask_sha256": self.mask_sha256}
        if self.masked_only:
            out["generated_at"] = f"{width}x{height}"
        return out


def _blur(image: Any, radius: float) -> Any:
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor.blur(image, radius)  # what diffusers' pipelines call mask_processor.blur


def read_mask(source: Any, size: tuple[int, int], notes: list[str]) -> Any:
    """The repaint mask of ``source`` (a PIL image) as an L image of ``size``: its alpha when it has transparent
    pixels (transparent = repaint), else its grey levels (white = repaint)."""
    from PIL import Image

    if not isinstance(source, Image.Image):
        raise ConfigError(f"mask must be a PIL image, got {type(source).__name__}")
    mask = alpha_mask(source)
    if mask is None:
        mask = to_rgb(source).convert("L")
    if mask.size != size:
        note = f"the mask is {mask.size[0]}x{mask.size[1]}, resized to the image's {size[0]}x{size[1]}"
        log.info("%s", note)
        notes.append(note)
        mask = mask.resize(size, Image.Resampling.LANCZOS)
    low, high = mask.getextrema()
    if high == 0:
        raise ConfigError("the mask is empty (all black, or no transparent pixel): there is nothing to repaint")
    if low == 255:
        note = "the mask covers the whole image: all of it is repainted, as img2img would"
        log.info("%s", note)
        notes.append(note)
    return mask


def outpaint_canvas(image: Any, expand: tuple[int, int, int, int], fill: OutpaintFill, seed: int) -> tuple[Any, Any]:
    """``image`` padded by ``expand`` (left, top, right, bottom) pixels, the new area filled; and its mask: the new
    area plus ``SEAM`` pixels of the original on each side that grew."""
    import numpy as np
    from PIL import Image

    left, top, right, bottom = expand
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    canvas = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="edge")
    new = np.ones(canvas.shape[:2], dtype=bool)
    new[top : top + height, left : left + width] = False
    if fill is OutpaintFill.NOISE:
        noise = np.random.default_rng(seed % 2**63).integers(0, 256, canvas.shape, dtype=np.uint8)
        canvas[new] = noise[new]
    elif fill is OutpaintFill.BLUR:
        blurred = np.asarray(_blur(Image.fromarray(canvas), max(expand) / 4))
        canvas[new] = blurred[new]
    seam_left, seam_top, seam_right, seam_bottom = (SEAM if side else 0 for side in expand)
    mask = np.full(canvas.shape[:2], 255, dtype=np.uint8)
    mask[top + seam_top : top + height - seam_bottom, left + seam_left : left + width - seam_right] = 0
    return Image.fromarray(canvas), Image.fromarray(mask)

"""The inpaint and outpaint fields of a request: where the mask's edge blur, the area generated, the outpaint fill
and the refiner's part are defined and checked (``GenerationParams`` calls ``check_repaint``).

    from ov_sdxl.repaint import InpaintArea, OutpaintFill
    GenerationParams(prompt="a red scarf", mode="inpaint", image=photo, mask=mask, inpaint_area=InpaintArea.MASKED)

What the runtime does with them is ``ov_sdxl.runtime.inpaint``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from ov_sdxl.checks import check_fraction, enum_value, is_whole, set_field
from ov_sdxl.errors import ConfigError
from ov_sdxl.images import alpha_mask

DEFAULT_MASK_BLUR = 4  # pixels of Gaussian blur on the mask's edge (inpaint, outpaint), as AUTOMATIC1111's default
DEFAULT_MASKED_PADDING = 32  # pixels around the mask's bounding box, with inpaint_area "masked"


class InpaintArea(str, Enum):
    """What inpainting generates: the whole image, or only a crop around the mask (AUTOMATIC1111's "only masked"),
    at the generation size, pasted back."""

    WHOLE = "whole"
    MASKED = "masked"


class OutpaintFill(str, Enum):
    """What the new canvas starts as before it is repainted: the image's edge pixels stretched, noise, or the edge
    pixels blurred."""

    EDGE = "edge"
    NOISE = "noise"
    BLUR = "blur"


def check_repaint(params: Any) -> None:
    """The inpaint and outpaint fields of ``params`` (a GenerationParams being built): each only where its mode
    uses it, each within its rule; what is not given set to its default."""
    used = {
        "mask": params.mode == "inpaint",
        "expand": params.mode == "outpaint",
        "fill": params.mode == "outpaint",
        "mask_blur": params.mode.repaints,
        "inpaint_area": params.mode.repaints,
        "masked_padding": params.mode.repaints,
        "refiner_frac": params.mode.repaints,
        "refine_strength": params.mode.repaints,
    }
    for name, allowed in used.items():
        if getattr(params, name) is not None and not allowed:
            raise ConfigError(f"{name} is not used by mode {params.mode.value}")
    if params.mode == "inpaint" and params.mask is None and alpha_mask(params.image) is None:
        raise ConfigError(
            "mode inpaint needs a mask (--mask FILE: white, or transparent, is repainted), or an image with "
            "transparent pixels to repaint"
        )
    if params.mode == "outpaint":
        expand = params.expand
        if not isinstance(expand, (tuple, list)) or len(expand) != 4:
            raise ConfigError(f"outpaint needs expand: four pixel counts left, top, right, bottom, got {expand!r}")
        set_field(params, "expand", tuple(expand))
        if any(not is_whole(v, 0) or v % 8 for v in expand) or not any(expand):
            raise ConfigError(f"expand {expand!r}: each side a multiple of 8 pixels >= 0, at least one above 0")
        set_field(params, "fill", enum_value(OutpaintFill, params.fill or OutpaintFill.EDGE, "fill"))
    if params.mode.repaints:
        area = enum_value(InpaintArea, params.inpaint_area or InpaintArea.WHOLE, "inpaint_area")
        set_field(params, "inpaint_area", area)
        if params.masked_padding is not None and params.inpaint_area is not InpaintArea.MASKED:
            raise ConfigError("masked_padding is only used with inpaint_area masked")
        defaults = {"mask_blur": DEFAULT_MASK_BLUR}
        if params.inpaint_area is InpaintArea.MASKED:
            defaults["masked_padding"] = DEFAULT_MASKED_PADDING
        for name, default in defaults.items():
            value = default if getattr(params, name) is None else getattr(params, name)
            if not is_whole(value, 0):
                raise ConfigError(f"{name} {value!r} must be a whole number of pixels >= 0")
            set_field(params, name, value)
        _check_refiner(params)
        whole = params.inpaint_area is InpaintArea.WHOLE
        if whole and params.mode == "outpaint" and (params.width, params.height) != (None, None):
            raise ConfigError(
                "outpaint generates the image plus expand; width and height are only for inpaint_area masked"
            )


def _check_refiner(params: Any) -> None:
    """The refiner's part: taking over at refiner_frac, or refining the result at refine_strength."""
    if params.refiner_frac is not None and params.refine_strength is not None:
        raise ConfigError("give refiner_frac (the refiner finishes) or refine_strength (it refines after), not both")
    if params.refiner_frac is not None:
        check_fraction("refiner_frac", params.refiner_frac, low_closed=False, high_closed=False)
        if params.steps is not None and int(params.steps * params.strength * (1 - params.refiner_frac)) < 1:
            raise ConfigError(
                f"steps {params.steps} with refiner_frac {params.refiner_frac} leaves the refiner no step"
            )
    if params.refine_strength is not None:
        check_fraction("refine_strength", params.refine_strength, low_closed=False, high_closed=True)
        if params.steps is not None and int(params.steps * params.refine_strength) < 1:
            raise ConfigError(f"steps {params.steps} x refine_strength {params.refine_strength} leaves no step")

"""The demo's inpaint and outpaint inputs: the mask painted with the brush or uploaded, and the four expand sliders.

    from ov_sdxl.demo.repaint import repaint_fields
    fields = repaint_fields(Mode.INPAINT, values, limits)   # takes the form's repaint values out of ``values``
    GenerationParams(mode=Mode.INPAINT, **values, **fields)

The Inpaint tab's image editor (``gr.ImageEditor``, files) sends the uploaded image as its background and each
brush layer as a transparent PNG: whatever is painted, in any colour, is repainted. An uploaded mask (white, or
transparent, = repaint) is used instead when there is one. The API's ``/inpaint`` sends an image and a mask file.
"""

from __future__ import annotations

from typing import Any

from ov_sdxl.config import Mode
from ov_sdxl.demo.inputs import DemoLimits, load_upload, whole
from ov_sdxl.errors import ConfigError

SIDES = ("left", "top", "right", "bottom")
EXPAND = tuple(f"expand_{side}" for side in SIDES)  # the form's names of the four sliders
REFINER = ("refiner_frac", "refine_strength")  # the refiner's part; 0 or None: the base alone
FORM = ("editor", "mask", "mask_blur", "inpaint_area", "masked_padding", "fill", *EXPAND, *REFINER)
NO_MASK = "paint over the part to repaint (the brush, on the image), or upload a mask (white = repaint)"


def repaint_fields(mode: Mode, values: dict[str, Any], limits: DemoLimits) -> dict[str, Any]:
    """Take the repaint inputs out of ``values`` (form values by name); return the GenerationParams fields they make
    for ``mode``, none for the other modes. The editor's image becomes ``values["image"]``."""
    form = {name: values.pop(name, None) for name in FORM}
    if not mode.repaints:
        return {}
    fields: dict[str, Any] = {"inpaint_area": form["inpaint_area"] or None}
    for name in ("mask_blur", "masked_padding"):
        if form[name] is not None:
            fields[name] = whole(name, form[name])
    if fields["inpaint_area"] != "masked":
        fields.pop("masked_padding", None)  # the slider of a hidden option is not part of this request
    fields.update({name: float(form[name]) for name in REFINER if form[name]})
    if mode is Mode.OUTPAINT:
        fields["expand"] = tuple(whole(name, form[name] or 0) for name in EXPAND)
        fields["fill"] = form["fill"] or None
        return fields
    background, painted = editor_layers(form["editor"])
    if background is not None:
        values["image"] = background
    if form["mask"] is not None:
        fields["mask"] = load_upload(form["mask"], limits, what="mask", keep_alpha=True)
    elif painted is not None:
        fields["mask"] = painted
    elif values.get("image") is None or not _transparent(values["image"], limits):
        raise ConfigError(NO_MASK)
    return fields


def editor_layers(editor: Any) -> tuple[Any, Any]:
    """``gr.ImageEditor``'s value (files): the background's path, and the strokes of every layer as one L mask
    (255 where painted), or None when nothing is painted."""
    from PIL import Image, ImageChops

    if not isinstance(editor, dict) or not editor.get("background"):
        return None, None
    painted = None
    for path in editor.get("layers") or []:
        with Image.open(path) as layer:
            alpha = layer.convert("RGBA").getchannel("A")
        painted = alpha if painted is None else ImageChops.lighter(painted, alpha)
    if painted is None or painted.getextrema()[1] == 0:
        return editor["background"], None
    return editor["background"], painted


def _transparent(path: Any, limits: DemoLimits) -> bool:
    from ov_sdxl.images import alpha_mask

    return alpha_mask(load_upload(path, limits, keep_alpha=True)) is not None

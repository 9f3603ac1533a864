"""Validation of the configuration dataclasses: every rule raises ConfigError naming the value."""

import pytest
from PIL import Image

from ov_sdxl import ConfigError, ConvertConfig, GenerationParams, Mode, RuntimeConfig, WeightFormat

IMAGE = Image.new("RGB", (64, 64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 1004}, "width 1004 must be a whole number of pixels, at least 64 and a multiple of 8"),
        ({"height": 60}, "height 60 must be"),
        ({"width": 512.0}, "width 512.0 must be"),
        ({"steps": 0}, "steps 0 must be a whole number >= 1"),
        ({"steps": -3}, "steps -3 must be"),
        ({"guidance": -1.0}, "guidance -1.0 must be a number >= 0"),
        ({"num_images": 0}, "num_images 0 must be"),
        ({"seed": -1}, "seed -1 must be a whole number from 0 to 2**64-1"),
        ({"seed": 2**64}, "seed 18446744073709551616 must be"),
        ({"mode": "paint"}, "mode 'paint' is not one of: text2img, img2img, base+refiner, refine"),
        ({"scheduler": "euler-x"}, "scheduler 'euler-x' is unknown; choose one of: euler, euler-a"),
        ({"mode": "img2img"}, "mode img2img needs an input image"),
        ({"mode": "refine", "image": IMAGE, "strength": 0.0}, "strength 0.0 is outside (0, 1]"),
        ({"mode": "img2img", "image": IMAGE, "strength": 1.5}, "strength 1.5 is outside (0, 1]"),
        ({"mode": "img2img", "image": IMAGE, "strength": 0.1, "steps": 5}, "leaves no denoising step"),
        ({"mode": "base+refiner", "high_noise_frac": 1.0}, "high_noise_frac 1.0 is outside (0, 1)"),
        ({"mode": "base+refiner", "high_noise_frac": 0.0}, "high_noise_frac 0.0 is outside (0, 1)"),
        ({"mode": "base+refiner", "high_noise_frac": 0.95, "steps": 4}, "leaves the refiner no step"),
        ({"image": IMAGE}, "mode text2img takes no input image"),
        ({"strength": 0.5}, "strength is only used by the modes with an input image"),
        ({"mode": "inpaint", "image": IMAGE}, "mode inpaint needs a mask (--mask FILE"),
        ({"mode": "img2img", "image": IMAGE, "mask": IMAGE}, "mask is not used by mode img2img"),
        ({"mode": "inpaint", "image": IMAGE, "mask": IMAGE, "expand": (8, 0, 0, 0)}, "expand is not used by"),
        ({"mode": "inpaint", "image": IMAGE, "mask": IMAGE, "mask_blur": -1}, "mask_blur -1 must be a whole"),
        ({"mode": "inpaint", "image": IMAGE, "mask": IMAGE, "inpaint_area": "crop"}, "inpaint_area 'crop' is not"),
        (
            {"mode": "inpaint", "image": IMAGE, "mask": IMAGE, "masked_padding": 8},
            "only used with inpaint_area masked",
        ),
        ({"mode": "outpaint", "image": IMAGE}, "outpaint needs expand: four pixel counts"),
        ({"mode": "outpaint", "image": IMAGE, "expand": (12, 0, 0, 0)}, "each side a multiple of 8 pixels"),
        ({"mode": "outpaint", "image": IMAGE, "expand": (0, 0, 0, 0)}, "at least one above 0"),
        ({"mode": "outpaint", "image": IMAGE, "expand": (8, 0, 0, 0), "fill": "paint"}, "fill 'paint' is not one of"),
        ({"mode": "outpaint", "image": IMAGE, "expand": (8, 0, 0, 0), "width": 512}, "width and height are only for"),
        ({"mode": "text2img", "mask_blur": 4}, "mask_blur is not used by mode text2img"),
        ({"mode": "refine", "image": IMAGE, "refiner_frac": 0.8}, "refiner_frac is not used by mode refine"),
        (
            {"mode": "inpaint", "image": IMAGE, "mask": IMAGE, "refiner_frac": 1.0},
            "refiner_frac 1.0 is outside (0, 1)",
        ),
        ({"mode": "inpaint", "image": IMAGE, "mask": IMAGE, "refiner_frac": 0.8, "refine_strength": 0.3}, "not both"),
        ({"mode": "inpaint", "image": IMAGE, "mask": IMAGE, "refiner_frac": 0.9, "steps": 5}, "leaves the refiner no"),
        ({"mode": "outpaint", "image": IMAGE, "expand": (8, 0, 0, 0), "refine_strength": 0}, "refine_strength 0 is"),
        ({"negative_prompt": 5}, "negative_prompt must be text, got int"),
    ],
)
def test_generation_params_rules(kwargs, message):
    with pytest.raises(ConfigError) as info:
        GenerationParams(prompt="x", **kwargs)
    assert message in str(info.value)


def test_generation_params_defaults_follow_sdxl():
    params = GenerationParams(prompt="")  # None: the runtime fills in the model's own (30 steps, guidance 5.0)
    assert (params.steps, params.guidance, params.width, params.height, params.scheduler) == (None,) * 5
    assert GenerationParams(prompt="x", mode="img2img", image=IMAGE).strength == 0.6
    assert GenerationParams(prompt="x", mode=Mode.REFINE, image=IMAGE).strength == 0.3
    assert GenerationParams(prompt="x", mode="base+refiner").high_noise_frac == 0.8
    inpaint = GenerationParams(prompt="x", mode="inpaint", image=IMAGE, mask=IMAGE)
    assert (inpaint.strength, inpaint.mask_blur, inpaint.inpaint_area, inpaint.masked_padding) == (
        0.99,
        4,
        "whole",
        None,
    )
    masked = GenerationParams(prompt="x", mode="inpaint", image=IMAGE, mask=IMAGE, inpaint_area="masked")
    assert masked.masked_padding == 32 and masked.with_defaults(steps=30, guidance=5.0) == masked.with_defaults(
        30, 5.0
    )
    outpaint = GenerationParams(prompt="x", mode="outpaint", image=IMAGE, expand=[8, 0, 16, 0])
    assert (outpaint.expand, outpaint.fill, outpaint.strength) == ((8, 0, 16, 0), "edge", 0.99)
    transparent = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    assert GenerationParams(prompt="x", mode="inpaint", image=transparent).mask is None  # the alpha is the mask


def test_prompt_must_be_text():
    with pytest.raises(ConfigError, match="prompt must be text"):
        GenerationParams(prompt=None)
    with pytest.raises(ConfigError, match="prompt must be text, got list"):
        GenerationParams(prompt=["a", "b"])


def test_convert_and_runtime_configs():
    config = ConvertConfig(base="owner/model", output="out", weights="int8")
    assert config.weights is WeightFormat.INT8 and config.output.name == "out"
    with pytest.raises(ConfigError, match="weight format 'int3' is not one of: fp32, fp16, int8, int4"):
        ConvertConfig(base="owner/model", output="out", weights="int3")
    assert RuntimeConfig(model_dir="m", device=" gpu.1 ").device == "GPU.1"
    with pytest.raises(ConfigError, match="precision 'f8' is not one of"):
        RuntimeConfig(model_dir="m", precision="f8")

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
        ({"strength": 0.5}, "strength is only used by img2img and refine"),
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

"""SDXL's invisible watermark: off by default; on, it equals diffusers' watermarked pipeline and decodes back."""

import sys

import pytest
import torch
from conftest import PROMPT, mean_abs_diff
from PIL import Image

from ov_sdxl import ConfigError, SDXLRuntime
from ov_sdxl.cli import main
from ov_sdxl.runtime.watermark import Watermarker, has_watermark

STEPS, SEED, SIZE = 4, 5, {"width": 256, "height": 256}  # the watermark needs 256x256 pixels at least


@pytest.fixture(scope="module")
def wm_runtime(tiny_model, ov_cache):
    """A second runtime, watermarking; its models are the shared runtime's (compiled ones come from the cache)."""
    return SDXLRuntime.from_dir(tiny_model, precision="f32", cache_dir=ov_cache, watermark=True)


def decoded_bits(image):
    """What invisible-watermark's own decoder reads from ``image`` (48 bits, dwtDct), as diffusers' docs do."""
    import numpy as np
    from imwatermark import WatermarkDecoder

    return list(WatermarkDecoder("bits", 48).decode(np.asarray(image)[:, :, ::-1], "dwtDct"))


def test_watermark_matches_diffusers_and_decodes(wm_runtime, runtime, tiny_sources):
    from diffusers import StableDiffusionXLPipeline
    from diffusers.pipelines.stable_diffusion_xl.watermark import WATERMARK_BITS

    marked = wm_runtime.text2img(PROMPT, steps=STEPS, seed=SEED, **SIZE)
    plain = runtime.text2img(PROMPT, steps=STEPS, seed=SEED, **SIZE)
    # diffusers watermarks by default when invisible-watermark is installed: both choices are made explicit here
    reference = StableDiffusionXLPipeline.from_pretrained(tiny_sources[0], add_watermarker=True)
    reference.set_progress_bar_config(disable=True)
    call = {"num_inference_steps": STEPS, "guidance_scale": 5.0, **SIZE}
    theirs = reference(PROMPT, generator=torch.Generator().manual_seed(SEED), **call).images[0]
    reference.watermark = None  # as add_watermarker=False leaves it
    unmarked = reference(PROMPT, generator=torch.Generator().manual_seed(SEED), **call).images[0]

    assert mean_abs_diff(marked.images[0], theirs) <= 2.0  # diffusers' own watermarked SDXL pipeline
    assert decoded_bits(marked.images[0]) == WATERMARK_BITS and has_watermark(marked.images[0])
    assert decoded_bits(theirs) == WATERMARK_BITS
    assert marked.metadata()["watermark"] == "invisible-watermark dwtDct, SDXL's 48-bit message"
    # off by default: the image is diffusers' unwatermarked one, and carries no message
    assert mean_abs_diff(plain.images[0], unmarked) <= 2.0
    assert decoded_bits(plain.images[0]) != WATERMARK_BITS and not has_watermark(plain.images[0])
    assert "watermark" not in plain.metadata()
    assert 0 < mean_abs_diff(marked.images[0], plain.images[0]) < 8  # a few levels (5 on these noise-like images)


def test_sizes_the_watermark_cannot_take_are_refused_before_any_work(wm_runtime):
    for width, height in ((128, 256), (256, 128)):
        with pytest.raises(ConfigError, match=f"at least 256 pixels wide and 65536 pixels in all.*{width}x{height}"):
            wm_runtime.text2img(PROMPT, steps=1, width=width, height=height)


def test_without_the_package_the_error_says_what_to_install(tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "imwatermark", None)  # as if invisible-watermark were not installed
    with pytest.raises(
        ConfigError, match=r"needs the invisible-watermark package.*pip install \"ov-sdxl\[watermark\]"
    ):
        Watermarker()
    args = ["generate", "--model", tiny_model, "--prompt", "a fox", "--watermark", "--output", tmp_path / "x.png"]
    assert main([str(a) for a in args]) == 2
    assert "error: the watermark needs the invisible-watermark package" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_cli_and_demo_watermark(tiny_model, ov_cache, wm_runtime, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OV_SDXL_CACHE_DIR", str(ov_cache))
    output = tmp_path / "marked.png"
    args = ["generate", "--model", tiny_model, "--prompt", PROMPT, "--steps", "2", "--width", "256", "--height", "256"]
    args += ["--seed", "4"]
    assert main([str(a) for a in [*args, "--precision", "f32", "--watermark", "--output", output]]) == 0
    capsys.readouterr()
    assert has_watermark(Image.open(output)) and "watermark" in Image.open(output).text

    from ov_sdxl.demo import build_demo

    config = build_demo(wm_runtime, output_dir=tmp_path / "demo").get_config_file()
    texts = [c["props"].get("value") or "" for c in config["components"] if c["type"] == "markdown"]
    assert any("invisible watermark" in text for text in texts)

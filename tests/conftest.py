"""Shared fixtures: the tiny SDXL sources and their conversion, built once per test run, fully offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # an accidental download fails fast
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

PROMPT = "a photo of an astronaut riding a horse"
TWO_PROMPTS = "# two prompts\na lighthouse at dusk, oil painting\n\nportrait photo of a fisherman, soft light\n"


@pytest.fixture(scope="session", autouse=True)
def _compiled_model_cache(tmp_path_factory):
    """Runtimes built without an explicit cache_dir (the CLI's) cache compiled models here, not in ~/.cache."""
    os.environ["OV_SDXL_CACHE_DIR"] = str(tmp_path_factory.mktemp("ov-cache-default"))


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory):
    """Diffusers folders (PyTorch, safetensors) of the tiny base and refiner."""
    from ov_sdxl.testing import build_tiny_sources

    return build_tiny_sources(tmp_path_factory.mktemp("tiny-src"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """The converted tiny model (fp32), built as `ov-sdxl tiny` builds it: from its own, identical sources."""
    from ov_sdxl.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", weights="fp32")


@pytest.fixture(scope="session")
def tiny_hybrid_model(tiny_sources, tmp_path_factory):
    """The tiny base + refiner (and TAESDXL) converted with --weights hybrid-int8 by the CLI, calibrated on two
    prompts."""
    from ov_sdxl.cli import main

    base_dir, refiner_dir = tiny_sources
    folder = tmp_path_factory.mktemp("hybrid")
    prompts = folder / "prompts.txt"
    prompts.write_text(TWO_PROMPTS, encoding="utf-8")
    os.environ["HF_DATASETS_OFFLINE"] = "1"  # the children inherit it: a caption dataset download would fail
    argv = ["convert", "--base", base_dir, "--refiner", refiner_dir, "--output", folder / "model"]
    argv += ["--taesdxl", base_dir.parent / "taesdxl"]  # the tiny TAESDXL build_tiny_sources wrote
    code = main([str(a) for a in [*argv, "--weights", "hybrid-int8", "--calibration-prompts", prompts]])
    assert code == 0
    return folder / "model", prompts


@pytest.fixture(scope="session")
def ov_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ov-cache")


@pytest.fixture(scope="session")
def runtime(tiny_model, ov_cache):
    """One runtime for the whole run, in f32 so it can be compared with diffusers' PyTorch f32."""
    from ov_sdxl import SDXLRuntime

    return SDXLRuntime.from_dir(tiny_model, device="CPU", precision="f32", cache_dir=ov_cache)


@pytest.fixture(scope="session")
def torch_pipes(tiny_sources):
    """diffusers' own PyTorch pipelines on the same tiny weights: base, base-as-img2img, base-as-inpaint, refiner.

    Without the watermark, which diffusers adds by default whenever invisible-watermark is installed (ours is off
    by default, and tests/runtime/test_watermark.py compares the two with it on)."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline

    base_dir, refiner_dir = tiny_sources
    base = StableDiffusionXLPipeline.from_pretrained(base_dir, add_watermarker=False)
    img2img = StableDiffusionXLImg2ImgPipeline(**base.components, add_watermarker=False)
    inpaint = StableDiffusionXLInpaintPipeline(**base.components, add_watermarker=False)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(refiner_dir, add_watermarker=False)
    for pipe in (base, img2img, inpaint, refiner):
        pipe.set_progress_bar_config(disable=True)
    return {"base": base, "img2img": img2img, "inpaint": inpaint, "refiner": refiner}


@pytest.fixture(scope="session")
def start_image(runtime):
    """A 128x96 image made by the tiny model itself, the input of img2img and refine tests."""
    return runtime.text2img(PROMPT, steps=4, seed=11, width=128, height=96).images[0]


def mean_abs_diff(a, b) -> float:
    """Mean absolute difference of two images, in 0..255 units."""
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())

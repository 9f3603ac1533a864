"""TAESDXL (``vae="taesdxl"``): parity with diffusers' pipelines decoding with AutoencoderTiny, previews, errors."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import PROMPT, mean_abs_diff

from ov_sdxl import ConfigError, ModelNotFoundError, SDXLRuntime
from ov_sdxl.cli import main
from ov_sdxl.config import ConvertConfig
from ov_sdxl.convert import convert_models
from ov_sdxl.layout import MANIFEST_NAME, ModelLayout
from ov_sdxl.testing import TINY_SOURCES

# Mean absolute difference, in 0..255 units. The tiny random TAESDXL's images vary little (std about 5), so the
# issue's 2/255 would not tell two seeds apart (3.3 apart): both sides run in f32, and 0.5 is asked.
PARITY = 0.5
STEPS, SEED, SIZE = 6, 3, {"width": 128, "height": 96}


@pytest.fixture(scope="module")
def tiny_vae_runtime(tiny_model, ov_cache):
    return SDXLRuntime.from_dir(tiny_model, precision="f32", cache_dir=ov_cache, vae="taesdxl")


@pytest.fixture(scope="module")
def taesdxl(tiny_sources):
    from diffusers import AutoencoderTiny

    return AutoencoderTiny.from_pretrained(tiny_sources[0].parent / "taesdxl").eval()


def _with(pipe, vae):
    """diffusers' pipeline of the same class on the same parts, decoding with ``vae``."""
    twin = pipe.__class__.from_pipe(pipe, vae=vae)
    twin.set_progress_bar_config(disable=True)
    return twin


def test_the_decoder_alone_matches_autoencoder_tiny(tiny_vae_runtime, taesdxl):
    latents = torch.randn(2, 4, 12, 16, generator=torch.Generator().manual_seed(0)) * 2
    ours = tiny_vae_runtime.tiny_decoder.decode(latents)
    with torch.no_grad():
        theirs = taesdxl.decode(latents).sample
    assert ours.shape == theirs.shape == (2, 3, 96, 128)
    assert theirs.std() > 0.05 and float((ours - theirs).abs().max()) < 1e-3


def test_text2img_matches_diffusers_with_autoencoder_tiny(tiny_vae_runtime, torch_pipes, taesdxl):
    ours = tiny_vae_runtime.text2img(PROMPT, steps=STEPS, seed=SEED, **SIZE)
    generator = torch.Generator("cpu").manual_seed(SEED)
    theirs = _with(torch_pipes["base"], taesdxl)(PROMPT, num_inference_steps=STEPS, generator=generator, **SIZE)
    assert np.asarray(theirs.images[0]).std() > 1, "the reference image is flat: the comparison would prove nothing"
    assert mean_abs_diff(ours.images[0], theirs.images[0]) <= PARITY
    assert ours.metadata()["vae"] == "taesdxl"


def test_base_then_refiner_matches_diffusers_with_autoencoder_tiny(tiny_vae_runtime, torch_pipes, taesdxl):
    ours = tiny_vae_runtime.base_then_refiner(PROMPT, steps=10, seed=SEED, high_noise_frac=0.8, **SIZE)
    gen = torch.Generator("cpu").manual_seed(SEED)
    latents = torch_pipes["base"](
        PROMPT, num_inference_steps=10, denoising_end=0.8, output_type="latent", generator=gen, **SIZE
    ).images
    refiner = _with(torch_pipes["refiner"], taesdxl)
    theirs = refiner(PROMPT, image=latents, num_inference_steps=10, denoising_start=0.8, generator=gen)
    assert mean_abs_diff(ours.images[0], theirs.images[0]) <= PARITY


def test_previews_are_taesdxl_pictures_at_half_size_and_change_nothing(tiny_vae_runtime, runtime, taesdxl):
    seen = []
    tiny = tiny_vae_runtime.text2img(PROMPT, steps=STEPS, seed=SEED, preview=lambda *e: seen.append(e), **SIZE)
    assert [step for _, step, _ in seen] == list(range(1, STEPS + 1))
    assert {images[0].size for _, _, images in seen} == {(64, 48)}  # half the image's side
    alone = tiny_vae_runtime.text2img(PROMPT, steps=STEPS, seed=SEED, **SIZE)
    assert mean_abs_diff(alone.images[0], tiny.images[0]) == 0
    plain = runtime.text2img(PROMPT, steps=STEPS, seed=SEED, **SIZE)  # the full VAE's decode of the same run
    assert "vae" not in plain.metadata() and mean_abs_diff(plain.images[0], tiny.images[0]) > 1
    latents = torch.randn(1, 4, 13, 16, generator=torch.Generator().manual_seed(1))
    (preview,) = tiny_vae_runtime.tiny_decoder.preview(latents)
    with torch.no_grad():
        expected = taesdxl.decode(torch.nn.functional.avg_pool2d(latents, 2, ceil_mode=True)).sample
    assert preview.size == (64, 56)
    pixels = ((expected[0] + 1) * 127.5).clamp(0, 255).permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(preview, dtype=np.float32) - pixels).mean() < 0.5


def test_img2img_encodes_with_the_full_vae(tiny_vae_runtime, start_image):
    result = tiny_vae_runtime.img2img(PROMPT, image=start_image, steps=STEPS, seed=SEED)
    assert result.images[0].size == start_image.size and result.metadata()["vae"] == "taesdxl"


def _without_taesdxl(model, folder):
    shutil.copytree(model, folder)
    shutil.rmtree(folder / "taesdxl")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    del manifest["sources"]["taesdxl"]
    manifest["files"] = {rel: entry for rel, entry in manifest["files"].items() if not rel.startswith("taesdxl/")}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder


def test_a_model_without_taesdxl_says_how_to_add_it(tiny_model, tmp_path):
    model = _without_taesdxl(tiny_model, tmp_path / "model")
    assert ModelLayout.open(model).tiny_vae is None
    hint = "has no TAESDXL; add it with: python convert.py --output .* --taesdxl madebyollin/taesdxl"
    with pytest.raises(ModelNotFoundError, match=hint):
        SDXLRuntime.from_dir(model, vae="taesdxl")
    with pytest.raises(ConfigError, match="vae 'tiny' is not one of: full, taesdxl"):
        SDXLRuntime.from_dir(model, vae="tiny")


def test_taesdxl_is_added_to_a_converted_model_alone(tiny_model, tiny_sources, tmp_path):
    model = _without_taesdxl(tiny_model, tmp_path / "model")
    unet = model / "base" / "unet" / "openvino_model.bin"
    before = unet.stat().st_mtime_ns
    base, refiner = tiny_sources
    taesdxl = str(base.parent / "taesdxl")
    config = ConvertConfig(base=str(base), refiner=str(refiner), output=model, weights="fp32", taesdxl=taesdxl)
    result = convert_models(config, source_labels=TINY_SOURCES)
    assert not result.skipped and [part["stage"] for part in result.parts] == ["taesdxl"]
    assert unet.stat().st_mtime_ns == before  # nothing else was exported again
    layout = ModelLayout.open(model)
    assert layout.tiny_vae == model / "taesdxl" / "vae_decoder" and layout.verify() == []
    assert layout.manifest["sources"] == TINY_SOURCES
    assert convert_models(config, source_labels=TINY_SOURCES).skipped  # and a second run does nothing


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda src: src / "base", "has no config.json; it is not a diffusers AutoencoderTiny"),
        (lambda src: src / "base" / "vae", "its config.json is for AutoencoderKL, not AutoencoderTiny"),
        (lambda src: src / "nowhere", "is neither an existing folder nor a hub id"),
        (lambda src: src / "base" / "vae" / "config.json", "is a file; give the folder that holds its config.json"),
    ],
)
def test_what_is_not_taesdxl_is_refused_by_name(tiny_sources, tmp_path, make, message):
    source = make(tiny_sources[0].parent)
    config = ConvertConfig(base=str(tiny_sources[0]), output=tmp_path / "model", taesdxl=str(source))
    with pytest.raises((ConfigError, ModelNotFoundError), match=message):
        convert_models(config)
    assert not (tmp_path / "model").exists() and not list(tmp_path.glob(".model*"))


def test_cli_generate_with_taesdxl_records_it(tiny_model, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "fox.png"
    argv = ["generate", "--model", str(tiny_model), "--prompt", "a fox", "--steps", "3", "--width", "128"]
    assert main([*argv, "--height", "96", "--seed", "5", "--vae", "taesdxl", "--output", str(out)]) == 0
    assert "decoded by TAESDXL" in capsys.readouterr().out
    with Image.open(out) as image:
        info = dict(image.info)
    assert info["vae"] == "taesdxl" and "--vae taesdxl" in info["regenerate"]


def test_cli_adds_taesdxl_to_a_converted_model_without_base(tiny_model, tiny_sources, tmp_path, capsys):
    model = _without_taesdxl(tiny_model, tmp_path / "model")
    source = str(tiny_sources[0].parent / "taesdxl")
    assert main(["convert", "--output", str(model), "--taesdxl", source]) == 0
    assert f"converted: {model}" in capsys.readouterr().out
    layout = ModelLayout.open(model)
    assert layout.tiny_vae is not None and layout.manifest["sources"]["taesdxl"] == source and layout.verify() == []
    assert main(["convert", "--output", str(model), "--taesdxl", source]) == 0
    assert "already converted" in capsys.readouterr().out
    for argv, message in (
        (["--output", str(tmp_path / "none"), "--taesdxl", source], "adds --taesdxl to a converted model: model fold"),
        (["--output", str(model)], "--base is needed (without it, convert only adds --taesdxl"),
        (["--output", str(model), "--taesdxl", source, "--refiner", source], "--refiner needs --base"),
    ):
        assert main(["convert", *argv]) == 2
        assert message in capsys.readouterr().err

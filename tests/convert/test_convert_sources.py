"""Conversion from the sources SDXL users bring: single-file checkpoints and LoRAs, checked on images.

The single-file test writes the tiny SDXL in Stability AI's original layout and converts it; the LoRA test fuses
tiny LoRA files in both formats. Each compares the converted model's image with diffusers' PyTorch pipeline on the
same weights and seed.
"""

import json

import pytest
from conftest import PROMPT, mean_abs_diff

from ov_sdxl import ConfigError, ConvertConfig, SDXLRuntime, convert_models
from ov_sdxl.layout import MANIFEST_NAME

pytestmark = pytest.mark.slow
SETTINGS = dict(width=128, height=128, steps=4, seed=5, guidance=5.0)


def torch_image(pipe):
    import torch

    generator = torch.Generator("cpu").manual_seed(SETTINGS["seed"])
    return pipe(
        PROMPT,
        width=SETTINGS["width"],
        height=SETTINGS["height"],
        num_inference_steps=SETTINGS["steps"],
        guidance_scale=SETTINGS["guidance"],
        generator=generator,
    ).images[0]


def ov_image(model, cache):
    return SDXLRuntime.from_dir(model, precision="f32", cache_dir=cache).text2img(PROMPT, **SETTINGS).images[0]


def test_single_file_base_and_refiner(tiny_sources, torch_pipes, tmp_path):
    from ov_sdxl.testing.original import write_original_checkpoint

    base, refiner = tiny_sources
    base_file = write_original_checkpoint(base, tmp_path / "tiny-base.safetensors", "base")
    refiner_file = write_original_checkpoint(refiner, tmp_path / "tiny-refiner.safetensors", "refiner")
    config = ConvertConfig(
        base=str(base_file),
        refiner=str(refiner_file),
        output=tmp_path / "model",
        weights="fp32",
        single_file_config=base.parent,  # holds base/ and refiner/: the tiny architecture's configs
    )
    model = convert_models(config).output
    manifest = json.loads((model / MANIFEST_NAME).read_text())
    assert manifest["sources"] == {"base": str(base_file), "refiner": str(refiner_file)}
    assert mean_abs_diff(ov_image(model, tmp_path / "cache"), torch_image(torch_pipes["base"])) <= 2.0
    result = SDXLRuntime.from_dir(model, precision="f32", cache_dir=tmp_path / "cache").base_then_refiner(
        PROMPT, **SETTINGS
    )
    assert result.images[0].size == (128, 128)


def test_single_file_stage_and_config_checks(tiny_sources, tmp_path):
    from ov_sdxl.testing.original import write_original_checkpoint

    base, refiner = tiny_sources
    refiner_file = write_original_checkpoint(refiner, tmp_path / "tiny-refiner.safetensors", "refiner")
    with pytest.raises(ConfigError, match="is an SDXL refiner checkpoint \\(did you swap --base and --refiner\\?\\)"):
        convert_models(ConvertConfig(base=str(refiner_file), output=tmp_path / "m", single_file_config=base.parent))
    with pytest.raises(ConfigError, match="holds no configuration for the refiner"):
        convert_models(
            ConvertConfig(base=str(base), refiner=str(refiner_file), output=tmp_path / "m", single_file_config=base)
        )
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("kind", ["peft", "kohya"])
def test_lora_is_fused_as_diffusers_fuses_it(kind, tiny_sources, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from ov_sdxl.testing.lora_files import write_kohya_lora, write_peft_lora

    base = tiny_sources[0]
    writer = write_peft_lora if kind == "peft" else write_kohya_lora
    lora = writer(base, tmp_path / f"{kind}.safetensors")
    config = ConvertConfig(base=str(base), output=tmp_path / "model", weights="fp32", loras=(f"{lora}:0.8",))
    model = convert_models(config).output

    pipe = StableDiffusionXLPipeline.from_pretrained(base, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    plain = torch_image(pipe)
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
    pipe.fuse_lora(lora_scale=0.8)
    fused = torch_image(pipe)

    ours = ov_image(model, tmp_path / "cache")
    assert mean_abs_diff(ours, fused) <= 2.0, mean_abs_diff(ours, fused)
    assert mean_abs_diff(ours, plain) > 5 * max(mean_abs_diff(ours, fused), 0.5)  # the LoRA really acts
    entry = json.loads((model / MANIFEST_NAME).read_text())["loras"]
    assert [(e["file"], e["scale"]) for e in entry] == [(lora.name, 0.8)] and "unet" in entry[0]["parts"]

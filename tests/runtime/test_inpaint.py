"""Inpainting and outpainting against diffusers' StableDiffusionXLInpaintPipeline on the same tiny weights (with its
own ``apply_overlay`` keeping the pixels outside the mask, as diffusers documents), and their own contracts: mask
conventions, "masked only", outpaint canvases, notes and errors."""

import numpy as np
import pytest
import torch
from conftest import PROMPT, mean_abs_diff
from PIL import Image

from ov_sdxl import ConfigError
from ov_sdxl.runtime.inpaint import SEAM, outpaint_canvas

PARITY = 2.0  # mean absolute difference, in 0..255 units
STEPS, SEED = 6, 3
BOX = (40, 24, 88, 72)  # the repainted rectangle of the 128x96 start image


def generator():
    return torch.Generator("cpu").manual_seed(SEED)


def box_mask(size=(128, 96), box=BOX):
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def blur(mask, radius):
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor.blur(mask, radius)


def region(image, box):
    return np.asarray(image, dtype=np.float32)[box[1] : box[3], box[0] : box[2]]


def outside(image, box):
    """The pixels of ``image`` outside ``box``, flattened."""
    pixels = np.asarray(image, dtype=np.float32).copy()
    keep = np.ones(pixels.shape[:2], dtype=bool)
    keep[box[1] : box[3], box[0] : box[2]] = False
    return pixels[keep]


def test_inpaint_matches_diffusers(runtime, torch_pipes, start_image):
    ours = runtime.inpaint(PROMPT, image=start_image, mask=box_mask(), steps=STEPS, seed=SEED)
    pipe, mask = torch_pipes["inpaint"], blur(box_mask(), 4)  # the default mask blur: 4 px
    theirs = pipe(
        PROMPT,
        image=start_image,
        mask_image=mask,
        strength=0.99,
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        generator=generator(),
        height=96,
        width=128,
    ).images[0]
    theirs = pipe.image_processor.apply_overlay(mask, start_image, theirs)
    assert ours.images[0].size == (128, 96) and (ours.width, ours.height) == (128, 96)
    assert np.asarray(theirs)[30:66, 46:82].std() > 5, "a flat reference would prove nothing"
    assert mean_abs_diff(ours.images[0], theirs) <= PARITY
    assert np.abs(region(ours.images[0], BOX) - region(theirs, BOX)).mean() <= PARITY  # the repainted part alone
    assert np.abs(region(ours.images[0], BOX) - region(start_image, BOX)).mean() > 10  # something was repainted
    metadata = ours.metadata()
    assert metadata["mode"] == "inpaint" and metadata["inpaint_area"] == "whole" and metadata["mask_blur"] == "4"
    assert len(metadata["mask_sha256"]) == 16


def test_masked_only_matches_diffusers_and_keeps_the_rest(runtime, torch_pipes, start_image):
    """ "Masked only": the box and 8 px around it generated at 64x64 and pasted back; the output keeps the input's
    size, and the pixels outside the (unblurred) mask stay the input's."""
    kwargs = {"steps": STEPS, "seed": SEED, "width": 64, "height": 64, "mask_blur": 2}
    ours = runtime.inpaint(
        PROMPT, image=start_image, mask=box_mask(), inpaint_area="masked", masked_padding=8, **kwargs
    )
    pipe, mask = torch_pipes["inpaint"], blur(box_mask(), 2)
    theirs = pipe(
        PROMPT,
        image=start_image,
        mask_image=mask,
        strength=0.99,
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        generator=generator(),
        height=64,
        width=64,
        padding_mask_crop=8,
    ).images[0]  # diffusers pastes the crop back itself (padding_mask_crop)
    assert ours.images[0].size == theirs.size == (128, 96)
    assert mean_abs_diff(ours.images[0], theirs) <= PARITY
    assert np.abs(outside(ours.images[0], BOX) - outside(start_image, BOX)).mean() <= 2.0
    assert np.abs(region(ours.images[0], BOX) - region(start_image, BOX)).mean() > 10
    assert ours.metadata()["generated_at"] == "64x64" and ours.metadata()["masked_padding"] == "8"


def test_transparent_and_white_masks_are_the_same_mask(runtime, start_image):
    white = runtime.inpaint(PROMPT, image=start_image, mask=box_mask(), steps=2, seed=SEED).images[0]
    alpha = Image.new("RGBA", (128, 96), (10, 20, 30, 255))
    alpha.paste((0, 0, 0, 0), BOX)  # transparent = repaint, as OpenAI's image edits take it
    from_mask = runtime.inpaint(PROMPT, image=start_image, mask=alpha, steps=2, seed=SEED).images[0]
    own_alpha = start_image.convert("RGBA")
    own_alpha.putalpha(Image.eval(box_mask(), lambda v: 255 - v))  # no mask: the image's own transparent pixels
    from_image = runtime.inpaint(PROMPT, image=own_alpha, steps=2, seed=SEED).images[0]
    assert mean_abs_diff(white, from_mask) == 0
    keep = outside(from_image, BOX)  # inside, the transparent pixels read as white: a different input there
    assert np.abs(keep - outside(white, BOX)).mean() <= 1.0


def test_mask_notes_and_errors(runtime, start_image):
    small = box_mask((64, 48), (20, 12, 44, 36))
    result = runtime.inpaint(PROMPT, image=start_image, mask=small, steps=2, seed=SEED)
    assert "the mask is 64x48, resized to the image's 128x96" in result.notes
    full = runtime.inpaint(PROMPT, image=start_image, mask=Image.new("L", (128, 96), 255), steps=2, seed=SEED)
    assert any("covers the whole image" in note for note in full.notes)
    with pytest.raises(ConfigError, match="the mask is empty"):
        runtime.inpaint(PROMPT, image=start_image, mask=Image.new("L", (128, 96), 0), steps=2)
    with pytest.raises(ConfigError, match="input image is 100x100; its sides must be multiples of 8"):
        runtime.inpaint(PROMPT, image=Image.new("RGB", (100, 100)), mask=box_mask((100, 100)), steps=2)


def test_outpaint_matches_diffusers_and_keeps_the_original_in_place(runtime, torch_pipes, start_image):
    expand = (32, 0, 32, 16)
    ours = runtime.outpaint(PROMPT, image=start_image, expand=expand, steps=STEPS, seed=SEED, mask_blur=4)
    canvas, mask = outpaint_canvas(start_image, expand, "edge", SEED)
    pipe, mask = torch_pipes["inpaint"], blur(mask, 4)
    theirs = pipe(
        PROMPT,
        image=canvas,
        mask_image=mask,
        strength=0.99,
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        generator=generator(),
        height=112,
        width=192,
    ).images[0]
    theirs = pipe.image_processor.apply_overlay(mask, canvas, theirs)
    assert ours.images[0].size == (192, 112)
    assert mean_abs_diff(ours.images[0], theirs) <= PARITY
    inner = 32 + SEAM + 8, SEAM + 8, 32 + 128 - SEAM - 8, 96 - SEAM - 8  # away from the seam and its blur
    moved = region(ours.images[0], inner)
    original = region(start_image, (inner[0] - 32, inner[1], inner[2] - 32, inner[3]))
    assert np.abs(moved - original).mean() <= 2.0
    assert ours.metadata()["expand"] == "32,0,32,16" and ours.metadata()["fill"] == "edge"


@pytest.mark.parametrize("fill", ["edge", "noise", "blur"])
def test_outpaint_canvas(start_image, fill):
    canvas, mask = outpaint_canvas(start_image, (16, 8, 0, 24), fill, 5)
    assert canvas.size == mask.size == (144, 128)
    pixels, holes = np.asarray(canvas), np.asarray(mask)
    assert (pixels[8:104, 16:144] == np.asarray(start_image)).all()  # the original, in its new place
    assert (holes[:8] == 255).all() and (holes[:, :16] == 255).all() and (holes[104:] == 255).all()
    assert (holes[8 + SEAM : 104 - SEAM, 16 + SEAM :] == 0).all()  # kept: all but the seam on each grown side
    assert (holes[8 : 8 + SEAM, 16 + SEAM :] == 255).all()  # the seam, repainted
    again, _ = outpaint_canvas(start_image, (16, 8, 0, 24), fill, 5)
    assert (np.asarray(again) == pixels).all()  # the noise too follows the seed
    if fill == "edge":
        assert (pixels[:8, 16:144] == np.asarray(start_image)[0]).all()  # the top row stretched up


@pytest.fixture(scope="module")
def refiner_inpaint(tiny_sources):
    """diffusers' inpainting pipeline on the tiny refiner, as its docs load the refiner for the ensemble."""
    from diffusers import StableDiffusionXLInpaintPipeline

    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(tiny_sources[1], add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_inpaint_ensemble_with_the_refiner_matches_diffusers(runtime, torch_pipes, refiner_inpaint, start_image):
    """diffusers' documented base + refiner inpainting: the base to denoising_end, its latents to the refiner's
    inpainting from denoising_start."""
    ours = runtime.inpaint(PROMPT, image=start_image, mask=box_mask(), steps=10, seed=SEED, refiner_frac=0.7)
    mask, gen = blur(box_mask(), 4), generator()
    call = {"mask_image": mask, "strength": 0.99, "num_inference_steps": 10, "guidance_scale": 5.0, "generator": gen}
    call.update(height=96, width=128)
    latents = torch_pipes["inpaint"](PROMPT, image=start_image, denoising_end=0.7, output_type="latent", **call)
    theirs = refiner_inpaint(PROMPT, image=latents.images, denoising_start=0.7, **call).images[0]
    theirs = refiner_inpaint.image_processor.apply_overlay(mask, start_image, theirs)
    assert set(ours.timings) >= {"base", "refiner", "decode"}
    assert mean_abs_diff(ours.images[0], theirs) <= PARITY
    assert np.abs(region(ours.images[0], BOX) - region(theirs, BOX)).mean() <= PARITY
    assert ours.metadata()["refiner_frac"] == "0.7"


def test_refine_strength_repaints_the_masked_part_with_the_refiner(runtime, torch_pipes, refiner_inpaint, start_image):
    ours = runtime.inpaint(PROMPT, image=start_image, mask=box_mask(), steps=STEPS, seed=SEED, refine_strength=0.5)
    mask, gen = blur(box_mask(), 4), generator()
    call = {"mask_image": mask, "num_inference_steps": STEPS, "guidance_scale": 5.0, "generator": gen}
    call.update(height=96, width=128)
    first = torch_pipes["inpaint"](PROMPT, image=start_image, strength=0.99, **call).images[0]
    first = torch_pipes["inpaint"].image_processor.apply_overlay(mask, start_image, first)
    theirs = refiner_inpaint(PROMPT, image=first, strength=0.5, **call).images[0]
    theirs = refiner_inpaint.image_processor.apply_overlay(mask, start_image, theirs)
    assert mean_abs_diff(ours.images[0], theirs) <= PARITY
    assert np.abs(outside(ours.images[0], BOX) - outside(start_image, BOX)).mean() <= 2.0


@pytest.fixture(scope="module")
def inpainting_model(tiny_sources, tmp_path_factory):
    """A tiny SDXL inpainting base (9-channel UNet) as a diffusers folder, and converted by ov-sdxl (fp32)."""
    from ov_sdxl import ConvertConfig, convert_models
    from ov_sdxl.testing import build_tiny_inpainting_source

    root = tmp_path_factory.mktemp("inpainting")
    source = build_tiny_inpainting_source(tiny_sources[0], root / "source")
    convert_models(ConvertConfig(base=str(source), output=root / "model", weights="fp32"))
    return source, root / "model"


def test_an_inpainting_unet_matches_diffusers(inpainting_model, ov_cache, start_image):
    """A dedicated inpainting UNet (9 input channels: latents, mask, the masked image's latents): converted, recorded
    in the manifest, and run through the same inpaint call; text2img is refused with the reason."""
    from diffusers import StableDiffusionXLInpaintPipeline

    from ov_sdxl import SDXLRuntime
    from ov_sdxl.layout import read_manifest

    source, model = inpainting_model
    assert read_manifest(model)["inpainting"] is True
    runtime = SDXLRuntime.from_dir(model, precision="f32", cache_dir=ov_cache)
    ours = runtime.inpaint(PROMPT, image=start_image, mask=box_mask(), steps=STEPS, seed=SEED)
    pipe = StableDiffusionXLInpaintPipeline.from_pretrained(source, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    mask = blur(box_mask(), 4)
    theirs = pipe(
        PROMPT,
        image=start_image,
        mask_image=mask,
        strength=0.99,
        num_inference_steps=STEPS,
        guidance_scale=5.0,
        generator=generator(),
        height=96,
        width=128,
    ).images[0]
    theirs = pipe.image_processor.apply_overlay(mask, start_image, theirs)
    assert pipe.unet.config.in_channels == 9
    assert mean_abs_diff(ours.images[0], theirs) <= PARITY
    assert np.abs(region(ours.images[0], BOX) - region(theirs, BOX)).mean() <= PARITY
    with pytest.raises(ConfigError, match="is an inpainting model .*: it runs inpaint and outpaint, not text2img"):
        runtime.text2img(PROMPT, steps=2)


def test_hybrid_int8_refuses_an_inpainting_base(inpainting_model, tmp_path):
    from ov_sdxl import ConvertConfig, convert_models

    source, _ = inpainting_model
    with pytest.raises(ConfigError, match="is an inpainting model; --weights hybrid-int8 calibrates on text2img"):
        convert_models(ConvertConfig(base=str(source), output=tmp_path / "model", weights="hybrid-int8"))
    assert not (tmp_path / "model").exists()


def test_a_single_file_inpainting_checkpoint_converts_and_runs(inpainting_model, ov_cache, start_image, tmp_path):
    """The same inpainting base written as one original-layout file: recognised by its UNet's 9 input channels,
    converted (its configs from --single-file-config), and making the image the folder's conversion makes."""
    from ov_sdxl import ConvertConfig, SDXLRuntime, convert_models
    from ov_sdxl.layout import read_manifest
    from ov_sdxl.testing import write_original_checkpoint

    source, folder_model = inpainting_model
    checkpoint = write_original_checkpoint(source, tmp_path / "sdxl-inpainting.safetensors", "base")
    config = ConvertConfig(base=str(checkpoint), output=tmp_path / "model", weights="fp32", single_file_config=source)
    convert_models(config)
    assert read_manifest(tmp_path / "model")["inpainting"] is True
    call = {"image": start_image, "mask": box_mask(), "steps": 3, "seed": SEED}
    from_file = SDXLRuntime.from_dir(tmp_path / "model", precision="f32", cache_dir=ov_cache).inpaint(PROMPT, **call)
    from_folder = SDXLRuntime.from_dir(folder_model, precision="f32", cache_dir=ov_cache).inpaint(PROMPT, **call)
    assert mean_abs_diff(from_file.images[0], from_folder.images[0]) <= 0.5

"""The runtime against diffusers' own PyTorch pipelines on the same tiny weights, plus its own contracts."""

import functools
import logging
import shutil
import threading

import numpy as np
import pytest
import torch
from conftest import PROMPT, mean_abs_diff

from ov_sdxl import (
    ConfigError,
    CorruptModelError,
    DeviceNotAvailableError,
    GenerationCancelled,
    GenerationError,
    ModelNotFoundError,
    SDXLRuntime,
)
from ov_sdxl.schedulers import SCHEDULERS

PARITY = 2.0  # mean absolute difference, in 0..255 units: 2/255 of the range
STEPS, SEED, SIZE = 6, 3, {"width": 128, "height": 96}


def generator(seed=SEED):
    return torch.Generator("cpu").manual_seed(seed)


def assert_parity(ours, theirs):
    assert ours.size == theirs.size
    assert np.asarray(theirs).std() > 5, "the reference image is flat: the comparison would prove nothing"
    assert mean_abs_diff(ours, theirs) <= PARITY


def test_text2img_matches_diffusers(runtime, torch_pipes):
    ours = runtime.text2img(PROMPT, steps=STEPS, seed=SEED, **SIZE)
    theirs = torch_pipes["base"](PROMPT, num_inference_steps=STEPS, guidance_scale=5.0, generator=generator(), **SIZE)
    assert ours.seed == SEED and len(ours.images) == 1
    assert_parity(ours.images[0], theirs.images[0])


def test_img2img_matches_diffusers(runtime, torch_pipes, start_image):
    ours = runtime.img2img(PROMPT, image=start_image, steps=STEPS, seed=SEED, strength=0.6)
    theirs = torch_pipes["img2img"](
        PROMPT, image=start_image, strength=0.6, num_inference_steps=STEPS, guidance_scale=5.0, generator=generator()
    )
    assert_parity(ours.images[0], theirs.images[0])


def test_base_then_refiner_matches_diffusers(runtime, torch_pipes):
    ours = runtime.base_then_refiner(PROMPT, steps=10, seed=SEED, high_noise_frac=0.8, **SIZE)
    gen = generator()
    latents = torch_pipes["base"](
        PROMPT, num_inference_steps=10, denoising_end=0.8, output_type="latent", generator=gen, **SIZE
    ).images
    theirs = torch_pipes["refiner"](PROMPT, image=latents, num_inference_steps=10, denoising_start=0.8, generator=gen)
    assert set(ours.timings) >= {"base", "refiner", "total"}
    assert_parity(ours.images[0], theirs.images[0])


def test_refine_matches_diffusers(runtime, torch_pipes, start_image):
    ours = runtime.refine(PROMPT, image=start_image, steps=STEPS, seed=SEED)  # default strength 0.3
    theirs = torch_pipes["refiner"](
        PROMPT, image=start_image, strength=0.3, num_inference_steps=STEPS, generator=generator()
    )
    assert ours.params.strength == 0.3
    assert_parity(ours.images[0], theirs.images[0])


def test_scheduler_names_are_diffusers_classes():
    classes = {name: class_name for name, (class_name, _) in SCHEDULERS.items()}
    assert classes == {
        "euler": "EulerDiscreteScheduler",
        "euler-a": "EulerAncestralDiscreteScheduler",
        "euler-trailing": "EulerDiscreteScheduler",
        "euler-a-trailing": "EulerAncestralDiscreteScheduler",
        "dpm++2m": "DPMSolverMultistepScheduler",
        "dpm++2m-karras": "DPMSolverMultistepScheduler",
        "dpm++2m-sde-karras": "DPMSolverMultistepScheduler",
        "ddim": "DDIMScheduler",
        "unipc": "UniPCMultistepScheduler",
        "heun": "HeunDiscreteScheduler",
        "lms": "LMSDiscreteScheduler",
        "lcm": "LCMScheduler",
    }
    assert SCHEDULERS["dpm++2m-karras"][1]["use_karras_sigmas"] is True


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_named_scheduler_and_batch_match_diffusers(runtime, torch_pipes, scheduler):
    """Each name gives diffusers' scheduler of that name, built from the model's config, on two images (each with
    its own generator, seeded seed and seed + 1)."""
    import diffusers

    ours = runtime.text2img(PROMPT, steps=STEPS, seed=SEED, num_images=2, scheduler=scheduler, **SIZE)
    pipe = torch_pipes["base"]
    original = pipe.scheduler
    class_name, settings = SCHEDULERS[scheduler]
    pipe.scheduler = getattr(diffusers, class_name).from_config(original.config, **settings)
    try:
        generators = [generator(SEED), generator(SEED + 1)]
        theirs = pipe(PROMPT, num_inference_steps=STEPS, num_images_per_prompt=2, generator=generators, **SIZE)
    finally:
        pipe.scheduler = original
    assert len(ours.images) == 2
    for mine, reference in zip(ours.images, theirs.images, strict=True):
        assert_parity(mine, reference)


def test_guidance_off_matches_diffusers(runtime, torch_pipes):
    ours = runtime.text2img(PROMPT, steps=STEPS, seed=SEED, guidance=1.0, **SIZE)
    theirs = torch_pipes["base"](PROMPT, num_inference_steps=STEPS, guidance_scale=1.0, generator=generator(), **SIZE)
    assert_parity(ours.images[0], theirs.images[0])


def test_seeds(runtime):
    first = runtime.text2img(PROMPT, steps=3, seed=5, **SIZE).images[0]
    again = runtime.text2img(PROMPT, steps=3, seed=5, **SIZE).images[0]
    other = runtime.text2img(PROMPT, steps=3, seed=6, **SIZE).images[0]
    assert mean_abs_diff(first, again) == 0
    assert mean_abs_diff(first, other) > 5
    drawn = runtime.text2img(PROMPT, steps=2, **SIZE)
    assert 0 <= drawn.seed < 2**64 and drawn.metadata()["seed"] == str(drawn.seed)


@pytest.mark.parametrize("mode", ["text2img", "img2img", "base+refiner"])
def test_each_image_of_a_batch_is_reproduced_alone(runtime, start_image, mode):
    """Image i of a batch comes out the same from its own recorded seed with num_images=1 (the batch shapes the
    UNet differently, so equal within float rounding), and its metadata says how."""
    from ov_sdxl import GenerationParams

    image = {"image": start_image, "width": 128, "height": 96} if mode == "img2img" else SIZE
    batch = runtime.generate(GenerationParams(PROMPT, mode=mode, steps=4, seed=2**64 - 1, num_images=3, **image))
    assert batch.seeds == [2**64 - 1, 0, 1]
    second = batch.metadata(1)
    assert second["seed"] == "0" and second["batch"] == f"image 2 of 3, batch seed {2**64 - 1}; alone: seed 0"
    alone = runtime.generate(GenerationParams(PROMPT, mode=mode, steps=4, seed=int(second["seed"]), **image))
    assert mean_abs_diff(alone.images[0], batch.images[1]) < 0.5
    assert mean_abs_diff(batch.images[0], batch.images[1]) > 5  # each image its own noise
    assert "batch" not in alone.metadata(0)


def test_the_python_api_prints_nothing(tiny_model, ov_cache):
    """No line from the libraries (import notices, deprecations) nor from ov-sdxl: the API logs through logging."""
    import subprocess
    import sys

    script = (
        "import sys; from ov_sdxl import SDXLRuntime; "
        "SDXLRuntime.from_dir(sys.argv[1], cache_dir=sys.argv[2], precision='f32')"
        ".text2img('x', steps=2, width=64, height=64, seed=1)"
    )
    done = subprocess.run([sys.executable, "-c", script, tiny_model, ov_cache], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done


def test_the_models_own_scheduler_is_named(runtime):
    assert runtime.text2img(PROMPT, steps=2, **SIZE).metadata()["scheduler"] == "euler"


def test_static_shapes_follow_each_request(runtime, caplog):
    caplog.set_level(logging.DEBUG, logger="ov_sdxl")
    assert runtime.text2img(PROMPT, steps=2, seed=1, width=64, height=80).images[0].size == (64, 80)
    unet = runtime.pipelines.base.unet.model
    assert [tuple(p.get_shape()) for p in unet.inputs if p.get_any_name() == "sample"] == [(2, 4, 10, 8)]
    assert "shaping base unet" in caplog.text
    caplog.clear()
    assert runtime.text2img(PROMPT, steps=2, seed=2, width=64, height=80).images[0].size == (64, 80)
    assert "shaping" not in caplog.text  # same shape: no reshape, no recompile
    assert runtime.text2img(PROMPT, steps=2, seed=1, **SIZE).images[0].size == (128, 96)


def test_default_size_is_the_models_native_size(runtime):
    assert runtime.native_size == (512, 512)  # the tiny UNet's sample size 64 x the VAE's 8


def test_parts_are_loaded_once(runtime):
    pipes = runtime.pipelines
    for name in ("unet", "vae_decoder", "vae_encoder", "text_encoder", "text_encoder_2"):
        assert getattr(pipes.img2img, name) is getattr(pipes.base, name)
    for name in ("text_encoder_2", "vae_decoder", "vae_encoder"):
        assert getattr(pipes.refiner, name) is getattr(pipes.base, name)
    assert pipes.refiner.unet is not pipes.base.unet


def test_progress_and_cancel(runtime):
    seen = []
    runtime.text2img(PROMPT, steps=4, seed=1, progress=lambda *event: seen.append(event), **SIZE)
    assert seen == [("base", i, 4) for i in range(1, 5)]

    cancel = threading.Event()
    steps = []

    def stop_at_two(stage, step, total):
        steps.append(step)
        if step == 2:
            cancel.set()

    with pytest.raises(GenerationCancelled):
        runtime.text2img(PROMPT, steps=20, seed=1, progress=stop_at_two, cancel=cancel, **SIZE)
    assert steps == [1, 2]  # stopped within one step
    assert runtime.text2img(PROMPT, steps=2, seed=1, **SIZE).images  # still usable afterwards


def test_input_image_size_rules(runtime, start_image):
    odd = start_image.resize((100, 90))
    with pytest.raises(ConfigError, match="input image is 100x90; its sides must be multiples of 8"):
        runtime.img2img(PROMPT, image=odd, steps=4, seed=1)
    resized = runtime.img2img(PROMPT, image=odd, steps=4, seed=1, width=96, height=96)
    assert resized.images[0].size == (96, 96)
    rgba = start_image.convert("RGBA")
    assert runtime.refine(PROMPT, image=rgba, steps=4, seed=1).images[0].mode == "RGB"


def test_unavailable_device(tiny_model):
    with pytest.raises(DeviceNotAvailableError, match="device GPU is not available; this machine has: CPU"):
        SDXLRuntime.from_dir(tiny_model, device="GPU")


def test_missing_model_and_sub_model(tiny_model, tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist; convert one with: python convert.py"):
        SDXLRuntime.from_dir(tmp_path / "nope")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    shutil.rmtree(copy / "refiner")
    with pytest.raises(ModelNotFoundError, match="sub-model .*refiner is missing"):
        SDXLRuntime.from_dir(copy)


def test_base_only_model_refuses_refiner_modes(tiny_model, tmp_path):
    from ov_sdxl.layout import MANIFEST_NAME

    copy = tmp_path / "plain"
    shutil.copytree(tiny_model / "base", copy)  # a plain optimum-intel export: no manifest
    runtime = SDXLRuntime.from_dir(copy, precision="f32", use_cache=False)
    assert not (copy / MANIFEST_NAME).exists() and runtime.text2img(PROMPT, steps=2, seed=1, **SIZE).images
    with pytest.raises(ModelNotFoundError, match="mode base\\+refiner needs a refiner"):
        runtime.base_then_refiner(PROMPT, steps=4, **SIZE)


def test_truncated_and_broken_ir(tiny_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    weights = copy / "base" / "unet" / "openvino_model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CorruptModelError, match="openvino_model.bin is 1000 bytes, the manifest says"):
        SDXLRuntime.from_dir(copy)
    shutil.copy(tiny_model / "base" / "unet" / "openvino_model.bin", weights)
    xml = copy / "base" / "unet" / "openvino_model.xml"
    xml.write_bytes(b"x" * xml.stat().st_size)  # same size, broken content: found when the IR is read
    runtime = SDXLRuntime.from_dir(copy, use_cache=False)
    with pytest.raises(CorruptModelError, match="cannot load the model in .*base"):
        runtime.text2img(PROMPT, steps=2, **SIZE)


def test_two_stage_can_keep_the_base_images(runtime, torch_pipes):
    result = runtime.base_then_refiner(PROMPT, steps=10, seed=SEED, keep_base_images=True, **SIZE)
    plain = runtime.base_then_refiner(PROMPT, steps=10, seed=SEED, **SIZE)
    assert plain.base_images == [] and mean_abs_diff(result.images[0], plain.images[0]) == 0
    theirs = torch_pipes["base"](PROMPT, num_inference_steps=10, denoising_end=0.8, generator=generator(), **SIZE)
    assert len(result.base_images) == 1
    assert_parity(result.base_images[0], theirs.images[0])  # the base's own image, as diffusers decodes it


def test_limits_refuse_before_any_work(tiny_model, ov_cache):
    small = SDXLRuntime.from_dir(tiny_model, cache_dir=ov_cache, max_pixels=128 * 128, max_steps=10, max_images=2)
    with pytest.raises(ConfigError, match="136x128 is 17408 pixels, over the limit of 16384; raise it with --max-pix"):
        small.text2img(PROMPT, width=136, height=128)
    with pytest.raises(ConfigError, match="steps 11, over the limit of 10; raise it with --max-steps"):
        small.text2img(PROMPT, steps=11, width=64, height=64)
    with pytest.raises(ConfigError, match=r"num_images 3, over the limit of 2; raise it with --max-images \(Runtime"):
        small.text2img(PROMPT, steps=2, num_images=3, width=64, height=64)
    with pytest.raises(ConfigError, match="2048x2048 is 4194304 pixels"):
        small.text2img(PROMPT, steps=2, width=2048, height=2048)
    assert "base" not in small.pipelines._pipes  # refused before loading anything


def test_empty_and_long_prompts(runtime):
    assert runtime.text2img("", steps=2, seed=1, **SIZE).images[0].size == (128, 96)
    long = "a horse " * 40 + "under a lighthouse at dusk"  # 87 tokens: encoded in two windows, nothing cut
    result = runtime.text2img(long, steps=2, seed=1, negative_prompt="blurry", **SIZE)
    assert result.notes == [] and result.images[0].size == (128, 96)


def test_nan_from_the_vae_is_caught(runtime, monkeypatch):
    """Latents that overflow the VAE give a clear error, never a black or NaN picture."""
    import ov_sdxl.runtime.decode as decode

    pipe = runtime.pipelines.base
    latents = torch.full((1, 4, 12, 16), float("nan"))
    with pytest.raises(GenerationError, match="the VAE produced NaN or infinite values, already in f32"):
        decode.decode_latents(pipe, latents, None)
    with pytest.raises(GenerationError, match="and NaN or infinite values again in f32"):
        decode.decode_latents(pipe, latents, functools.partial(runtime.pipelines.decode_f32, pipe))
    good = torch.zeros((1, 4, 12, 16))
    real_decode = pipe.vae.decode
    monkeypatch.setattr(pipe.vae, "decode", lambda z, return_dict=False: (real_decode(z)[0] * float("nan"),))
    images, note = decode.decode_latents(pipe, good, lambda z: real_decode(z)[0])
    assert images[0].size == (128, 96) and "re-run in f32" in note


def test_manifest_from_another_version(tiny_model, tmp_path):
    import json

    copy = tmp_path / "old"
    shutil.copytree(tiny_model, copy)
    manifest = json.loads((copy / "ov_sdxl.json").read_text())
    (copy / "ov_sdxl.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(CorruptModelError, match="has manifest format 99, this ov-sdxl reads format 1; reconvert"):
        SDXLRuntime.from_dir(copy)


def test_black_and_nan_images_are_named():
    from ov_sdxl.runtime.decode import problem

    assert problem(torch.full((1, 3, 8, 8), -1.0)) == "an entirely black image"
    assert problem(torch.full((1, 3, 8, 8), float("inf"))) == "NaN or infinite values"
    assert problem(torch.zeros((1, 3, 8, 8))) is None


def mapped_kb(*folders):
    """Resident kB of this process's mappings of files below ``folders`` (the IR's weights, cache blobs)."""
    roots, total, current = tuple(str(f.resolve()) + "/" for f in folders), 0, False
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as smaps:
        for line in smaps:
            head = line.split()
            if "-" in head[0] and len(head) >= 5:
                current = len(head) >= 6 and head[5].startswith(roots)
            elif current and head[0] == "Rss:":
                total += int(head[1])
    return total


def test_mapped_weights_are_given_back_once_compiled_and_run(tiny_model, tmp_path):
    """The compiled models hold their own copy of the weights: the pages read from the IR (cold cache) or from
    the cache blob (warm cache) are given back, not kept resident next to it."""
    model, cache = shutil.copytree(tiny_model, tmp_path / "model"), tmp_path / "compiled"  # mapped by this test only
    weights = sum(f.stat().st_size for f in (model / "base").rglob("*.bin")) // 1024
    for start in ("cold cache", "warm cache"):
        runtime = SDXLRuntime.from_dir(model, cache_dir=cache)
        runtime.text2img(PROMPT, steps=2, seed=SEED, **SIZE)
        assert any(cache.iterdir())
        # before this was done: 43% of the base's weights resident (cold), 112% (warm); with it: 2%, 0.3%
        assert mapped_kb(model, cache) < 0.1 * weights, start


def test_one_shot_gives_the_base_unet_back_before_the_refiner(tiny_model, ov_cache, runtime, caplog):
    """``ov-sdxl generate`` (one request per process): the base's compiled UNet is released before the refiner's
    compiles, so the two are never held together; the images are the same; the log says which runtime ran."""
    one_shot = SDXLRuntime.from_dir(tiny_model, precision="f32", cache_dir=ov_cache, one_shot=True)
    with caplog.at_level(logging.DEBUG, logger="ov_sdxl"):
        result = one_shot.base_then_refiner(PROMPT, steps=6, seed=SEED, **SIZE)
        assert "one-shot: giving the base's UNet back" in caplog.text and "long-lived" not in caplog.text
        caplog.clear()
        long_lived = runtime.base_then_refiner(PROMPT, steps=6, seed=SEED, **SIZE)
        assert "long-lived runtime: the base's and the refiner's UNets stay compiled" in caplog.text
    assert one_shot.pipelines.base.unet.request is None and one_shot.pipelines.refiner.unet.request is not None
    assert mean_abs_diff(result.images[0], long_lived.images[0]) == 0
    one_shot.base_then_refiner(PROMPT, steps=6, seed=SEED, cache_interval=3, **SIZE)  # the reuse pair goes too
    assert id(one_shot.pipelines.base.unet) not in one_shot._features._compiled
    assert one_shot._features.last.full is None  # what a call keeps afterwards: its counts, not its models
    with pytest.raises(ConfigError, match="one_shot must be True or False, got 'yes'"):
        SDXLRuntime.from_dir(tiny_model, one_shot="yes")

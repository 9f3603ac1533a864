"""Feature reuse (DeepCache) on OpenVINO: each mode against the DeepCache package on diffusers' PyTorch pipelines,
the exact path unchanged, the cut itself, and bad settings.

The reference is ``DeepCache.DeepCacheSDHelper`` (the paper's own code) wrapped around diffusers' SDXL pipelines on
the same tiny weights and seed; every comparison also checks that reuse changed the image, so that it cannot pass
by running the plain UNet."""

import numpy as np
import pytest
import torch
from conftest import PROMPT, mean_abs_diff

from ov_sdxl import ConfigError, GenerationParams
from ov_sdxl.runtime.feature_cache import CachePlan

SEED, STEPS, SIZE = 3, 10, {"width": 128, "height": 96}


def deepcache(pipe, interval, branch=0, **kwargs):
    """``pipe(**kwargs)`` with DeepCache enabled, as its README does (enable before the call, disable after)."""
    from DeepCache import DeepCacheSDHelper

    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=branch)
    helper.enable()
    try:
        return pipe(generator=torch.Generator().manual_seed(SEED), **kwargs).images
    finally:
        helper.disable()


def plain(pipe, **kwargs):
    return pipe(generator=torch.Generator().manual_seed(SEED), **kwargs).images


def assert_reuse_parity(ours, reference, exact):
    assert np.asarray(reference).std() > 5, "a flat reference would prove nothing"
    assert mean_abs_diff(ours, reference) <= 2.0
    assert mean_abs_diff(reference, exact) > 0.2, "reuse should change the image, or the test proves nothing"


@pytest.mark.parametrize("branch", [0, 2, 4])
def test_text2img_matches_deepcache(runtime, torch_pipes, branch):
    result = runtime.text2img(PROMPT, steps=STEPS, seed=SEED, cache_interval=3, cache_branch=branch, **SIZE)
    kwargs = dict(prompt=PROMPT, num_inference_steps=STEPS, **SIZE)
    reference = deepcache(torch_pipes["base"], 3, branch, **kwargs)[0]
    assert_reuse_parity(result.images[0], reference, plain(torch_pipes["base"], **kwargs)[0])
    assert runtime._features.last.full_steps == 4 and runtime._features.last.shallow_steps == 6
    assert result.metadata()["cache_interval"] == "3" and result.metadata()["cache_branch"] == str(branch)


def test_img2img_and_refine_match_deepcache(runtime, torch_pipes, start_image):
    for mode, pipe, strength in (("img2img", "img2img", 0.6), ("refine", "refiner", 0.5)):
        run = runtime.img2img if mode == "img2img" else runtime.refine
        result = run(PROMPT, image=start_image, strength=strength, steps=STEPS, seed=SEED, cache_interval=3)
        kwargs = dict(prompt=PROMPT, image=start_image, strength=strength, num_inference_steps=STEPS)
        reference = deepcache(torch_pipes[pipe], 3, **kwargs)[0]
        assert_reuse_parity(result.images[0], reference, plain(torch_pipes[pipe], **kwargs)[0])


def test_base_then_refiner_matches_deepcache(runtime, torch_pipes):
    steps, fraction = 15, 0.6  # the refiner gets 6 steps: reuse shows in both stages
    result = runtime.base_then_refiner(
        PROMPT, steps=steps, seed=SEED, high_noise_frac=fraction, cache_interval=3, **SIZE
    )

    def two_stage(run):
        generator = torch.Generator().manual_seed(SEED)
        common = dict(prompt=PROMPT, num_inference_steps=steps)
        latents = run(torch_pipes["base"], generator, **common, denoising_end=fraction, output_type="latent", **SIZE)
        return run(torch_pipes["refiner"], generator, **common, denoising_start=fraction, image=latents)[0]

    def cached(pipe, generator, **kwargs):
        from DeepCache import DeepCacheSDHelper

        helper = DeepCacheSDHelper(pipe=pipe)
        helper.set_params(cache_interval=3, cache_branch_id=0)
        helper.enable()
        try:
            return pipe(generator=generator, **kwargs).images
        finally:
            helper.disable()

    reference = two_stage(cached)
    exact = two_stage(lambda pipe, generator, **kwargs: pipe(generator=generator, **kwargs).images)
    assert_reuse_parity(result.images[0], reference, exact)


def test_interval_one_is_the_exact_path(runtime):
    exact = runtime.text2img(PROMPT, steps=6, seed=SEED, **SIZE)
    runtime.text2img(PROMPT, steps=6, seed=SEED, cache_interval=2, **SIZE)  # reuse in between frees nothing wrong
    again = runtime.text2img(PROMPT, steps=6, seed=SEED, cache_interval=1, **SIZE)
    assert mean_abs_diff(exact.images[0], again.images[0]) == 0
    assert "cache_interval" not in again.metadata() and exact.params.cache_interval == 1


def test_the_cut_for_each_branch(tiny_model):
    """The shallow model reads the features the full one hands out; deeper branches keep more of the UNet."""
    import openvino as ov

    unet = ov.Core().read_model(tiny_model / "base" / "unet" / "openvino_model.xml")
    sizes = []
    for branch in range(6):  # the tiny UNet has 2 down blocks: branches 0 to 5
        plan = CachePlan.of(unet, branch)
        full, shallow = plan.full_model(), plan.shallow_model()
        names = [f"deepcache_feature_{i}" for i in range(len(plan.features))]
        assert [o.get_any_name() for o in full.outputs] == ["out_sample", *names]
        assert [i.get_any_name() for i in shallow.inputs][-len(names) :] == names
        assert "encoder_hidden_states" not in {i.get_any_name() for i in shallow.inputs} or branch >= 3
        sizes.append(len(shallow.get_ordered_ops()))
    assert sizes == sorted(sizes) and sizes[0] < len(unet.get_ordered_ops()) / 5
    with pytest.raises(ConfigError, match="cache branch 6 is past this UNet's 2 down blocks"):
        CachePlan.of(unet, 6)
    for op in unet.get_ordered_ops():  # an IR whose nodes do not say which layer they belong to
        op.set_friendly_name(f"node_{id(op)}")
    with pytest.raises(ConfigError, match="does not name its nodes after diffusers' layers .* --cache-interval 1"):
        CachePlan.of(unet, 0)


def test_bad_settings_are_refused(runtime):
    for kwargs, message in (
        ({"cache_interval": 0}, "cache_interval 0 must be a whole number >= 1"),
        ({"cache_interval": 2.5}, "cache_interval 2.5 must be a whole number >= 1"),
        ({"cache_interval": 3, "cache_branch": -1}, "cache_branch -1 must be a whole number >= 0"),
        ({"cache_interval": 1, "cache_branch": 2}, "cache_branch is only used when features are reused"),
    ):
        with pytest.raises(ConfigError, match=message):
            GenerationParams(prompt=PROMPT, **kwargs)
    with pytest.raises(ConfigError, match="cache_branch 6 is past this UNet's 6 branches"):
        runtime.text2img(PROMPT, steps=2, cache_interval=3, cache_branch=6, **SIZE)

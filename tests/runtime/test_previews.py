"""Live previews: the linear latent -> RGB map, when the callback is called, and that the images do not change."""

import pytest
import torch
from conftest import PROMPT, mean_abs_diff

from ov_sdxl import ConfigError
from ov_sdxl.runtime.previews import SDXL_LATENT_RGB, latent_preview

SIZE = {"width": 128, "height": 96}


def test_the_map_is_the_documented_matrix():
    latents = torch.zeros(2, 4, 3, 5)
    latents[1, 0] = 1.0  # the second image: channel 0 alone
    gray, first = latent_preview(latents)
    assert gray.size == (5, 3) and set(gray.getdata()) == {(127, 127, 127)}  # zero latents: mid-gray
    expected = tuple(int((value + 1) * 127.5) for value in SDXL_LATENT_RGB[0])
    assert set(first.getdata()) == {expected}
    (clipped,) = latent_preview(torch.full((1, 4, 2, 2), 100.0))  # R sums to -12.6, G to 31.9, B to 23.7
    assert set(clipped.getdata()) == {(0, 255, 255)}


def test_previews_arrive_every_k_steps_and_change_nothing(runtime):
    seen = []
    previewed = runtime.text2img(
        PROMPT, steps=5, seed=4, preview=lambda *event: seen.append(event), preview_every=2, **SIZE
    )
    plain = runtime.text2img(PROMPT, steps=5, seed=4, **SIZE)
    assert mean_abs_diff(previewed.images[0], plain.images[0]) == 0
    assert [(stage, step) for stage, step, _ in seen] == [("base", 2), ("base", 4), ("base", 5)]  # and the last
    assert all(len(images) == 1 and images[0].size == (128 // 8, 96 // 8) for _, _, images in seen)


def test_two_stage_previews_name_their_stage(runtime):
    stages = []
    runtime.base_then_refiner(PROMPT, steps=10, seed=4, preview=lambda stage, step, _: stages.append(stage), **SIZE)
    assert stages == ["base"] * 8 + ["refiner"] * 2


def test_img2img_previews_count_the_steps_it_runs(runtime):
    seen = []
    runtime.img2img(
        PROMPT,
        image=runtime.text2img(PROMPT, steps=2, seed=1, **SIZE).images[0],
        steps=4,
        seed=1,
        preview=lambda *event: seen.append(event),
    )
    assert [step for _, step, _ in seen] == [1, 2]  # strength 0.6 of 4 steps


@pytest.mark.parametrize("every", [0, 1.5, True])
def test_bad_preview_settings(runtime, every):
    with pytest.raises(ConfigError, match="preview_every .* must be a whole number >= 1"):
        runtime.text2img(PROMPT, steps=2, preview=print, preview_every=every, **SIZE)
    with pytest.raises(ConfigError, match="preview must be a function"):
        runtime.text2img(PROMPT, steps=2, preview="yes", **SIZE)

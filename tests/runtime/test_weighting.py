"""Prompt weighting and long prompts: the syntax, the embeddings against a hand computation, and the images."""

import pytest
import torch
from conftest import mean_abs_diff

from ov_sdxl import GenerationParams
from ov_sdxl.runtime.weighting import CHUNK, chunk_count, encode, needs_embeddings, parse_weights

SIZE = {"width": 128, "height": 96}
LONG = "a red fox standing in deep snow under a pine tree, " * 8  # about 100 tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", [("plain text", 1.0)]),
        ("a (red:1.3) fox", [("a ", 1.0), ("red", 1.3), (" fox", 1.0)]),
        ("((very)) good", [("very", 1.1 * 1.1), (" good", 1.0)]),
        ("[blurry]", [("blurry", 1 / 1.1)]),
        ("(a [b] c:2)", [("a ", 2.0), ("b", 2 / 1.1), (" c", 2.0)]),
        (r"a \(literal\) bracket", [("a (literal) bracket", 1.0)]),
        ("(unclosed", [("unclosed", 1.1)]),
        ("ratio 16:9", [("ratio 16:9", 1.0)]),
        ("(cat:1.0)", [("cat", 1.0)]),
    ],
)
def test_parse_weights(text, expected):
    parsed = parse_weights(text)
    assert [f for f, _ in parsed] == [f for f, _ in expected]
    assert [w for _, w in parsed] == pytest.approx([w for _, w in expected])


def test_unweighted_prompt_encodes_exactly_as_diffusers(runtime):
    base = runtime.pipelines.base
    params = GenerationParams(prompt="a photo of a cat", negative_prompt="blurry")
    assert not needs_embeddings(base, params)
    ours = encode(base, params, chunk_count(base, params))
    theirs = base.encode_prompt("a photo of a cat", negative_prompt="blurry", do_classifier_free_guidance=True)
    names = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
    for name, reference in zip(names, theirs, strict=True):
        assert torch.equal(ours[name], reference), name


def test_weighted_embeddings_equal_the_hand_computation(runtime):
    base = runtime.pipelines.base
    params = GenerationParams(prompt="a (cat:1.5) on a [mat]")
    assert needs_embeddings(base, params)
    ours = encode(base, params, 1)["prompt_embeds"]
    by_hand = []
    for tokenizer, encoder in ((base.tokenizer, base.text_encoder), (base.tokenizer_2, base.text_encoder_2)):
        ids = tokenizer("a cat on a mat", padding="max_length", max_length=77).input_ids  # same tokens, no syntax
        states = encoder(torch.tensor([ids]), output_hidden_states=True).hidden_states[-2]
        weights = torch.ones(77)
        weights[2], weights[5] = 1.5, 1 / 1.1  # <start> a cat on a mat <end>: "cat" is token 2, "mat" token 5
        weighted = states * weights[None, :, None]
        by_hand.append(weighted * (states.mean() / weighted.mean()))
    assert torch.allclose(ours, torch.cat(by_hand, dim=-1), atol=1e-6)


def test_long_prompt_is_encoded_in_windows_and_matches_diffusers(runtime, torch_pipes):
    params = GenerationParams(prompt=LONG, negative_prompt="blurry", steps=4, seed=2, **SIZE)
    base = runtime.pipelines.base
    chunks = chunk_count(base, params)
    assert chunks == 2 and needs_embeddings(base, params)
    result = runtime.generate(params)
    assert result.notes == []  # nothing was cut
    unet = runtime.pipelines.base.unet.model
    assert [tuple(p.get_shape()) for p in unet.inputs if p.get_any_name() == "encoder_hidden_states"] == [
        (2, 2 * (CHUNK + 2), 64)
    ]
    torch_base = torch_pipes["base"]
    embeds = encode(torch_base, params, chunks)  # the same recipe on diffusers' PyTorch encoders
    theirs = torch_base(**embeds, num_inference_steps=4, generator=torch.Generator().manual_seed(2), **SIZE)
    assert mean_abs_diff(result.images[0], theirs.images[0]) <= 2.0


def test_weights_change_the_image_and_the_refiner_reads_them(runtime):
    plain = runtime.text2img("a cat on a mat", steps=3, seed=4, **SIZE).images[0]
    weighted = runtime.text2img("a (cat:1.8) on a mat", steps=3, seed=4, **SIZE).images[0]
    assert mean_abs_diff(plain, weighted) > 0.01  # the tiny random UNet reads text faintly, but it does
    two_stage = runtime.base_then_refiner("a (cat:1.8) on a mat, " + LONG, steps=6, seed=4, **SIZE)
    assert two_stage.images[0].size == (128, 96) and two_stage.notes == []


def test_refine_with_a_weighted_long_prompt_matches_diffusers(runtime, torch_pipes, start_image):
    prompt = "(sharp details:1.3), " + LONG
    params = GenerationParams(prompt=prompt, mode="refine", image=start_image, steps=6, seed=3)
    ours = runtime.generate(params)
    refiner = torch_pipes["refiner"]
    embeds = encode(refiner, params, chunk_count(refiner, params))
    assert embeds["prompt_embeds"].shape == (1, 2 * (CHUNK + 2), 32)  # the refiner reads only the second encoder
    theirs = refiner(
        **embeds, image=start_image, strength=0.3, num_inference_steps=6, generator=torch.Generator().manual_seed(3)
    )
    assert mean_abs_diff(ours.images[0], theirs.images[0]) <= 2.0

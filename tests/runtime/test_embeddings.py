"""Textual inversion: SDXL embeddings against diffusers' load_textual_inversion, in every mode, and every bad file."""

import numpy as np
import pytest
import torch
from conftest import PROMPT, mean_abs_diff
from PIL import Image
from safetensors.torch import save_file

from ov_sdxl import ConfigError, ModelNotFoundError, SDXLRuntime
from ov_sdxl.cli import main
from ov_sdxl.config import RuntimeConfig
from ov_sdxl.runtime.embeddings import EmbeddingSpec, add_rows, token_table
from ov_sdxl.testing import TEXT_HIDDEN

PARITY = 2.0  # mean absolute difference in 0..255 units, as in test_runtime.py
STEPS, SEED, SIZE = 6, 3, {"width": 128, "height": 96}
TOKEN, SECOND = "<tiny-ti>", "<second>"  # TOKEN: the default token of tiny-ti.safetensors
WITH_TOKEN = f"a photo of {TOKEN} riding a horse"


def vectors(seed: int, count: int, width: int = TEXT_HIDDEN) -> dict[str, torch.Tensor]:
    """An SDXL embedding's tensors (clip_l, clip_g), scaled so that the tiny model's image clearly depends on them."""
    generator = torch.Generator().manual_seed(seed)
    return {key: 3 * torch.randn(count, width, generator=generator) for key in ("clip_l", "clip_g")}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("embeddings")
    out = {"tiny": folder / "tiny-ti.safetensors", "second": folder / "second.safetensors"}
    save_file(vectors(0, 2), out["tiny"])  # two vectors: <tiny-ti> is written out as "<tiny-ti> <tiny-ti>_1"
    save_file(vectors(1, 1), out["second"])
    return out


@pytest.fixture(scope="module")
def ti_runtime(tiny_model, ov_cache, files):
    """Its own runtime (embeddings change its text encoders); the session's cache is keyed by content, weights
    included, so the unchanged UNet and VAE come from it and nothing of the shared ``runtime`` is touched."""
    return SDXLRuntime.from_dir(tiny_model, precision="f32", cache_dir=ov_cache, embeddings=(str(files["tiny"]),))


@pytest.fixture(scope="module")
def ti_torch(tiny_sources, files):
    """diffusers' PyTorch pipelines with both embeddings, loaded as diffusers documents SDXL textual inversion."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
    from safetensors.torch import load_file

    base_dir, refiner_dir = tiny_sources
    base = StableDiffusionXLPipeline.from_pretrained(base_dir)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(refiner_dir)
    for name, token in (("tiny", TOKEN), ("second", SECOND)):
        state = load_file(files[name])
        base.load_textual_inversion(
            state["clip_l"], token=token, text_encoder=base.text_encoder, tokenizer=base.tokenizer
        )
        for pipe in (base, refiner):
            pipe.load_textual_inversion(
                state["clip_g"], token=token, text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
            )
    img2img = StableDiffusionXLImg2ImgPipeline(**base.components)
    for pipe in (base, img2img, refiner):
        pipe.set_progress_bar_config(disable=True)
    return {"base": base, "img2img": img2img, "refiner": refiner}


def generator(seed=SEED):
    return torch.Generator("cpu").manual_seed(seed)


def assert_parity(ours, theirs):
    assert np.asarray(theirs).std() > 5, "the reference image is flat: the comparison would prove nothing"
    assert mean_abs_diff(ours, theirs) <= PARITY


def text2img(runtime, prompt, **kw):
    return runtime.text2img(prompt, steps=STEPS, seed=SEED, **SIZE, **kw).images[0]


def test_token_matches_diffusers_and_changes_the_image(ti_runtime, ti_torch):
    result = ti_runtime.text2img(WITH_TOKEN, steps=STEPS, seed=SEED, **SIZE)
    theirs = ti_torch["base"](WITH_TOKEN, num_inference_steps=STEPS, guidance_scale=5.0, generator=generator(), **SIZE)
    assert_parity(result.images[0], theirs.images[0])
    assert mean_abs_diff(result.images[0], text2img(ti_runtime, "a photo of riding a horse")) > 1.0
    assert "<tiny-ti> (tiny-ti.safetensors, 2 vectors, sha256 " in result.metadata()["embeddings"]
    base = ti_runtime.pipelines.base
    for tokenizer in (base.tokenizer, base.tokenizer_2):  # diffusers' multi-vector expansion, on our tokenizers
        assert base.maybe_convert_prompt(f"a {TOKEN}", tokenizer) == f"a {TOKEN} {TOKEN}_1"
    # CLIP lowercases prompts: the token works in any case, both of its vectors included
    assert mean_abs_diff(result.images[0], text2img(ti_runtime, WITH_TOKEN.replace(TOKEN, "<TINY-TI>"))) == 0


def test_token_in_the_negative_prompt(ti_runtime, ti_torch):
    ours = text2img(ti_runtime, PROMPT, negative_prompt=TOKEN)
    theirs = ti_torch["base"](
        PROMPT, negative_prompt=TOKEN, num_inference_steps=STEPS, guidance_scale=5.0, generator=generator(), **SIZE
    ).images[0]
    assert_parity(ours, theirs)
    assert mean_abs_diff(ours, text2img(ti_runtime, PROMPT, negative_prompt="")) > 1.0


def test_token_in_img2img_and_the_refiner(ti_runtime, ti_torch, start_image):
    ours = ti_runtime.img2img(WITH_TOKEN, image=start_image, steps=STEPS, seed=SEED, strength=0.6).images[0]
    theirs = ti_torch["img2img"](
        WITH_TOKEN, image=start_image, strength=0.6, num_inference_steps=STEPS, generator=generator()
    ).images[0]
    assert_parity(ours, theirs)
    ours = ti_runtime.base_then_refiner(WITH_TOKEN, steps=10, seed=SEED, **SIZE).images[0]
    gen = generator()
    latents = ti_torch["base"](
        WITH_TOKEN, num_inference_steps=10, denoising_end=0.8, output_type="latent", generator=gen, **SIZE
    ).images
    theirs = ti_torch["refiner"](
        WITH_TOKEN, image=latents, num_inference_steps=10, denoising_start=0.8, generator=gen
    ).images[0]
    assert_parity(ours, theirs)  # the refiner reads the token with its only encoder, from clip_g


def test_token_inside_weighted_prompts(ti_runtime, ti_torch):
    unweighted = ti_torch["base"](
        WITH_TOKEN, num_inference_steps=STEPS, guidance_scale=5.0, generator=generator(), **SIZE
    ).images[0]
    weight_one = text2img(ti_runtime, WITH_TOKEN.replace(TOKEN, f"({TOKEN}:1.0)"))  # the weighting path, weight 1
    assert_parity(weight_one, unweighted)
    assert mean_abs_diff(weight_one, text2img(ti_runtime, WITH_TOKEN.replace(TOKEN, f"({TOKEN}:1.4)"))) > 0.5


def test_what_looks_like_a_token_but_is_not_one_is_named(ti_runtime, caplog):
    result = ti_runtime.text2img("a <nothing> fox", negative_prompt="tiny-ti", steps=1, seed=1, **SIZE)
    assert "prompt: <nothing> is no embedding token (loaded: <tiny-ti>" in result.notes[0]
    assert result.notes[1] == "negative_prompt: tiny-ti is read as plain text; the embedding's token is <tiny-ti>"
    assert all(note in caplog.text for note in result.notes)


def test_load_embedding_at_run_time_recompiles_the_text_encoders(ti_runtime, ti_torch, files):
    text2img(ti_runtime, PROMPT)  # the text encoders are compiled before the second embedding arrives
    embedding = ti_runtime.load_embedding(files["second"], SECOND)
    assert (embedding.token, embedding.count) == (SECOND, 1)
    assert [e.token for e in ti_runtime.embeddings] == [TOKEN, SECOND]
    prompt = f"a photo of {SECOND} and {TOKEN}"
    theirs = ti_torch["base"](prompt, num_inference_steps=STEPS, guidance_scale=5.0, generator=generator(), **SIZE)
    assert_parity(text2img(ti_runtime, prompt), theirs.images[0])  # rows in the right order, both tables
    with pytest.raises(ConfigError, match=r"<second> \(.*\) is already loaded, as <second> of .*second.safetensors"):
        ti_runtime.load_embedding(files["second"], SECOND)
    with pytest.raises(ConfigError, match="already loaded"):
        ti_runtime.load_embedding(files["second"], "<TINY-TI>")  # tokens are case-insensitive, as CLIP is
    assert len(ti_runtime.embeddings) == 2


def bad_file(folder, name, tensors):
    path = folder / name
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)
    return path


@pytest.mark.parametrize(
    ("tensors", "error", "message"),
    [
        ({"emb_params": torch.ones(2, 768)}, ConfigError, r"holds emb_params \[2, 768\]; an SDXL embedding holds"),
        ({"clip_l": torch.ones(1, 32)}, ConfigError, r"exactly clip_l \[n, 32\] and clip_g \[n, 32\]"),
        ({"clip_l": torch.ones(1, 32), "clip_g": torch.ones(1, 16)}, ConfigError, r"clip_g is \[1, 16\] float32"),
        ({"clip_l": torch.ones(32), "clip_g": torch.ones(1, 32)}, ConfigError, r"clip_l is \[32\] float32"),
        ({"clip_l": torch.ones(1, 32, dtype=torch.int32), "clip_g": torch.ones(1, 32)}, ConfigError, "int32"),
        ({"clip_l": torch.ones(2, 32), "clip_g": torch.ones(1, 32)}, ConfigError, "must have as many vectors"),
        ({"clip_l": torch.full((1, 32), float("nan")), "clip_g": torch.ones(1, 32)}, ConfigError, "NaN"),
    ],
)
def test_bad_files_are_refused(ti_runtime, tmp_path, tensors, error, message):
    before = [e.token for e in ti_runtime.embeddings]
    with pytest.raises(error, match=message):
        ti_runtime.load_embedding(bad_file(tmp_path, "bad.safetensors", tensors), "<bad>")
    assert [e.token for e in ti_runtime.embeddings] == before


def test_bad_paths_and_tokens_are_refused(ti_runtime, files, tmp_path):
    with pytest.raises(ModelNotFoundError, match="missing.safetensors does not exist"):
        ti_runtime.load_embedding(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="junk.safetensors cannot be read as safetensors"):
        ti_runtime.load_embedding(tmp_path / "junk.safetensors")
    with pytest.raises(ConfigError, match="not a .safetensors file.*pickled"):
        EmbeddingSpec("style.pt")
    for token in ("two words", "(x)", "a:b", ""):
        with pytest.raises(ConfigError, match="must be one word without spaces, brackets"):
            EmbeddingSpec(files["second"], token)
    with pytest.raises(ConfigError, match=r"is a word CLIP already knows \(cat\)"):
        ti_runtime.load_embedding(files["second"], "cat")
    assert EmbeddingSpec.parse("dir/neg.safetensors") == EmbeddingSpec("dir/neg.safetensors", "<neg>")
    assert EmbeddingSpec.parse("C:/x/neg.safetensors:<n>") == EmbeddingSpec("C:/x/neg.safetensors", "<n>")
    with pytest.raises(ConfigError, match=r"embedding token <neg> is given to several files \(a/neg.safetensors"):
        RuntimeConfig(model_dir="m", embeddings=("a/neg.safetensors", "b/other.safetensors:<NEG>"))


def test_rows_are_added_whatever_the_table_is_stored_in(tiny_model, tiny_sources, tmp_path):
    """The IR's token table is f32, f16 + Convert (fp16 models) or u8 + decompression (int8/int4): the rows are
    added to each, and the text encoder then equals transformers' CLIPTextModel with diffusers' resized table."""
    import nncf
    import openvino as ov
    from transformers import CLIPTextModel

    rows = vectors(2, 3)["clip_l"]
    reference = CLIPTextModel.from_pretrained(tiny_sources[0] / "text_encoder").eval()
    reference.resize_token_embeddings(49408 + 3)
    reference.get_input_embeddings().weight.data[49408:] = rows
    ids = torch.tensor([[49406, 320, 49408, 49409, 49410, 539, 49407] + [49407] * 70])
    with torch.no_grad():
        expected = reference(ids, output_hidden_states=True).hidden_states[-2].numpy()
    core = ov.Core()
    f32 = core.read_model(tiny_model / "base" / "text_encoder" / "openvino_model.xml")
    ov.save_model(f32, tmp_path / "fp16.xml", compress_to_fp16=True)
    models = {
        "f32": (f32, 1e-4),
        "f16": (core.read_model(tmp_path / "fp16.xml"), 2e-2),
        "int8": (nncf.compress_weights(f32.clone()), 0.15),
    }
    storage = {"f32": "f32", "f16": "f16", "int8": "u8"}
    for name, (model, tolerance) in models.items():
        stored = token_table(model)[1].get_node()
        while stored.get_type_name() != "Constant":  # back through the decompression (Convert, Subtract...)
            stored = stored.input_value(0).get_node()
        assert stored.get_element_type().get_type_name() == storage[name]
        add_rows(model, rows.numpy()[:2])
        add_rows(model, rows.numpy()[2:])  # a second embedding extends the added table
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        hidden = [out for out in compiled.outputs if "hidden_states" in out.get_any_name()][-2]
        got = compiled({"input_ids": ids.numpy()})[hidden]
        assert np.abs(got - expected).max() < tolerance, name


def test_cli_and_demo_take_embeddings(tiny_model, ov_cache, files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OV_SDXL_CACHE_DIR", str(ov_cache))
    output = tmp_path / "fox.png"
    args = ["generate", "--model", tiny_model, "--steps", "2", "--width", "128", "--height", "96", "--seed", "1"]
    args += ["--precision", "f32", "--output", output, "--embedding", f"{files['second']}:<fox>"]
    code = main([str(a) for a in [*args, "--prompt", "a <fox> in snow", "--embedding", files["tiny"]]])
    out, err = capsys.readouterr()
    assert code == 0, err
    embeddings = Image.open(output).text["embeddings"]
    assert embeddings.startswith("<fox> (second.safetensors, 1 vector, sha256 ") and "; <tiny-ti> (" in embeddings
    for extra, message in (
        (["--embedding", "style.pt"], "error: embedding file style.pt is not a .safetensors file"),
        (["--embedding", tmp_path / "none.safetensors"], "none.safetensors does not exist"),
        (["--embedding", f"{files['second']}:two words"], "must be one word"),
    ):
        assert main([str(a) for a in [*args, "--prompt", "a fox", *extra]]) == 2
        assert message in capsys.readouterr().err

    from ov_sdxl.demo import build_demo

    config = build_demo(
        SDXLRuntime.from_dir(tiny_model, use_cache=False, embeddings=(f"{files['tiny']}:<a>", files["second"])),
        output_dir=tmp_path / "demo",
    ).get_config_file()
    texts = [c["props"].get("value") or "" for c in config["components"] if c["type"] == "markdown"]
    assert any("`<a>` (2 vectors), `<second>`" in text and "`(<a>:1.2)`" in text for text in texts)

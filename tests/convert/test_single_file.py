"""SDXL single-file checkpoints (original sgm layout): detection, refusals, offline loading, round trip.

The tiny base and refiner are written in the original layout (ov_sdxl.testing.original) and loaded back with
ov_sdxl.convert.single_file; every tensor must come back equal. The shipped real-size configuration is only ever
built on the meta device: no real-size weights are allocated.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket

import pytest
import torch

from ov_sdxl.convert import single_file as sf
from ov_sdxl.convert.reference import default_config_dir
from ov_sdxl.errors import ConfigError, ModelNotFoundError
from ov_sdxl.testing.original import original_state_dict, write_original_checkpoint

CASES = [("base", part) for part in sf.PARTS["base"]] + [("refiner", part) for part in sf.PARTS["refiner"]]


@pytest.fixture(scope="module")
def originals(tiny_sources, tmp_path_factory):
    """The tiny base and refiner as original-layout single files, with the diffusers folders they came from."""
    out = tmp_path_factory.mktemp("single-file")
    folders = dict(zip(("base", "refiner"), tiny_sources, strict=True))
    files = {
        stage: write_original_checkpoint(folders[stage], out / f"tiny-{stage}.safetensors", stage) for stage in folders
    }
    return files, folders


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """The default config folder is written here, not into ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _reference_state(folder, part):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    classes = {"unet": UNet2DConditionModel, "vae": AutoencoderKL}
    classes |= {"text_encoder": CLIPTextModel, "text_encoder_2": CLIPTextModelWithProjection}
    return classes[part].from_pretrained(folder, subfolder=part).state_dict()


def _assert_equal_states(got, expected):
    assert got.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(got[key], tensor), key


def _save(state, path):
    from safetensors.torch import save_file

    save_file(state, path)
    return path


def test_original_layout_keys(originals):
    from safetensors import safe_open

    files, _ = originals
    with safe_open(files["base"], "pt") as f:
        keys = set(f.keys())
        assert f.get_slice(
            "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"
        ).get_shape() == [96, 32]
        assert f.get_slice("first_stage_model.encoder.mid.attn_1.q.weight").get_shape() == [16, 16, 1, 1]
    for key in (
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.label_emb.0.0.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        "model.diffusion_model.output_blocks.2.2.conv.weight",  # the upsampler after a transformer
        "first_stage_model.decoder.up.0.block.0.conv1.weight",
        "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
        "conditioner.embedders.1.model.text_projection",
        "conditioner.embedders.1.model.logit_scale",
    ):
        assert key in keys
    assert not any(k.startswith(("unet.", "vae.", "text_encoder")) for k in keys)
    with safe_open(files["refiner"], "pt") as f:
        prefixes = {".".join(k.split(".")[:3]) for k in f.keys() if k.startswith("conditioner.")}  # noqa: SIM118
    assert prefixes == {"conditioner.embedders.0"}


def test_detects_stage(originals):
    files, _ = originals
    assert sf.inspect_checkpoint(files["base"]) == "base"
    assert sf.inspect_checkpoint(files["refiner"]) == "refiner"
    assert sf.is_single_file(files["base"]) and sf.is_single_file("missing/model.CKPT")
    assert not sf.is_single_file(files["base"].parent) and not sf.is_single_file("stabilityai/sdxl-base")


@pytest.mark.parametrize(("stage", "part"), CASES)
def test_round_trip_gives_equal_tensors(originals, stage, part):
    files, folders = originals
    model = sf.load_component(files[stage], stage, part, config_dir=folders[stage])
    assert not model.training
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())
    _assert_equal_states(model.state_dict(), _reference_state(folders[stage], part))


def test_component_dtype(originals):
    files, folders = originals
    vae = sf.load_component(files["base"], "base", "vae", torch_dtype=torch.float16, config_dir=folders["base"])
    assert {p.dtype for p in vae.parameters()} == {torch.float16}


def test_pipeline_folder_round_trip(originals, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    files, folders = originals
    dest = sf.write_pipeline_folder(files["base"], "base", tmp_path / "base", config_dir=folders["base"])
    pipes = [StableDiffusionXLPipeline.from_pretrained(folder) for folder in (folders["base"], dest)]
    for name in sf.PARTS["base"]:
        _assert_equal_states(getattr(pipes[1], name).state_dict(), getattr(pipes[0], name).state_dict())
    assert pipes[1].scheduler.config == pipes[0].scheduler.config
    configs = [{k: v for k, v in pipe.config.items() if k != "_name_or_path"} for pipe in pipes]
    assert configs[1] == configs[0]  # model_index: classes and flags
    for name in ("tokenizer", "tokenizer_2"):
        tokenize = [getattr(pipe, name) for pipe in pipes]
        assert tokenize[1]("a red fox").input_ids == tokenize[0]("a red fox").input_ids
        assert tokenize[1].pad_token == tokenize[0].pad_token


def test_pipeline_folder_one_part_at_a_time(originals, tmp_path):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    files, folders = originals
    for part in sf.PARTS["refiner"]:  # as the converter does, one process per part
        sf.write_pipeline_folder(
            files["refiner"], "refiner", tmp_path / "r", config_dir=folders["refiner"], parts=(part,)
        )
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "model_index.json",
        "scheduler",
        "text_encoder_2",
        "tokenizer_2",
        "unet",
        "vae",
    ]
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(tmp_path / "r")
    assert pipe.config.requires_aesthetics_score and pipe.text_encoder is None
    _assert_equal_states(pipe.unet.state_dict(), _reference_state(folders["refiner"], "unet"))


def test_runs_offline(originals, monkeypatch, cache_home):
    """HF_HUB_OFFLINE=1 as in every test; and any socket connection fails, so nothing can be fetched."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    files, folders = originals
    for part in sf.PARTS["refiner"]:
        sf.load_component(files["refiner"], "refiner", part, config_dir=folders["refiner"])
    assert (default_config_dir("refiner") / "tokenizer_2" / "tokenizer_config.json").is_file()


def test_shipped_configuration_matches_the_reference(cache_home):
    from transformers import CLIPTokenizer

    from ov_sdxl.convert.reference import reference

    ref = reference()
    for stage in sf.PARTS:
        folder = default_config_dir(stage)
        assert folder.is_relative_to(cache_home) and default_config_dir(stage) == folder  # written once
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == sf.PIPELINES[stage]
        assert all(index[k] == v for k, v in ref[stage]["model_index"].items() if v is not None)
        scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        assert all(scheduler[k] == v for k, v in ref[stage]["scheduler"].items())
        for part in sf.PARTS[stage]:
            config = json.loads((folder / part / "config.json").read_text())
            assert all(config[k] == v for k, v in ref[stage][part].items()), part
        tokenizer_2 = CLIPTokenizer.from_pretrained(folder / "tokenizer_2")
        assert tokenizer_2.pad_token == "!" and tokenizer_2.model_max_length == 77
    assert CLIPTokenizer.from_pretrained(default_config_dir("base") / "tokenizer").pad_token == "<|endoftext|>"


def test_pipeline_folder_from_the_shipped_configuration(originals, cache_home, tmp_path):
    """Without weights (parts=()), the default config folder gives the stage's model_index, scheduler, tokenizers."""
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTokenizer

    files, folders = originals
    dest = sf.write_pipeline_folder(files["refiner"], "refiner", tmp_path / "refiner", parts=())
    assert sorted(p.name for p in dest.iterdir()) == ["model_index.json", "scheduler", "tokenizer_2"]
    index = json.loads((dest / "model_index.json").read_text())
    assert index["requires_aesthetics_score"] is True and index["text_encoder"] == [None, None]
    assert EulerDiscreteScheduler.from_pretrained(dest / "scheduler").config.timestep_spacing == "leading"
    assert CLIPTokenizer.from_pretrained(dest / "tokenizer_2").pad_token == "!"
    with pytest.raises(ConfigError, match=r"holds a StableDiffusionXLPipeline, not the refiner's"):
        sf.write_pipeline_folder(files["refiner"], "refiner", tmp_path / "x", config_dir=folders["base"], parts=())


@pytest.mark.parametrize("stage", ["base", "refiner"])
def test_real_size_layout_round_trips_on_meta(cache_home, stage):
    """Real-size SDXL from the shipped configs, on the meta device: the original layout written from it is what
    diffusers recognises as SDXL, and converts back to every key and shape of the models."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    from ov_sdxl.convert.reference import reference

    folder = default_config_dir(stage)
    models = {part: sf._empty_model(folder, part) for part in sf.PARTS[stage]}
    for part, model in models.items():
        assert all(p.device.type == "meta" for p in model.parameters())
        count = sum(p.numel() for p in model.parameters())
        assert count == pytest.approx(float(reference()[stage]["parameters"].get(part, count)), rel=0.01)
    state = original_state_dict(
        {p: m.state_dict() for p, m in models.items()}, models["unet"].config, models["vae"].config, stage
    )
    assert infer_diffusers_model_type(state) == {"base": "xl_base", "refiner": "xl_refiner"}[stage]
    assert sf._detect_stage({k: tuple(v.shape) for k, v in state.items()}, "meta") == stage
    for part, model in models.items():
        prefix = sf._prefix(stage, part)
        converted = sf._convert(model, stage, part, {k: v for k, v in state.items() if k.startswith(prefix)})
        sf._check_fits(model, converted, part, "the shipped configuration")  # raises on any difference


def test_default_configuration_refuses_other_shapes(originals, cache_home):
    files, _ = originals
    with pytest.raises(
        ConfigError,
        match=r"unet weights in .* do not fit the shipped SDXL 1.0 configuration.*shapes differ.*--single-file-config",
    ):
        sf.load_component(files["base"], "base", "unet")


def test_wrong_config_dir_is_refused(originals):
    files, folders = originals
    with pytest.raises(ConfigError, match=r"do not fit .*base.*shapes differ, file vs config.*config_dir"):
        sf.load_component(files["refiner"], "refiner", "unet", config_dir=folders["base"])
    with pytest.raises(ModelNotFoundError, match=r"has no unet/config.json"):
        sf.load_component(files["refiner"], "refiner", "unet", config_dir=folders["base"].parent)


def test_wrong_stage_or_part(originals):
    files, folders = originals
    with pytest.raises(ConfigError, match=r"is an SDXL base checkpoint, not a refiner; pass it as the base"):
        sf.load_component(files["base"], "refiner", "unet", config_dir=folders["refiner"])
    with pytest.raises(ConfigError, match=r"part 'text_encoder' is not one of the SDXL refiner's"):
        sf.load_component(files["refiner"], "refiner", "text_encoder")
    with pytest.raises(ConfigError, match=r"stage 'xl' is not one of: base, refiner"):
        sf.load_component(files["base"], "xl", "unet")


def test_refuses_sd15(tmp_path):
    state = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
        "model.diffusion_model.output_blocks.11.0.skip_connection.weight": torch.zeros(2, 2),
        "first_stage_model.encoder.conv_in.weight": torch.zeros(2, 2),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(2, 2),
    }
    path = _save(state, tmp_path / "v1-5-pruned.safetensors")
    with pytest.raises(
        ConfigError, match=r"not an SDXL base or refiner checkpoint: it looks like Stable Diffusion 1\.x"
    ) as err:
        sf.inspect_checkpoint(path)
    assert "model.diffusion_model.* (2)" in str(err.value) and "cond_stage_model.transformer.* (1)" in str(err.value)


def test_refuses_other_safetensors(tmp_path):
    path = _save(
        {"encoder.layer.0.weight": torch.zeros(3), "head.bias": torch.zeros(1)}, tmp_path / "random.safetensors"
    )
    with pytest.raises(
        ConfigError, match=r"not an SDXL .*no SDXL text encoders under conditioner.embedders.*encoder.\* \(1\)"
    ):
        sf.inspect_checkpoint(path)


def test_refuses_incomplete_or_special_sdxl(originals, tmp_path):
    from safetensors.torch import load_file

    files, _ = originals
    state = load_file(files["base"])
    no_vae = {k: v for k, v in state.items() if not k.startswith("first_stage_model.")}
    with pytest.raises(ConfigError, match=r"SDXL base checkpoint without its VAE"):
        sf.inspect_checkpoint(_save(no_vae, tmp_path / "no-vae.safetensors"))
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 8, 3, 3)
    with pytest.raises(ConfigError, match=r"takes 8 input channels \(an instruct-pix2pix"):
        sf.inspect_checkpoint(_save(state, tmp_path / "pix2pix.safetensors"))
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 9, 3, 3)
    inpainting = _save(state, tmp_path / "inpaint.safetensors")  # an inpainting base: converted (tests/runtime)
    assert sf.inspect_checkpoint(inpainting) == "base" and sf.is_inpainting_checkpoint(inpainting)
    assert not sf.is_inpainting_checkpoint(files["base"])


def test_refuses_unreadable_and_missing_files(originals, tmp_path):
    files, _ = originals
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(files["base"].read_bytes()[:-1000])
    for path in (junk, truncated):
        with pytest.raises(ConfigError, match=r"cannot read .* as safetensors .*is the file complete\?"):
            sf.inspect_checkpoint(path)
    with pytest.raises(ModelNotFoundError, match=r"does not exist"):
        sf.inspect_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError, match=r"not a single-file checkpoint"):
        sf.inspect_checkpoint(_save({"a": torch.zeros(1)}, tmp_path / "weights.gguf"))


def test_pickle_needs_permission(originals, tmp_path):
    files, _ = originals
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"never read")
    with pytest.raises(
        ConfigError, match=r"is a pickle checkpoint \(\.ckpt\), and unpickling can run code.*--allow-pickle"
    ):
        sf.inspect_checkpoint(path)


def test_pickle_with_permission(originals, tmp_path, caplog):
    from safetensors.torch import load_file

    files, folders = originals
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": load_file(files["base"]), "global_step": 7, "epoch": 1}, path)  # as training code saves
    with caplog.at_level(logging.WARNING, logger="ov_sdxl.convert.single_file"):
        assert sf.inspect_checkpoint(path, allow_pickle=True) == "base"
    assert "unpickling can run code" in caplog.text
    model = sf.load_component(path, "base", "text_encoder_2", config_dir=folders["base"], allow_pickle=True)
    _assert_equal_states(model.state_dict(), _reference_state(folders["base"], "text_encoder_2"))


def test_pickle_with_objects_is_refused(originals, tmp_path):
    from safetensors.torch import load_file

    files, _ = originals
    path = tmp_path / "model.pt"
    torch.save({"state_dict": load_file(files["base"]), "args": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(ConfigError, match=r"holds Python objects besides tensors, which ov-sdxl does not unpickle"):
        sf.inspect_checkpoint(path, allow_pickle=True)

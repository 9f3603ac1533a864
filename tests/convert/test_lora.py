"""LoRA fusing (ov_sdxl.convert.lora): each sub-model fused on its own equals diffusers' pipeline after
``load_lora_weights`` + ``fuse_lora``, for PEFT and kohya files, one or several LoRAs, any scale; bad input refused.

PyTorch only: the tiny SDXL base and tiny LoRA files written by ov_sdxl.testing.lora_files.
"""

from __future__ import annotations

import copy
import hashlib

import pytest

torch = pytest.importorskip("torch")

from ov_sdxl.convert.lora import LORA_PARTS, LoraSpec, fuse_loras, manifest_entry, parts, read_lora  # noqa: E402
from ov_sdxl.errors import ConfigError  # noqa: E402

RANK = 4
TE_PARTS = {"unet", "text_encoder", "text_encoder_2"}


@pytest.fixture(scope="module")
def base_pipe(tiny_sources):
    """The tiny base as a diffusers pipeline, never modified: each test fuses into deep copies of its parts."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sources[0])
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def loras(tiny_sources, tmp_path_factory):
    """LoRA files of the tiny base: PEFT and kohya (SGM and diffusers block names), with and without text encoders."""
    from ov_sdxl.testing.lora_files import write_kohya_lora, write_peft_lora

    base, folder = tiny_sources[0], tmp_path_factory.mktemp("loras")
    return {
        "peft": write_peft_lora(base, folder / "peft.safetensors", rank=RANK, seed=0),
        "peft_unet": write_peft_lora(base, folder / "peft-unet.safetensors", rank=RANK, seed=1, text_encoders=False),
        "kohya": write_kohya_lora(base, folder / "kohya.safetensors", rank=RANK, seed=2),
        "kohya_diffusers_names": write_kohya_lora(
            base, folder / "kohya-dn.safetensors", rank=RANK, seed=3, text_encoders=False, unet_names="diffusers"
        ),
    }


def _copy_parts(pipe, dtype=None) -> dict:
    modules = {part: copy.deepcopy(getattr(pipe, part)) for part in LORA_PARTS}
    return {part: m.to(dtype) if dtype else m for part, m in modules.items()}


def _diffusers_fused(base_pipe, files_and_scales, dtype=None):
    """What a diffusers user does: load_lora_weights, then fuse_lora (several: set_adapters first), then unload."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(**{**base_pipe.components, **_copy_parts(base_pipe, dtype)})
    if len(files_and_scales) == 1:
        (path, scale) = files_and_scales[0]
        pipe.load_lora_weights(str(path.parent), weight_name=path.name)
        pipe.fuse_lora(lora_scale=scale)
    else:
        names = [f"lora{i}" for i in range(len(files_and_scales))]
        for name, (path, _) in zip(names, files_and_scales, strict=True):
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
        pipe.set_adapters(names, [scale for _, scale in files_and_scales])
        pipe.fuse_lora(adapter_names=names)
    pipe.unload_lora_weights()
    return pipe


def _assert_plain(module, pristine) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    assert not any(isinstance(m, BaseTunerLayer) for m in module.modules())
    assert not getattr(module, "peft_config", None)
    assert list(module.state_dict()) == list(pristine.state_dict())


CASES = {  # both formats, with and without text encoder weights, scales 1.0 and 0.7, several LoRAs combined
    "peft": [("peft", 1.0)],
    "kohya-0.7": [("kohya", 0.7)],
    "peft-unet-only-0.7": [("peft_unet", 0.7)],
    "kohya-diffusers-names-unet-only": [("kohya_diffusers_names", 1.0)],
    "peft-0.7+kohya-dn-1.0+kohya-minus-0.4": [("peft", 0.7), ("kohya_diffusers_names", 1.0), ("kohya", -0.4)],
}


@pytest.mark.parametrize("case", list(CASES))
def test_fused_parts_equal_diffusers_fused_pipeline(case, base_pipe, loras):
    chosen = [(loras[key], scale) for key, scale in CASES[case]]
    reference = _diffusers_fused(base_pipe, chosen)
    modules = _copy_parts(base_pipe)
    for part, module in modules.items():
        applied = fuse_loras(module, part, [LoraSpec(path, scale) for path, scale in chosen])
        expected_names = [path.name for path, _ in chosen if part in parts(LoraSpec(path))]
        assert applied == expected_names, part
        pristine = getattr(base_pipe, part)
        _assert_plain(module, pristine)
        ours, theirs, before = module.state_dict(), getattr(reference, part).state_dict(), pristine.state_dict()
        for key, tensor in ours.items():
            if not torch.equal(tensor, theirs[key]):
                torch.testing.assert_close(tensor, theirs[key], rtol=1e-6, atol=1e-6, msg=f"{case} {part} {key}")
        changed = sum(not torch.equal(tensor, before[key]) for key, tensor in ours.items())
        assert (changed > 0) == bool(expected_names), f"{part}: {changed} tensors changed"


def test_fused_in_fp16_equals_diffusers_fp16(base_pipe, loras):
    chosen = [(loras["kohya"], 0.8)]  # the converter loads sources in fp16 unless fp32 weights are asked for
    reference = _diffusers_fused(base_pipe, chosen, dtype=torch.float16)
    for part, module in _copy_parts(base_pipe, torch.float16).items():
        fuse_loras(module, part, [LoraSpec(path, scale) for path, scale in chosen])
        theirs = getattr(reference, part).state_dict()
        for key, tensor in module.state_dict().items():
            assert tensor.dtype == theirs[key].dtype
            torch.testing.assert_close(tensor, theirs[key], rtol=1e-3, atol=1e-3, msg=f"{part} {key}")


@pytest.mark.parametrize("kind", ["peft", "kohya"])
def test_fused_weight_is_base_plus_scaled_up_times_down(kind, base_pipe, loras):
    """Independent of diffusers: W' = W + scale * alpha / rank * up @ down (kohya alpha rank/2, PEFT 2*rank)."""
    from safetensors.torch import load_file

    raw = load_file(loras[kind])
    scale, alpha = 0.7, RANK / 2 if kind == "kohya" else 2 * RANK
    layers = {
        "unet": ["down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k", "up_blocks.0.resnets.1.conv1"],
        "text_encoder_2": ["text_model.encoder.layers.3.mlp.fc1"],
    }
    for part, names in layers.items():
        module = copy.deepcopy(getattr(base_pipe, part))
        before = {k: v.clone() for k, v in module.state_dict().items()}
        fuse_loras(module, part, [LoraSpec(loras[kind], scale)])
        after = module.state_dict()
        for name in names:
            if kind == "peft":
                down, up = raw[f"{part}.{name}.lora_A.weight"], raw[f"{part}.{name}.lora_B.weight"]
            else:
                from ov_sdxl.testing.lora_files import KOHYA_PREFIX, sgm_unet_name

                kohya_name = sgm_unet_name(name, module) if part == "unet" else name
                key = f"{KOHYA_PREFIX[part]}_{kohya_name.replace('.', '_')}"
                down, up = raw[f"{key}.lora_down.weight"], raw[f"{key}.lora_up.weight"]
                assert raw[f"{key}.alpha"].item() == alpha
            delta = (up.flatten(1) @ down.flatten(1)).reshape(before[f"{name}.weight"].shape)
            expected = before[f"{name}.weight"] + scale * alpha / RANK * delta
            torch.testing.assert_close(after[f"{name}.weight"], expected, rtol=1e-5, atol=1e-6)
            if f"{name}.bias" in before:
                assert torch.equal(after[f"{name}.bias"], before[f"{name}.bias"])
        norms = [k for k in after if "norm" in k]
        assert norms and all(torch.equal(after[k], before[k]) for k in norms)


def test_scale_zero_changes_nothing(base_pipe, loras):
    for part in LORA_PARTS:
        module = copy.deepcopy(getattr(base_pipe, part))
        assert fuse_loras(module, part, [LoraSpec(loras["kohya"], 0.0), LoraSpec(loras["peft"], 0)])
        before = getattr(base_pipe, part).state_dict()
        assert all(torch.equal(t, before[k]) for k, t in module.state_dict().items()), part


def test_lora_changes_unet_output(base_pipe, loras):
    generator = torch.Generator().manual_seed(0)
    inputs = dict(
        sample=torch.randn(1, 4, 16, 16, generator=generator),
        timestep=torch.tensor(500.0),
        encoder_hidden_states=torch.randn(1, 77, 64, generator=generator),
        added_cond_kwargs={"text_embeds": torch.randn(1, 32, generator=generator), "time_ids": torch.rand(1, 6)},
    )
    unet = copy.deepcopy(base_pipe.unet)
    fuse_loras(unet, "unet", [LoraSpec(loras["peft_unet"], 1.0)])
    with torch.no_grad():
        plain = base_pipe.unet(**inputs).sample
        styled = unet(**inputs).sample
    assert (styled - plain).abs().mean() > 0.1 * plain.abs().mean()


def test_parts_format_and_manifest(loras):
    assert parts(LoraSpec(loras["peft"])) == TE_PARTS
    assert parts(LoraSpec(loras["kohya"])) == TE_PARTS
    assert parts(LoraSpec(loras["peft_unet"])) == {"unet"}
    assert parts(LoraSpec(loras["kohya_diffusers_names"])) == {"unet"}
    assert read_lora(LoraSpec(loras["peft"])).format == "diffusers"
    assert read_lora(LoraSpec(loras["kohya"])).format == "kohya"
    specs = [LoraSpec.parse(f"{loras['kohya']}:0.8"), LoraSpec(loras["peft_unet"])]
    assert manifest_entry(specs) == [
        {
            "file": "kohya.safetensors",
            "sha256": hashlib.sha256(loras["kohya"].read_bytes()).hexdigest(),
            "scale": 0.8,
            "format": "kohya",
            "parts": ["text_encoder", "text_encoder_2", "unet"],
        },
        {
            "file": "peft-unet.safetensors",
            "sha256": hashlib.sha256(loras["peft_unet"].read_bytes()).hexdigest(),
            "scale": 1.0,
            "format": "diffusers",
            "parts": ["unet"],
        },
    ]


def test_spec_parse(tmp_path):
    plain = tmp_path / "style.safetensors"
    folder = tmp_path / "C:" / "loras"  # a ':' inside the path is part of the path; only a trailing :number is a scale
    folder.mkdir(parents=True)
    odd = folder / "detail.safetensors"
    for path in (plain, odd):
        path.write_bytes(b"")
    assert LoraSpec.parse(str(plain)) == LoraSpec(plain, 1.0)
    assert LoraSpec.parse(f"{plain}:0.8") == LoraSpec(plain, 0.8)
    assert LoraSpec.parse(f"{plain}:-1") == LoraSpec(plain, -1.0)
    assert LoraSpec.parse(f"{plain}:1e-1").scale == 0.1
    assert LoraSpec.parse(str(odd)) == LoraSpec(odd, 1.0)
    assert LoraSpec.parse(f"{odd}:0.5") == LoraSpec(odd, 0.5)
    assert str(LoraSpec(plain, 0.5)) == f"{plain}:0.5"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("{dir}/style.safetensors:", "nothing after ':'"),
        ("{dir}/style.safetensors:nan", "scale nan for .* must be a finite number"),
        ("{dir}/style.safetensors:inf", "must be a finite number"),
        ("{dir}/style.safetensors:strong", "scale 'strong' .* is not a number"),
        ("{dir}/missing.safetensors:0.8", "missing.safetensors does not exist"),
        ("{dir}/style.ckpt", "is a pickle"),
        ("{dir}/style.bin:0.5", "is a pickle"),
        ("{dir}/style.pt", "is a pickle"),
        ("{dir}/style.txt", "must be a .safetensors file"),
    ],
)
def test_bad_specs(text, message, tmp_path):
    for name in ("style.safetensors", "style.ckpt", "style.bin", "style.pt", "style.txt"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ConfigError, match=message):
        LoraSpec.parse(text.format(dir=tmp_path))


def test_bad_spec_values(tmp_path):
    path = tmp_path / "style.safetensors"
    path.write_bytes(b"")
    for scale in ("0.8", True, None, float("nan")):
        with pytest.raises(ConfigError, match="must be a finite number"):
            LoraSpec(path, scale)
    with pytest.raises(ConfigError, match="must be a path"):
        LoraSpec("", 1.0)


def test_files_that_are_not_sdxl_loras(tmp_path, tiny_sources, base_pipe):
    from safetensors.torch import save_file

    cases = {
        "model.safetensors": (None, "is not a LoRA: .*a full model checkpoint goes to --base"),
        "flux.safetensors": (
            {"transformer.blocks.0.attn.to_q.lora_A.weight": torch.ones(4, 8)},
            "has no SDXL LoRA weights",
        ),
        "loha.safetensors": (
            {"lora_unet_down_blocks_1_attentions_0_proj_in.hada_w1_a": torch.ones(4, 8)},
            "is not an SDXL LoRA that diffusers can read",
        ),
        "broken.safetensors": (b"not a safetensors file", "cannot be read as safetensors"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is None:
            path.write_bytes((tiny_sources[0] / "unet" / "diffusion_pytorch_model.safetensors").read_bytes())
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            save_file(content, str(path))
        with pytest.raises(ConfigError, match=message):
            fuse_loras(copy.deepcopy(base_pipe.unet), "unet", [LoraSpec(path)])


def test_lora_that_does_not_fit_the_module(tmp_path, tiny_sources, loras, base_pipe):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file, save_file

    refiner_unet = UNet2DConditionModel.from_pretrained(tiny_sources[1], subfolder="unet")
    with pytest.raises(ConfigError, match="peft.safetensors does not fit this unet .*size mismatch"):
        fuse_loras(refiner_unet, "unet", [LoraSpec(loras["peft"])])

    tensors = load_file(loras["kohya_diffusers_names"])  # plus a layer the tiny UNet does not have
    extra = "lora_unet_down_blocks_0_attentions_0_proj_in"
    tensors[f"{extra}.lora_down.weight"] = torch.ones(RANK, 32)
    tensors[f"{extra}.lora_up.weight"] = torch.ones(32, RANK)
    save_file(tensors, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ConfigError, match=r"only (\d+) of its \d+ unet layers exist"):
        fuse_loras(copy.deepcopy(base_pipe.unet), "unet", [LoraSpec(tmp_path / "extra.safetensors")])


def test_lora_with_nan_weights_is_refused(tmp_path, base_pipe):
    from safetensors.torch import save_file

    name = "lora_unet_down_blocks_1_attentions_0_proj_in"
    up = torch.ones(64, RANK)
    up[0, 0] = float("nan")
    save_file(
        {f"{name}.lora_down.weight": torch.ones(RANK, 64), f"{name}.lora_up.weight": up},
        str(tmp_path / "n.safetensors"),
    )
    with pytest.raises(ConfigError, match="n.safetensors:1 into the unet failed: NaNs detected"):
        fuse_loras(copy.deepcopy(base_pipe.unet), "unet", [LoraSpec(tmp_path / "n.safetensors")])


def test_unknown_part(base_pipe, loras):
    with pytest.raises(ConfigError, match="not 'vae'"):
        fuse_loras(base_pipe.vae, "vae", [LoraSpec(loras["peft"])])
    assert fuse_loras(copy.deepcopy(base_pipe.text_encoder), "text_encoder", []) == []

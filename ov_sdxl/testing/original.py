"""Write a diffusers SDXL folder back as one original-layout (sgm) single file, for tests and notebooks.

    from ov_sdxl.testing import build_tiny_sources
    from ov_sdxl.testing.original import write_original_checkpoint
    base_dir, refiner_dir = build_tiny_sources("/tmp/tiny-src")
    write_original_checkpoint(base_dir, "/tmp/tiny-base.safetensors", "base")
    write_original_checkpoint(refiner_dir, "/tmp/tiny-refiner.safetensors", "refiner")

The layout is the one Stability AI's generative-models code saves and SDXL fine-tunes are shared in:

- UNet under ``model.diffusion_model.``: ``input_blocks.N`` (N=0 is conv_in; then per level ``layers_per_block``
  pairs of resnet ``.0`` and transformer ``.1``, then the downsampler ``.0.op``), ``middle_block.0/1/2``,
  ``output_blocks.N`` (``layers_per_block + 1`` per level, the upsampler at ``.1.conv``, or ``.2.conv`` after a
  transformer), ``time_embed.0/2``, ``label_emb.0.0/0.2`` (the text-time embedding), ``out.0/2``; resnets
  name their layers ``in_layers.0/2``, ``emb_layers.1``, ``out_layers.0/3``, ``skip_connection``.
- VAE under ``first_stage_model.``: ``encoder.down.N.block.M``, ``decoder.up.N.block.M`` (decoder levels numbered
  from the bottom), ``mid.block_1/2``, ``mid.attn_1`` whose q/k/v/proj_out are 1x1 convolutions, ``norm_out``,
  ``nin_shortcut``.
- The base's CLIP-L under ``conditioner.embedders.0.transformer.`` with Hugging Face's names (and
  ``position_ids``); OpenCLIP-G under ``conditioner.embedders.1.model.`` (the refiner's under
  ``conditioner.embedders.0.model.``) in open_clip's names: ``transformer.resblocks.N`` with q, k and v fused
  into ``attn.in_proj_weight``/``in_proj_bias``, ``positional_embedding``, ``ln_final``, ``text_projection``
  stored as a matrix applied from the right (the transpose of the Linear weight), and ``logit_scale``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ov_sdxl.errors import ConfigError, ModelNotFoundError

UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
OPEN_CLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
OPEN_CLIP_PREFIX = {"base": "conditioner.embedders.1.model.", "refiner": "conditioner.embedders.0.model."}

Rule = tuple[str, str, Mapping[str, str]]  # diffusers prefix, original prefix, renames of the first inner names


def unet_rules(config: Mapping[str, Any]) -> list[Rule]:
    """Prefix renames diffusers UNet -> original, for the block structure in ``config``."""
    per = config["layers_per_block"]
    if not isinstance(per, int):
        raise ConfigError(f"layers_per_block {per!r}: only one number for every level is supported")
    rules: list[Rule] = [
        ("time_embedding.linear_1.", "time_embed.0.", {}),
        ("time_embedding.linear_2.", "time_embed.2.", {}),
        ("add_embedding.linear_1.", "label_emb.0.0.", {}),
        ("add_embedding.linear_2.", "label_emb.0.2.", {}),
        ("conv_in.", "input_blocks.0.0.", {}),
        ("conv_norm_out.", "out.0.", {}),
        ("conv_out.", "out.2.", {}),
        ("mid_block.resnets.0.", "middle_block.0.", UNET_RESNET),
        ("mid_block.attentions.0.", "middle_block.1.", {}),
        ("mid_block.resnets.1.", "middle_block.2.", UNET_RESNET),
    ]
    for level in range(len(config["down_block_types"])):
        first = 1 + level * (per + 1)
        for i in range(per):
            rules.append((f"down_blocks.{level}.resnets.{i}.", f"input_blocks.{first + i}.0.", UNET_RESNET))
            rules.append((f"down_blocks.{level}.attentions.{i}.", f"input_blocks.{first + i}.1.", {}))
        rules.append((f"down_blocks.{level}.downsamplers.0.conv.", f"input_blocks.{first + per}.0.op.", {}))
    for level, kind in enumerate(config["up_block_types"]):
        first = level * (per + 1)
        for i in range(per + 1):
            rules.append((f"up_blocks.{level}.resnets.{i}.", f"output_blocks.{first + i}.0.", UNET_RESNET))
            rules.append((f"up_blocks.{level}.attentions.{i}.", f"output_blocks.{first + i}.1.", {}))
        slot = 2 if kind.startswith("CrossAttn") else 1  # the upsampler follows the transformer, if any
        rules.append((f"up_blocks.{level}.upsamplers.0.conv.", f"output_blocks.{first + per}.{slot}.conv.", {}))
    return rules


def vae_rules(config: Mapping[str, Any]) -> list[Rule]:
    """Prefix renames diffusers AutoencoderKL -> original."""
    rules: list[Rule] = [("quant_conv.", "quant_conv.", {}), ("post_quant_conv.", "post_quant_conv.", {})]
    for coder in ("encoder", "decoder"):
        rules += [
            (f"{coder}.conv_in.", f"{coder}.conv_in.", {}),
            (f"{coder}.conv_out.", f"{coder}.conv_out.", {}),
            (f"{coder}.conv_norm_out.", f"{coder}.norm_out.", {}),
            (f"{coder}.mid_block.resnets.0.", f"{coder}.mid.block_1.", {}),
            (f"{coder}.mid_block.resnets.1.", f"{coder}.mid.block_2.", {}),
            (f"{coder}.mid_block.attentions.0.", f"{coder}.mid.attn_1.", VAE_ATTENTION),
        ]
    levels = len(config["down_block_types"])
    for level in range(levels):
        rules.append((f"encoder.down_blocks.{level}.resnets.", f"encoder.down.{level}.block.", {}))
        rules.append((f"encoder.down_blocks.{level}.downsamplers.0.", f"encoder.down.{level}.downsample.", {}))
        up = levels - 1 - level  # the original numbers decoder levels from the lowest resolution up
        rules.append((f"decoder.up_blocks.{level}.resnets.", f"decoder.up.{up}.block.", {}))
        rules.append((f"decoder.up_blocks.{level}.upsamplers.0.", f"decoder.up.{up}.upsample.", {}))
    return rules


def _apply(state: Mapping[str, Any], rules: list[Rule], what: str) -> dict[str, Any]:
    out = {}
    for key, tensor in state.items():
        rule = next((r for r in rules if key.startswith(r[0])), None)
        if rule is None:
            raise ConfigError(f"{what} key {key!r} has no place in the original layout")
        source, target, inner = rule
        rest = key[len(source) :]
        for old, new in inner.items():
            if rest.startswith(old + "."):
                rest = new + rest[len(old) :]
                break
        out[target + rest] = tensor
    return out


def _vae(state: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    renamed = _apply(state, vae_rules(config), "VAE")
    out = {}
    for key, tensor in renamed.items():
        if ".mid.attn_1." in key and key.rsplit(".", 2)[-2] in ("q", "k", "v", "proj_out") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # the original's attention projections are 1x1 convolutions
        out[key.replace(".conv_shortcut.", ".nin_shortcut.")] = tensor  # resnets only have shortcuts
    return out


def _open_clip(state: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    state = dict(state)
    embeddings = "text_model.embeddings."
    out = {
        "token_embedding.weight": state.pop(embeddings + "token_embedding.weight"),
        "positional_embedding": state.pop(embeddings + "position_embedding.weight"),
        "ln_final.weight": state.pop("text_model.final_layer_norm.weight"),
        "ln_final.bias": state.pop("text_model.final_layer_norm.bias"),
        "text_projection": state.pop("text_projection.weight").T.contiguous(),
    }
    out["logit_scale"] = torch.tensor(
        math.log(100.0), dtype=out["ln_final.weight"].dtype, device=out["ln_final.weight"].device
    )
    layers = sorted({int(k.split(".")[3]) for k in state if k.startswith("text_model.encoder.layers.")})
    for i in layers:
        source, target = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            fused = [state.pop(f"{source}self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")]
            out[f"{target}attn.in_proj_{kind}"] = torch.cat(fused)
            for old, new in OPEN_CLIP_LAYER.items():
                out[f"{target}{new}.{kind}"] = state.pop(f"{source}{old}.{kind}")
    if state:
        raise ConfigError(f"OpenCLIP keys with no place in the original layout: {sorted(state)[:5]}")
    return out


def original_state_dict(
    components: Mapping[str, Mapping[str, Any]],
    unet_config: Mapping[str, Any],
    vae_config: Mapping[str, Any],
    stage: str,
) -> dict[str, Any]:
    """The single-file state dict from diffusers/transformers state dicts (``unet``, ``vae``, ``text_encoder``...)."""
    import torch

    if stage not in OPEN_CLIP_PREFIX:
        raise ConfigError(f"stage {stage!r} is not one of: {', '.join(OPEN_CLIP_PREFIX)}")
    out = {}
    out |= {
        "model.diffusion_model." + k: v for k, v in _apply(components["unet"], unet_rules(unet_config), "UNet").items()
    }
    out |= {"first_stage_model." + k: v for k, v in _vae(components["vae"], vae_config).items()}
    if stage == "base":
        clip_l = dict(components["text_encoder"])
        positions = clip_l["text_model.embeddings.position_embedding.weight"].shape[0]
        clip_l["text_model.embeddings.position_ids"] = torch.arange(positions)[None]  # the released files have it
        out |= {"conditioner.embedders.0.transformer." + k: v for k, v in clip_l.items()}
    out |= {OPEN_CLIP_PREFIX[stage] + k: v for k, v in _open_clip(components["text_encoder_2"]).items()}
    return out


def _component_state(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        raise ModelNotFoundError(f"{folder} should hold one .safetensors weights file, found {len(files)}")
    return load_file(files[0])


def write_original_checkpoint(diffusers_folder: str | Path, out_file: str | Path, stage: str) -> Path:
    """Write the diffusers SDXL ``stage`` folder as one original-layout .safetensors file."""
    from safetensors.torch import save_file

    folder, out_file = Path(diffusers_folder), Path(out_file)
    parts = ("unet", "vae", "text_encoder_2") + (("text_encoder",) if stage == "base" else ())
    for part in parts:
        if not (folder / part / "config.json").is_file():
            raise ModelNotFoundError(f"{folder} has no {part}/config.json; it is not an SDXL {stage} folder")
    configs = {p: json.loads((folder / p / "config.json").read_text(encoding="utf-8")) for p in ("unet", "vae")}
    components = {part: _component_state(folder / part) for part in parts}
    state = original_state_dict(components, configs["unet"], configs["vae"], stage)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, out_file, metadata={"format": "pt"})
    return out_file

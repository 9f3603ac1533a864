"""Tiny random SDXL LoRA files, in the diffusers/PEFT format and the kohya format, for tests and notebooks.

    from ov_sdxl.testing import build_tiny_sources
    from ov_sdxl.testing.lora_files import write_kohya_lora, write_peft_lora
    base_dir, _ = build_tiny_sources("/tmp/tiny-src")
    write_peft_lora(base_dir, "/tmp/loras/style.safetensors")                      # unet + both text encoders
    write_kohya_lora(base_dir, "/tmp/loras/detail.safetensors", text_encoders=False)

Both change the same layers: in the UNet's blocks every attention projection (to_q, to_k, to_v, to_out.0), the
transformers' proj_in/proj_out and feed-forward, the resnets' convolutions and time projection, the down/up
samplers; in each CLIP text encoder q/k/v/out_proj, fc1 and fc2. Weights are seeded random, large enough that a
LoRA visibly changes the output. The PEFT file is what diffusers' ``save_lora_weights`` writes (``unet.…lora_A/
lora_B.weight`` plus the ``LoraConfig`` in the header); the kohya file is what kohya's sd-scripts write for SDXL
(``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight``, ``lora_up.weight``, ``alpha``;
``lora_te1_…`` and ``lora_te2_…``), or with ``unet_names="diffusers"`` the diffusers block names
(``lora_unet_down_blocks_1_attentions_0_…``) that diffusers' training scripts write in kohya format.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

UNET_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "time_emb_proj", "conv",
)  # fmt: skip
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
KOHYA_PREFIX = {"unet": "lora_unet", "text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}
SGM_RESNET = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1"}
SGM_RESNET["conv_shortcut"] = "skip_connection"
SGM_MIDDLE = {("resnets", 0): 0, ("attentions", 0): 1, ("resnets", 1): 2}
STRENGTH = 0.2  # the fused change of a weight has about STRENGTH / sqrt(fan_in) standard deviation


def _components(source: Any, text_encoders: bool) -> dict[str, Any]:
    """The LoRA-able sub-models of a StableDiffusionXLPipeline or of a diffusers SDXL base folder."""
    if not isinstance(source, (str, Path)):
        found = {"unet": source.unet, "text_encoder": source.text_encoder, "text_encoder_2": source.text_encoder_2}
    else:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTextModelWithProjection

        found = {"unet": UNet2DConditionModel.from_pretrained(source, subfolder="unet")}
        if text_encoders:
            found["text_encoder"] = CLIPTextModel.from_pretrained(source, subfolder="text_encoder")
            found["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(source, subfolder="text_encoder_2")
    if not text_encoders:
        return {"unet": found["unet"]}
    return {part: module for part, module in found.items() if module is not None}


def _targets(module: Any, part: str) -> list[tuple[str, Any]]:
    import torch

    suffixes = UNET_TARGETS if part == "unet" else TEXT_TARGETS
    return [
        (name, layer)
        for name, layer in module.named_modules()
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)) and name.endswith(tuple(f".{s}" for s in suffixes))
    ]


def _down_up(layer: Any, rank: int, alpha: float, generator: Any) -> tuple[Any, Any]:
    """Random LoRA factors for a Linear or Conv2d layer (down: rank x in [x kh x kw], up: out x rank [x 1 x 1])."""
    import torch

    if isinstance(layer, torch.nn.Conv2d):
        down_shape = (rank, layer.in_channels, *layer.kernel_size)
        up_shape = (layer.out_channels, rank, 1, 1)
    else:
        down_shape, up_shape = (rank, layer.in_features), (layer.out_features, rank)
    fan_in = math.prod(down_shape[1:])
    down = torch.randn(down_shape, generator=generator) / math.sqrt(fan_in)
    up = torch.randn(up_shape, generator=generator) * STRENGTH / math.sqrt(rank) * (rank / alpha)
    return down.contiguous(), up.contiguous()


def write_peft_lora(
    pipeline_or_folder: Any,
    path: str | Path,
    rank: int = 4,
    seed: int = 0,
    text_encoders: bool = True,
    alpha: float | None = None,
) -> Path:
    """Write a diffusers/PEFT SDXL LoRA (``lora_alpha`` default ``2 * rank``) as ``save_lora_weights`` does."""
    import torch
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig

    path = Path(path)
    alpha = float(2 * rank if alpha is None else alpha)
    generator = torch.Generator().manual_seed(seed)
    layers: dict[str, dict] = {}
    configs: dict[str, dict] = {}
    for part, module in _components(pipeline_or_folder, text_encoders).items():
        layers[part] = {}
        for name, layer in _targets(module, part):
            down, up = _down_up(layer, rank, alpha, generator)
            layers[part][f"{name}.lora_A.weight"] = down
            layers[part][f"{name}.lora_B.weight"] = up
        targets = list(UNET_TARGETS if part == "unet" else TEXT_TARGETS)
        configs[part] = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets).to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionXLPipeline.save_lora_weights(
        path.parent,
        unet_lora_layers=layers["unet"],
        text_encoder_lora_layers=layers.get("text_encoder"),
        text_encoder_2_lora_layers=layers.get("text_encoder_2"),
        unet_lora_adapter_metadata=configs["unet"],
        text_encoder_lora_adapter_metadata=configs.get("text_encoder"),
        text_encoder_2_lora_adapter_metadata=configs.get("text_encoder_2"),
        weight_name=path.name,
    )
    log.info("PEFT LoRA (rank %d, alpha %g, parts %s) written to %s", rank, alpha, sorted(layers), path)
    return path


def sgm_unet_name(name: str, unet: Any) -> str:
    """A diffusers SDXL UNet module name in SDXL's original (SGM) UNet, as kohya's SDXL LoRAs name it.

    ``down_blocks.1.attentions.0.proj_in`` -> ``input_blocks.4.1.proj_in``;
    ``up_blocks.0.resnets.2.conv1`` -> ``output_blocks.2.0.in_layers.2``;
    ``mid_block.attentions.0.proj_in`` -> ``middle_block.1.proj_in``.
    """
    per = unet.config.layers_per_block + 1  # SGM numbers every resnet (+ attention) of a level, then its sampler
    block, *rest = name.split(".")
    if block == "mid_block":  # one flat sequence: resnet, transformer, resnet
        kind, index, inner = rest[0], int(rest[1]), ".".join(rest[2:])
        return f"middle_block.{SGM_MIDDLE[(kind, index)]}.{SGM_RESNET[inner] if kind == 'resnets' else inner}"
    level, kind, index, inner = int(rest[0]), rest[1], int(rest[2]), ".".join(rest[3:])
    if kind == "downsamplers":
        return f"input_blocks.{(level + 1) * per}.0.op"
    if kind == "upsamplers":
        after_attention = hasattr(unet.up_blocks[level], "attentions")
        return f"output_blocks.{level * per + per - 1}.{2 if after_attention else 1}.conv"
    if block == "down_blocks":
        sgm = f"input_blocks.{1 + level * per + index}"
    else:
        sgm = f"output_blocks.{level * per + index}"
    return f"{sgm}.0.{SGM_RESNET[inner]}" if kind == "resnets" else f"{sgm}.1.{inner}"


def write_kohya_lora(
    pipeline_or_folder: Any,
    path: str | Path,
    rank: int = 4,
    seed: int = 0,
    text_encoders: bool = True,
    alpha: float | None = None,
    unet_names: str = "sgm",
) -> Path:
    """Write a kohya-format SDXL LoRA (``alpha`` default ``rank / 2``); ``unet_names`` "sgm" or "diffusers"."""
    import torch
    from safetensors.torch import save_file

    if unet_names not in ("sgm", "diffusers"):
        raise ValueError(f"unet_names must be 'sgm' or 'diffusers', got {unet_names!r}")
    path = Path(path)
    alpha = float(rank / 2 if alpha is None else alpha)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for part, module in _components(pipeline_or_folder, text_encoders).items():
        for name, layer in _targets(module, part):
            if part == "unet" and unet_names == "sgm":
                name = sgm_unet_name(name, module)
            key = f"{KOHYA_PREFIX[part]}_{name.replace('.', '_')}"
            down, up = _down_up(layer, rank, alpha, generator)
            tensors[f"{key}.lora_down.weight"] = down
            tensors[f"{key}.lora_up.weight"] = up
            tensors[f"{key}.alpha"] = torch.tensor(alpha)
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": f"{alpha:g}",
        "ss_base_model_version": "sdxl_base_v1-0",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    log.info("kohya LoRA (rank %d, alpha %g, %s names) written to %s", rank, alpha, unet_names, path)
    return path

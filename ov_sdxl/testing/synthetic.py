"""A synthetic full-size SDXL: the real SDXL 1.0 architectures with random weights, built locally.

It has exactly the compute and memory of the real base and refiner, so speed and memory can be measured without
downloading them. The component configurations ship with the package (``data/sdxl_reference.json``: facts about
the public checkpoints); the tokenizers are real CLIP tokenizers built like the tiny model's.

    from ov_sdxl.testing.synthetic import build_synthetic_sources, count_parameters
    base_dir, refiner_dir = build_synthetic_sources("/data/sdxl-synthetic")   # ~7 + ~5 GB of fp16 safetensors
    count_parameters("base")                                                   # {"unet": 2567463684, ...}

The refiner takes ``text_encoder_2`` and the VAE from the base, byte for byte, as the real pair does.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ov_sdxl.convert import component_config, write_clip_tokenizer
from ov_sdxl.errors import ConfigError

log = logging.getLogger(__name__)

STAGES = ("base", "refiner")


@contextmanager
def _default_dtype(dtype: Any):
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_components(stage: str, device: str = "cpu", dtype: str = "fp16", seed: int = 0) -> dict[str, Any]:
    """The stage's models with random weights (``device="meta"`` allocates nothing: for counting)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if stage not in STAGES:
        raise ConfigError(f"stage {stage!r} is not one of: {', '.join(STAGES)}")
    torch_dtype = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    parts: dict[str, Any] = {"scheduler": EulerDiscreteScheduler.from_config(component_config(stage, "scheduler"))}
    with torch.device(device), _default_dtype(torch_dtype):
        torch.manual_seed(seed)
        if stage == "base":
            parts["text_encoder"] = CLIPTextModel(CLIPTextConfig(**component_config("base", "text_encoder")))
        torch.manual_seed(seed + 1)  # the same second encoder and VAE for both stages
        parts["text_encoder_2"] = CLIPTextModelWithProjection(
            CLIPTextConfig(**component_config("base", "text_encoder_2"))
        )
        torch.manual_seed(seed + 2)
        parts["vae"] = AutoencoderKL(**component_config("base", "vae"))
        torch.manual_seed(seed + (3 if stage == "base" else 4))
        parts["unet"] = UNet2DConditionModel(**component_config(stage, "unet"))
    return parts


def count_parameters(stage: str) -> dict[str, int]:
    """Parameters per model of the stage, counted without allocating weights."""
    parts = build_components(stage, device="meta")
    return {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items() if name != "scheduler"}


def build_synthetic_sources(directory: str | Path, dtype: str = "fp16", seed: int = 0) -> tuple[Path, Path]:
    """Write base and refiner diffusers folders (safetensors) under ``directory``, and a TAESDXL in
    ``directory/taesdxl``; reuse them when complete."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    directory = Path(directory)
    tokenizers = directory / "tokenizers"
    write_clip_tokenizer(tokenizers / "tokenizer", pad_token="<|endoftext|>")
    write_clip_tokenizer(tokenizers / "tokenizer_2", pad_token="!")  # as in the real base and refiner
    tokenizer = CLIPTokenizer.from_pretrained(tokenizers / "tokenizer")
    tokenizer_2 = CLIPTokenizer.from_pretrained(tokenizers / "tokenizer_2")
    out = {}
    for stage in STAGES:
        folder = directory / stage
        out[stage] = folder
        if (folder / "model_index.json").is_file():
            log.info("synthetic %s already in %s", stage, folder)
            continue
        log.info("building the synthetic %s (%s, random weights) in %s", stage, dtype, folder)
        parts = build_components(stage, dtype=dtype, seed=seed)
        flags = component_config(stage, "model_index")
        flags = {k: v for k, v in flags.items() if k in ("force_zeros_for_empty_prompt", "requires_aesthetics_score")}
        if stage == "base":
            pipe = StableDiffusionXLPipeline(
                tokenizer=tokenizer, tokenizer_2=tokenizer_2, add_watermarker=False, **parts, **flags
            )
        else:
            pipe = StableDiffusionXLImg2ImgPipeline(
                text_encoder=None, tokenizer=None, tokenizer_2=tokenizer_2, add_watermarker=False, **parts, **flags
            )
        partial = folder.with_name(folder.name + ".partial")
        pipe.save_pretrained(partial, safe_serialization=True)
        partial.rename(folder)
        del pipe, parts
    _build_taesdxl(directory / "taesdxl", seed)
    return out["base"], out["refiner"]


def _build_taesdxl(folder: Path, seed: int) -> None:
    """TAESDXL's architecture (diffusers' AutoencoderTiny defaults, as madebyollin/taesdxl's config), random."""
    import torch
    from diffusers import AutoencoderTiny

    if (folder / "config.json").is_file():
        return
    torch.manual_seed(seed + 5)
    partial = folder.with_name(folder.name + ".partial")
    AutoencoderTiny().eval().save_pretrained(partial, safe_serialization=True)
    partial.rename(folder)

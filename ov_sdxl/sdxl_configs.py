"""The SDXL 1.0 base and refiner configurations shipped with ov-sdxl, as diffusers folders without weights.

    from ov_sdxl.sdxl_configs import default_config_dir
    folder = default_config_dir("base")   # model_index.json, unet/vae/text encoder configs, scheduler, tokenizers

They come from ``data/sdxl_reference.json`` (facts about the public checkpoints) and real CLIP tokenizers built
offline (``ov_sdxl.testing.write_clip_tokenizer``); single-file checkpoints are read against them
(``ov_sdxl.single_file``). Each folder is written once into the cache and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ov_sdxl.errors import ConfigError

PARTS = {"base": ("unet", "vae", "text_encoder", "text_encoder_2"), "refiner": ("unet", "vae", "text_encoder_2")}
PIPELINES = {"base": "StableDiffusionXLPipeline", "refiner": "StableDiffusionXLImg2ImgPipeline"}
CLASSES = {
    "unet": ("diffusers", "UNet2DConditionModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"),
}
TOKENIZER_PADS = {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}  # as the real base and refiner ship them


def default_config_dir(stage: str) -> Path:
    """The shipped SDXL 1.0 config folder of ``stage``, written once into the cache (``$XDG_CACHE_HOME``)."""
    from ov_sdxl.synthetic import reference

    check_part(stage)
    digest = hashlib.sha256(json.dumps(reference()[stage], sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ov-sdxl" / "single-file-config"
    folder = cache / f"sdxl-{stage}-{digest}"
    if (folder / "model_index.json").is_file():
        return folder
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    write_config_folder(stage, partial)
    try:
        partial.rename(folder)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
        if not (folder / "model_index.json").is_file():
            raise
    return folder


def write_config_folder(stage: str, dest: str | Path) -> Path:
    """Write a diffusers folder without weights from the shipped reference: configs, scheduler, tokenizers."""
    import diffusers
    from transformers import CLIPTextConfig

    from ov_sdxl.synthetic import reference
    from ov_sdxl.testing import write_clip_tokenizer

    check_part(stage)
    ref, dest = reference()[stage], Path(dest)
    version = {"_diffusers_version": diffusers.__version__}

    def plain(part: str) -> dict[str, Any]:
        return {k: v for k, v in ref[part].items() if not k.startswith("_")}

    def write(path: Path, data: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    none = [None, None]
    index = {"_class_name": PIPELINES[stage], **version, **plain("model_index"), "text_encoder": none}
    index |= {"feature_extractor": none, "image_encoder": none, "tokenizer": none}
    index["scheduler"] = ["diffusers", ref["scheduler"]["_class_name"]]
    write(dest / "scheduler" / "scheduler_config.json", {**ref["scheduler"], **version})
    for part in PARTS[stage]:
        library, name = index[part] = list(CLASSES[part])
        if library == "diffusers":
            write(dest / part / "config.json", {"_class_name": name, **version, **plain(part)})
        else:
            CLIPTextConfig(**plain(part)).save_pretrained(dest / part)
    for name in tokenizers(stage):
        index[name] = ["transformers", "CLIPTokenizer"]
        write_clip_tokenizer(dest / name, pad_token=TOKENIZER_PADS[name])
    write(dest / "model_index.json", index)
    return dest


def check_part(stage: str, part: str | None = None) -> None:
    if stage not in PARTS:
        raise ConfigError(f"stage {stage!r} is not one of: {', '.join(PARTS)}")
    if part is not None and part not in PARTS[stage]:
        raise ConfigError(f"part {part!r} is not one of the SDXL {stage}'s: {', '.join(PARTS[stage])}")


def tokenizers(stage: str) -> tuple[str, ...]:
    return ("tokenizer", "tokenizer_2") if stage == "base" else ("tokenizer_2",)

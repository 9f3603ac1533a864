"""SDXL 1.0 as ov-sdxl ships it: the base and refiner configurations, and the CLIP tokenizer, built offline.

    from ov_sdxl.convert.reference import component_config, default_config_dir, write_clip_tokenizer
    folder = default_config_dir("base")   # model_index.json, unet/vae/text encoder configs, scheduler, tokenizers
    component_config("refiner", "unet")   # the refiner UNet's diffusers config, as a dict
    write_clip_tokenizer(Path("tok"), pad_token="!")   # SDXL's tokenizer_2, from the BPE file open-clip-torch ships

The configurations come from ``data/sdxl_reference.json`` (facts about the public checkpoints); single-file
checkpoints are read against them (``ov_sdxl.convert.single_file``), and the tiny and synthetic models of
``ov_sdxl.testing`` are built from them. Each config folder is written once into the cache and reused.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from ov_sdxl.errors import ConfigError

PARTS = {"base": ("unet", "vae", "text_encoder", "text_encoder_2"), "refiner": ("unet", "vae", "text_encoder_2")}
PIPELINES = {"base": "StableDiffusionXLPipeline", "refiner": "StableDiffusionXLImg2ImgPipeline"}
INPAINTING_CLASS = "StableDiffusionXLInpaintPipeline"  # a base whose UNet takes 9 channels (inpaint, outpaint only)
INPAINTING_CHANNELS = 9  # latents, mask, the masked image's latents
CLASSES = {
    "unet": ("diffusers", "UNet2DConditionModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"),
}
TOKENIZER_PADS = {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}  # as the real base and refiner ship them


def reference() -> dict[str, Any]:
    """The shipped component configurations of SDXL 1.0 base and refiner (``_``-keys are notes, not config)."""
    return json.loads(resources.files("ov_sdxl").joinpath("data/sdxl_reference.json").read_text(encoding="utf-8"))


def component_config(stage: str, part: str) -> dict[str, Any]:
    """One component's configuration (``part`` also ``scheduler`` or ``model_index``), without the notes."""
    return {k: v for k, v in reference()[stage][part].items() if not k.startswith("_")}


def default_config_dir(stage: str, inpainting: bool = False) -> Path:
    """The shipped SDXL 1.0 config folder of ``stage`` (``inpainting``: the base with a 9-channel UNet), written
    once into the cache (``$XDG_CACHE_HOME``)."""
    check_part(stage)
    digest = hashlib.sha256(json.dumps(reference()[stage], sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ov-sdxl" / "single-file-config"
    folder = cache / f"sdxl-{stage}{'-inpainting' if inpainting else ''}-{digest}"
    if (folder / "model_index.json").is_file():
        return folder
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    write_config_folder(stage, partial, inpainting)
    try:
        partial.rename(folder)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
        if not (folder / "model_index.json").is_file():
            raise
    return folder


def write_config_folder(stage: str, dest: str | Path, inpainting: bool = False) -> Path:
    """Write a diffusers folder without weights from the shipped reference: configs, scheduler, tokenizers
    (``inpainting``: an inpainting base, its UNet taking 9 channels)."""
    import diffusers
    from transformers import CLIPTextConfig

    check_part(stage)
    ref, dest = reference()[stage], Path(dest)
    version = {"_diffusers_version": diffusers.__version__}

    def plain(part: str) -> dict[str, Any]:
        return {k: v for k, v in ref[part].items() if not k.startswith("_")}

    def write(path: Path, data: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    none = [None, None]
    if inpainting and stage != "base":
        raise ConfigError(f"an inpainting model is a base, not a {stage}")
    pipeline = INPAINTING_CLASS if inpainting else PIPELINES[stage]
    index = {"_class_name": pipeline, **version, **plain("model_index"), "text_encoder": none}
    index |= {"feature_extractor": none, "image_encoder": none, "tokenizer": none}
    index["scheduler"] = ["diffusers", ref["scheduler"]["_class_name"]]
    write(dest / "scheduler" / "scheduler_config.json", {**ref["scheduler"], **version})
    for part in PARTS[stage]:
        library, name = index[part] = list(CLASSES[part])
        if library == "diffusers":
            channels = {"in_channels": INPAINTING_CHANNELS} if inpainting and part == "unet" else {}
            write(dest / part / "config.json", {"_class_name": name, **version, **plain(part), **channels})
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


def clip_bpe_path() -> Path:
    """The CLIP BPE merges file shipped inside the ``open-clip-torch`` package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "SDXL's offline tokenizer needs the CLIP BPE file from open-clip-torch: pip install open-clip-torch"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise ConfigError(f"open-clip-torch is installed but {path} is missing; reinstall open-clip-torch")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes, strict=True)}


def write_clip_tokenizer(directory: Path, pad_token: str) -> None:
    """Write a CLIP tokenizer (vocab 49408, 77 tokens) as SDXL ships it; ``pad_token`` is "<|endoftext|>" or "!"."""
    from transformers import CLIPTokenizer

    lines = gzip.open(clip_bpe_path()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(_bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(
        vocab=str(directory / "vocab.json"), merges=str(directory / "merges.txt"), pad_token=pad_token
    )
    tokenizer.model_max_length = 77
    tokenizer.save_pretrained(directory)

"""SDXL single-file checkpoints in the original (sgm) layout, loaded offline one component at a time.

    from ov_sdxl.convert.single_file import inspect_checkpoint, load_component, write_pipeline_folder
    stage = inspect_checkpoint("my-finetune.safetensors")               # "base" or "refiner"; reads the header only
    unet = load_component("my-finetune.safetensors", stage, "unet")      # diffusers UNet2DConditionModel, float32
    write_pipeline_folder("my-finetune.safetensors", stage, "/tmp/my-finetune")  # a complete diffusers folder

The layout is the one Stability AI's generative-models code saves and fine-tunes are shared in: the UNet under
``model.diffusion_model.``, the VAE under ``first_stage_model.``; the base's CLIP-L under
``conditioner.embedders.0.transformer.`` and OpenCLIP-G under ``conditioner.embedders.1.model.``; the refiner has
OpenCLIP-G only, under ``conditioner.embedders.0.model.``. The key conversion is diffusers' own
(``diffusers.loaders.single_file_utils``); the architectures come from a local config folder: ``config_dir`` (a
diffusers folder whose configs describe the checkpoint) or, by default, the SDXL 1.0 configurations shipped in
``data/sdxl_reference.json`` with real CLIP tokenizers built offline. Nothing is downloaded.

Memory: of a safetensors file only the header and the requested component's tensors are read, each cast to the
target dtype as it is read, and the model is built without weights and then given those tensors: loading the base
UNet in float32 holds ~10 GB (fp16: ~5 GB), never the whole file. A pickle checkpoint (``allow_pickle=True`` only)
is read with ``torch.load(weights_only=True, mmap=True)``: tensors stay mapped and only the component's are
touched (an old non-zip pickle cannot be mapped and is read whole).
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from ov_sdxl.convert.reference import (
    CLASSES,
    INPAINTING_CHANNELS,
    INPAINTING_CLASS,
    PARTS,
    PIPELINES,
    check_part,
    default_config_dir,
    tokenizers,
)
from ov_sdxl.errors import ConfigError, ModelNotFoundError
from ov_sdxl.specs import PICKLE_SUFFIXES

log = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
UNET_PREFIX, VAE_PREFIX = "model.diffusion_model.", "first_stage_model."
CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
OPEN_CLIP_G_PREFIX = {"base": "conditioner.embedders.1.model.", "refiner": "conditioner.embedders.0.model."}
# Stored by the original code, rebuilt by transformers: not weights.
IGNORED_KEYS = ("text_model.embeddings.position_ids", "embeddings.position_ids")
# Key prefixes of other model families, to say what a refused file is.
OTHER_FAMILIES = {
    "cond_stage_model.transformer.": "Stable Diffusion 1.x (CLIP text encoder under cond_stage_model.transformer.*)",
    "cond_stage_model.model.": "Stable Diffusion 2.x (OpenCLIP text encoder under cond_stage_model.model.*)",
    "text_encoders.": "Stable Diffusion 3 (text encoders under text_encoders.*)",
    "lora_unet_": "a LoRA (lora_unet_* keys), not a full checkpoint",
    "down_blocks.": "a single diffusers model's weights (down_blocks.*), not a full checkpoint",
}
CONFIG_HINT = "pass a diffusers folder whose configs describe this model as config_dir (--single-file-config DIR)"


def is_single_file(path: str | Path) -> bool:
    """True when ``path`` names a checkpoint file by its suffix (.safetensors, or a pickle: .ckpt, .pt, .pth, .bin...).

    It need not exist (``inspect_checkpoint`` then says it is missing); a directory is never a single file.
    """
    path = Path(path)
    return path.suffix.lower() in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES and not path.is_dir()


def inspect_checkpoint(path: str | Path, allow_pickle: bool = False) -> str:
    """The stage ("base" or "refiner") of an SDXL single-file checkpoint, from its keys; refuses anything else."""
    return _Checkpoint(path, allow_pickle).stage


def is_inpainting_checkpoint(path: str | Path, allow_pickle: bool = False) -> bool:
    """Whether an SDXL single-file checkpoint is an inpainting base (its UNet takes 9 channels)."""
    return _Checkpoint(path, allow_pickle).inpainting


def load_component(
    checkpoint: str | Path,
    stage: str,
    part: str,
    torch_dtype: Any = None,
    config_dir: str | Path | None = None,
    allow_pickle: bool = False,
) -> Any:
    """One component (unet, vae, text_encoder, text_encoder_2) of ``stage`` as a diffusers/transformers module.

    ``torch_dtype`` None means float32, as diffusers' loaders; the weights must fit the config exactly.
    """
    check_part(stage, part)
    ckpt = _Checkpoint(checkpoint, allow_pickle)
    _check_stage(ckpt, stage)
    folder = Path(config_dir) if config_dir is not None else default_config_dir(stage, ckpt.inpainting)
    model = _empty_model(folder, part)
    import torch

    dtype = torch_dtype or torch.float32
    state = ckpt.tensors(_prefix(stage, part), dtype)
    converted = _convert(model, stage, part, state)
    del state
    where = str(folder) if config_dir is not None else "the shipped SDXL 1.0 configuration"
    _check_fits(model, converted, f"the {part} weights in {ckpt.path}", where)
    model.load_state_dict(converted, strict=True, assign=True)
    return model.eval()  # already in dtype: every floating tensor was cast as it was read


def write_pipeline_folder(
    checkpoint: str | Path,
    stage: str,
    dest: str | Path,
    config_dir: str | Path | None = None,
    allow_pickle: bool = False,
    torch_dtype: Any = None,
    parts: tuple[str, ...] | None = None,
) -> Path:
    """Write ``stage`` of the checkpoint as a diffusers folder (safetensors), one component in memory at a time.

    model_index.json, the scheduler and the tokenizers come from the config folder. ``parts`` limits the weights
    written (e.g. one per process); the other files are always written. Existing files in ``dest`` are replaced.
    """
    check_part(stage)
    parts = PARTS[stage] if parts is None else tuple(parts)
    for part in parts:
        check_part(stage, part)
    ckpt = _Checkpoint(checkpoint, allow_pickle)
    _check_stage(ckpt, stage)
    folder = Path(config_dir) if config_dir is not None else default_config_dir(stage, ckpt.inpainting)
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelNotFoundError(f"config folder {folder} has no model_index.json; it must be a diffusers folder")
    found = json.loads(index_file.read_text(encoding="utf-8")).get("_class_name")
    wanted = INPAINTING_CLASS if ckpt.inpainting else PIPELINES[stage]
    if found != wanted:
        raise ConfigError(f"config folder {folder} holds a {found}, not the {stage}'s {wanted}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(index_file, dest / "model_index.json")
    for name in ("scheduler", *tokenizers(stage)):
        if not (folder / name).is_dir():
            raise ModelNotFoundError(f"config folder {folder} has no {name}/ folder")
        shutil.copytree(folder / name, dest / name, dirs_exist_ok=True)
    for part in parts:
        log.info("writing the %s's %s from %s to %s", stage, part, checkpoint, dest / part)
        model = load_component(checkpoint, stage, part, torch_dtype, config_dir=config_dir, allow_pickle=allow_pickle)
        model.save_pretrained(dest / part)
        del model
        gc.collect()
    return dest


class _Checkpoint:
    """A checkpoint's key -> shape table (safetensors: from the header only) and its tensors by key prefix."""

    def __init__(self, path: str | Path, allow_pickle: bool):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if not self.path.is_file():
            raise ModelNotFoundError(f"checkpoint {self.path} does not exist (or is not a file)")
        if suffix not in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES:
            kinds = ", ".join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)
            raise ConfigError(f"checkpoint {self.path} is not a single-file checkpoint ({kinds})")
        self._state = None
        if suffix in PICKLE_SUFFIXES:
            if not allow_pickle:
                raise ConfigError(
                    f"{self.path} is a pickle checkpoint ({suffix}), and unpickling can run code; convert it to "
                    ".safetensors, or allow it (allow_pickle=True, --allow-pickle) if you trust the file"
                )
            self._state = _load_pickle(self.path)
            self.shapes = {k: tuple(v.shape) for k, v in self._state.items()}
        else:
            with self._open() as f:
                self.shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        self.stage = _detect_stage(self.shapes, self.path)
        conv_in = self.shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
        self.inpainting = conv_in is not None and conv_in[1] == INPAINTING_CHANNELS

    def _open(self):
        from safetensors import SafetensorError, safe_open

        try:
            return safe_open(self.path, framework="pt", device="cpu")
        except (SafetensorError, OSError) as exc:
            raise ConfigError(f"cannot read {self.path} as safetensors ({exc}); is the file complete?") from exc

    def tensors(self, prefix: str, dtype: Any) -> dict[str, Any]:
        """The tensors whose key starts with ``prefix``, floating ones cast to ``dtype`` one at a time."""
        from safetensors import SafetensorError

        def cast(tensor):
            return tensor.to(dtype) if tensor.is_floating_point() else tensor

        if self._state is not None:
            return {k: cast(v) for k, v in self._state.items() if k.startswith(prefix)}
        try:
            with self._open() as f:
                return {k: cast(f.get_tensor(k)) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118
        except SafetensorError as exc:
            raise ConfigError(f"cannot read the tensors of {self.path} ({exc}); is the file complete?") from exc


def _load_pickle(path: Path) -> dict[str, Any]:
    import pickle
    import zipfile

    import torch

    log.warning(
        "%s is a pickle file: unpickling can run code. It is read with torch.load(weights_only=True), which accepts"
        " only tensors and plain containers; prefer .safetensors files",
        path,
    )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"{path} holds Python objects besides tensors, which ov-sdxl does not unpickle ({reason}); convert it "
            "to .safetensors where you trust it"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} as a PyTorch checkpoint ({exc})") from exc
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # {"state_dict": {...}, ...}
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _detect_stage(shapes: dict[str, tuple[int, ...]], path: Path) -> str:
    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in shapes)

    if has(CLIP_L_PREFIX) and has(OPEN_CLIP_G_PREFIX["base"]):
        stage = "base"
    elif has(OPEN_CLIP_G_PREFIX["refiner"]) and not has("conditioner.embedders.1."):
        stage = "refiner"
    else:
        raise ConfigError(f"{path} is not an SDXL base or refiner checkpoint: {_describe(shapes)}")
    missing = [name for name, prefix in (("UNet", UNET_PREFIX), ("VAE", VAE_PREFIX)) if not has(prefix)]
    if missing:
        raise ConfigError(
            f"{path} is an SDXL {stage} checkpoint without its {' and '.join(missing)} ({UNET_PREFIX}*, "
            f"{VAE_PREFIX}*); ov-sdxl needs a complete checkpoint"
        )
    conv_in = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    inpainting = stage == "base" and conv_in is not None and len(conv_in) == 4 and conv_in[1] == INPAINTING_CHANNELS
    if conv_in is not None and len(conv_in) == 4 and conv_in[1] != 4 and not inpainting:
        raise ConfigError(
            f"{path} is an SDXL {stage} whose UNet takes {conv_in[1]} input channels (an instruct-pix2pix or "
            "other image-conditioned model); ov-sdxl converts SDXL text-to-image (4 channels) and inpainting "
            "bases (9 channels)"
        )
    return stage


def _describe(shapes: dict[str, tuple[int, ...]]) -> str:
    """What the keys look like: a known other family, and the most common key prefixes."""
    wrappers = ("model", "conditioner", "cond_stage_model")
    groups = Counter(".".join(k.split(".")[: 2 if k.split(".")[0] in wrappers else 1]) for k in shapes)
    found = ", ".join(f"{name}.* ({count})" for name, count in groups.most_common(6)) or "no tensors at all"
    families = [family for prefix, family in OTHER_FAMILIES.items() if any(k.startswith(prefix) for k in shapes)]
    looks = f"it looks like {families[0]}; " if families else ""
    return f"{looks}no SDXL text encoders under conditioner.embedders.*; its keys: {found}"


def _check_stage(ckpt: _Checkpoint, stage: str) -> None:
    if ckpt.stage != stage:
        raise ConfigError(
            f"{ckpt.path} is an SDXL {ckpt.stage} checkpoint, not a {stage}; pass it as the {ckpt.stage}"
        )


def _prefix(stage: str, part: str) -> str:
    prefixes = {"unet": UNET_PREFIX, "vae": VAE_PREFIX, "text_encoder": CLIP_L_PREFIX}
    return prefixes.get(part) or OPEN_CLIP_G_PREFIX[stage]


def _empty_model(folder: Path, part: str) -> Any:
    """The part's model from ``folder/part/config.json``, without allocating its weights (accelerate's meta init)."""
    import importlib
    from contextlib import nullcontext

    from diffusers.utils import is_accelerate_available

    config_file = folder / part / "config.json"
    if not config_file.is_file():
        raise ModelNotFoundError(f"config folder {folder} has no {part}/config.json; {CONFIG_HINT}")
    library, name = CLASSES[part]
    cls = getattr(importlib.import_module(library), name)
    if is_accelerate_available():
        from accelerate import init_empty_weights

        empty = init_empty_weights()
    else:
        log.info("accelerate is not installed: the %s is built with random weights before loading", part)
        empty = nullcontext()
    with empty:
        if library == "diffusers":
            return cls.from_config(cls.load_config(folder / part))
        return cls(cls.config_class.from_pretrained(folder / part, local_files_only=True))


def _convert(model: Any, stage: str, part: str, state: dict[str, Any]) -> dict[str, Any]:
    """Original-layout tensors -> the model's own key names, with diffusers' conversion functions."""
    from diffusers.loaders import single_file_utils as sfu

    if part == "unet":
        return sfu.convert_ldm_unet_checkpoint(state, model.config)
    if part == "vae":
        return {k: v.contiguous() for k, v in sfu.convert_ldm_vae_checkpoint(state, model.config).items()}
    if part == "text_encoder":
        converted = sfu.convert_ldm_clip_checkpoint(state)
    else:
        converted = sfu.convert_open_clip_checkpoint(model, state, prefix=OPEN_CLIP_G_PREFIX[stage])
    if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    return {k: v for k, v in converted.items() if k not in IGNORED_KEYS}


def _check_fits(model: Any, converted: dict[str, Any], what: str, where: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in IGNORED_KEYS}
    got = {k: tuple(v.shape) for k, v in converted.items()}
    wrong = [f"{k} {got[k]} vs {expected[k]}" for k in sorted(expected.keys() & got.keys()) if got[k] != expected[k]]
    missing, unexpected = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    problems = [
        f"{len(items)} {kind} (e.g. {', '.join(items[:2])})"
        for kind, items in (("shapes differ, file vs config", wrong), ("missing", missing), ("unexpected", unexpected))
        if items
    ]
    if problems:
        raise ConfigError(
            f"{what} do not fit {where}: {'; '.join(problems)}. If the model's architecture differs, {CONFIG_HINT}"
        )

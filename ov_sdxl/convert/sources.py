"""Where a conversion's weights and configurations come from, and how large they are.

    from ov_sdxl.convert.sources import resolve_source, estimate
    source = resolve_source("stabilityai/stable-diffusion-xl-base-1.0", "base", config)   # -> StageSource
    source = resolve_source("my-finetune.safetensors", "base", config)                     # single file
    peak, disk = estimate({"base": source}, WeightFormat.INT8)                             # bytes

A source is a hub id (configs and safetensors fetched into the Hugging Face cache: the fp16 variant unless fp32 is
asked), a diffusers folder of the stage's pipeline class, or a single-file checkpoint (its configurations from
``--single-file-config`` or the shipped SDXL 1.0 ones). Sizes come from the safetensors headers, never the weights.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ov_sdxl.config import ConvertConfig, WeightFormat
from ov_sdxl.convert.reference import INPAINTING_CLASS, PIPELINES
from ov_sdxl.errors import ConfigError, ModelNotFoundError
from ov_sdxl.specs import PICKLE_SUFFIXES

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
STAGE_CLASSES = PIPELINES  # the diffusers pipeline class of each stage's folder (an inpainting base: INPAINTING_CLASS)
STAGE_GROUPS = {
    "base": (("unet",), ("text_encoder", "text_encoder_2", "vae_decoder", "vae_encoder")),
    "refiner": (("unet",), ("text_encoder_2", "vae_decoder", "vae_encoder")),
}
COMPONENT = {"text_encoder": "text_encoder", "text_encoder_2": "text_encoder_2", "unet": "unet"}
COMPONENT.update(vae_encoder="vae", vae_decoder="vae")


@dataclass(frozen=True)
class StageSource:
    """Where one stage's configs (``folder``) and weights (``folder``, or ``checkpoint``) come from."""

    label: str
    folder: Path
    checkpoint: Path | None = None


def resolve_source(source: str, stage: str, config: ConvertConfig) -> StageSource:
    """A hub id, a diffusers folder of the stage's pipeline class, or a single-file SDXL checkpoint."""
    path = Path(source).expanduser()
    if path.is_file():
        return _single_file_source(source, path, stage, config)
    if path.is_dir():
        _check_folder(path, stage)
        return StageSource(label=source, folder=path)
    if HUB_ID.match(source) and not source.startswith((".", "~")):
        return StageSource(label=source, folder=_hub_snapshot(source, stage, config.weights))
    raise ModelNotFoundError(f"--{stage} {source} is neither an existing folder or file nor a hub id like owner/name")


def _single_file_source(source: str, path: Path, stage: str, config: ConvertConfig) -> StageSource:
    from ov_sdxl.convert.reference import default_config_dir
    from ov_sdxl.convert.single_file import inspect_checkpoint, is_inpainting_checkpoint, is_single_file

    if not is_single_file(path):
        raise ConfigError(
            f"--{stage} {source} is a file but not a checkpoint (.safetensors, or .ckpt with --allow-pickle)"
        )
    found = inspect_checkpoint(path, allow_pickle=config.allow_pickle)
    if found != stage:
        raise ConfigError(f"--{stage} {source} is an SDXL {found} checkpoint (did you swap --base and --refiner?)")
    inpainting = is_inpainting_checkpoint(path, allow_pickle=config.allow_pickle)
    folder = _single_file_config(config.single_file_config, stage, inpainting) or default_config_dir(stage, inpainting)
    return StageSource(label=source, folder=folder, checkpoint=path)


def _single_file_config(folder: Path | None, stage: str, inpainting: bool = False) -> Path | None:
    """``--single-file-config``: the stage's diffusers folder, or a folder holding ``base/`` and ``refiner/``."""
    if folder is None:
        return None
    wanted = INPAINTING_CLASS if inpainting else STAGE_CLASSES[stage]
    for candidate in (folder, folder / stage):
        index = candidate / "model_index.json"
        if index.is_file() and json.loads(index.read_text(encoding="utf-8")).get("_class_name") == wanted:
            _check_folder(candidate, stage, what="--single-file-config")
            return candidate
    raise ConfigError(
        f"--single-file-config {folder} holds no configuration for the {stage}: give a diffusers folder of a "
        f"{wanted}, or a folder with base/ and refiner/ inside"
    )


def is_inpainting(source: StageSource) -> bool:
    """Whether ``source`` is an SDXL inpainting model (its UNet takes the mask and the masked image too)."""
    index = source.folder / "model_index.json"
    return json.loads(index.read_text(encoding="utf-8")).get("_class_name") == INPAINTING_CLASS


def _check_folder(path: Path, stage: str, what: str | None = None) -> None:
    what = what or f"--{stage}"
    index = path / "model_index.json"
    if not index.is_file():
        raise ModelNotFoundError(f"{what} {path} has no model_index.json; it is not a diffusers folder")
    class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    if class_name != STAGE_CLASSES[stage] and not (stage == "base" and class_name == INPAINTING_CLASS):
        raise ConfigError(
            f"{what} {path} is a {class_name}, expected a {STAGE_CLASSES[stage]} (did you swap --base and --refiner?)"
        )
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        pickled = [p.name for p in sub.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickled and not any(sub.glob("*.safetensors")):
            raise ConfigError(
                f"{what} {path}: {sub.name}/{pickled[0]} is a pickled checkpoint and there is no .safetensors "
                "beside it; ov-sdxl loads safetensors only (convert the weights to safetensors first)"
            )


def _hub_snapshot(repo_id: str, stage: str, weights: WeightFormat) -> Path:
    """The hub model's configs and safetensors weights in the local cache (the fp16 variant unless fp32 is asked)."""
    patterns = ["model_index.json", "*.json", "*.txt"]
    fp16 = weights is not WeightFormat.FP32
    folder = hub_download(repo_id, [*patterns, "*.fp16.safetensors" if fp16 else "*.safetensors"], f"--{stage}")
    if fp16 and not any(folder.glob("unet/*.safetensors")):  # no fp16 variant
        folder = hub_download(repo_id, [*patterns, "*.safetensors"], f"--{stage}")
    _check_folder(folder, stage)
    return folder


def hub_download(repo_id: str, patterns: list[str], flag: str) -> Path:
    """The files of hub model ``repo_id`` matching ``patterns``, fetched into (or found in) the Hugging Face cache;
    a failure is a ModelNotFoundError naming ``flag`` and the cause."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=constants.HF_HUB_OFFLINE))
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        if constants.HF_HUB_OFFLINE:
            raise ModelNotFoundError(
                f"{flag} {repo_id}: the hub is offline (HF_HUB_OFFLINE=1) and this model is not in the local "
                "Hugging Face cache; download it first or pass a local folder"
            ) from None
        raise ModelNotFoundError(f"{flag} {repo_id}: {hub_problem(exc)}") from exc


def hub_problem(exc: Exception) -> str:
    """What went wrong with a hub download, in one line of ours (the library's sentences span several)."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(exc, GatedRepoError):
        return "the model is gated: accept its license on huggingface.co, then log in with `hf auth login`"
    if isinstance(exc, RepositoryNotFoundError):
        return "no such model on the hub (or it is private: log in with `hf auth login`); check the id"
    if isinstance(exc, LocalEntryNotFoundError):
        return "cannot reach the Hugging Face hub (no network?); pass a local diffusers folder or .safetensors file"
    return f"cannot download it from the hub ({type(exc).__name__}); pass a local diffusers folder or file instead"


# -- sizes and the resource check ----------------------------------------------------------------------------------
def _safetensors_numel(files: list[Path], prefix: str = "") -> int:
    """Elements of every tensor (whose name starts with ``prefix``) in safetensors files, from their headers."""
    total = 0
    for file in files:
        with open(file, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        for name, entry in header.items():
            if name != "__metadata__" and name.startswith(prefix):
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                total += count
    return total


CHECKPOINT_PREFIXES = {"unet": "model.diffusion_model.", "vae": "first_stage_model."}


def _fp16_bytes(source: StageSource, component: str) -> int:
    if source.checkpoint is not None and source.checkpoint.suffix == ".safetensors":
        prefix = CHECKPOINT_PREFIXES.get(component, "conditioner.")
        return 2 * _safetensors_numel([source.checkpoint], prefix)
    if source.checkpoint is not None:  # a pickle: its size on disk is the best cheap guess
        return source.checkpoint.stat().st_size // 3
    files = sorted((source.folder / component).glob("*.safetensors"))
    fp16 = [f for f in files if ".fp16." in f.name]
    return 2 * _safetensors_numel(fp16 or files)


def estimate(sources: dict[str, StageSource], weights: WeightFormat) -> tuple[float, float]:
    """(peak memory of the largest child, disk for the output and its temporary files), in bytes."""
    fixed, per_byte = weights.facts.peak
    peak, disk = 0.0, 0.0
    for stage, source in sources.items():
        for group in STAGE_GROUPS[stage]:
            sizes = {COMPONENT[p]: _fp16_bytes(source, COMPONENT[p]) for p in group}
            peak = max(peak, fixed + per_byte * sum(sizes.values()))
            disk += weights.facts.disk_per_fp16_byte * sum(sizes[COMPONENT[p]] for p in group)
    largest_unet = max(_fp16_bytes(s, "unet") for s in sources.values())
    return peak, disk + (largest_unet if weights.is_compressed else 0)  # the float IR waits for compression

"""Offline export of SDXL base (+ refiner) to OpenVINO IR with optimum-intel, with optional NNCF compression.

    from ov_sdxl import ConvertConfig, convert_models
    convert_models(ConvertConfig(base="stabilityai/stable-diffusion-xl-base-1.0",
                                 refiner="stabilityai/stable-diffusion-xl-refiner-1.0",
                                 output="models/sdxl", weights="int8"))

Each stage is exported exactly as ``optimum-cli export openvino`` does it (``main_export``), always with an
explicit weight format: without one, optimum-intel silently compresses sub-models over 1e9 parameters to int8.
int8/int4 then compress every sub-model's weights with NNCF through optimum-intel's quantization config.
Everything is written into a temporary folder beside the target and renamed into place after the manifest, so a
failure or Ctrl-C never leaves a half-written model folder.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from ov_sdxl.config import ConvertConfig, WeightFormat
from ov_sdxl.errors import ConfigError, ConversionError, ModelNotFoundError, OvSdxlError
from ov_sdxl.layout import ModelLayout, write_manifest

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
STAGE_TASKS = {"base": "text-to-image", "refiner": "image-to-image"}
STAGE_CLASSES = {"base": "StableDiffusionXLPipeline", "refiner": "StableDiffusionXLImg2ImgPipeline"}
# NNCF int4 settings as optimum-cli's default 4-bit config; "adjust" lets layers narrower than a group keep int4.
INT4_CONFIG = {"bits": 4, "sym": False, "group_size": 128, "ratio": 1.0, "group_size_fallback": "adjust"}
INT8_CONFIG = {"bits": 8, "sym": False}
DISK_FULL_WORDS = ("No space left on device", "File too large", "Disk quota exceeded", "os error 28", "os error 27")


@dataclass(frozen=True)
class ConvertResult:
    output: Path
    skipped: bool  # True when the output was already complete and nothing was done
    seconds: float


def resolve_source(source: str, stage: str) -> tuple[str, bool]:
    """Return (source, is_local). A local folder must be a diffusers SDXL folder of the stage's pipeline class."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() in (".safetensors", ".ckpt", ".pt", ".bin"):
            raise ConfigError(
                f"--{stage} {source} is a single-file checkpoint; this version converts hub ids and diffusers "
                "folders (model_index.json + sub-folders)"
            )
        raise ConfigError(f"--{stage} {source} is a file, not a diffusers folder or hub id")
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            raise ModelNotFoundError(f"--{stage} {source} has no model_index.json; it is not a diffusers folder")
        import json

        class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
        if class_name != STAGE_CLASSES[stage]:
            raise ConfigError(
                f"--{stage} {source} is a {class_name}, expected a {STAGE_CLASSES[stage]} "
                f"(did you swap --base and --refiner?)"
            )
        _check_safetensors(path, stage)
        return str(path), True
    if HUB_ID.match(source) and not source.startswith((".", "~")):
        _check_hub_reachable(source, stage)
        return source, False
    raise ModelNotFoundError(f"--{stage} {source} is neither an existing folder nor a hub id like owner/name")


def _check_safetensors(folder: Path, stage: str) -> None:
    """Refuse a diffusers folder whose weights exist only as pickles (.bin/.ckpt/.pt): loading them runs code."""
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        pickled = [p.name for p in sub.iterdir() if p.suffix in (".bin", ".ckpt", ".pt", ".pth")]
        if pickled and not any(sub.glob("*.safetensors")):
            raise ConfigError(
                f"--{stage} {folder}: {sub.name}/{pickled[0]} is a pickled checkpoint and there is no .safetensors "
                "beside it; ov-sdxl loads safetensors only (convert the weights to safetensors first)"
            )


def _check_hub_reachable(repo_id: str, stage: str) -> None:
    """Offline (HF_HUB_OFFLINE=1), a hub id must already be in the local Hugging Face cache."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if not constants.HF_HUB_OFFLINE:
        return
    try:
        snapshot_download(repo_id, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ModelNotFoundError(
            f"--{stage} {repo_id}: the hub is offline (HF_HUB_OFFLINE=1) and this model is not in the local "
            "Hugging Face cache; download it first or pass a local diffusers folder"
        ) from None


def _export_stage(source: str, local: bool, out_dir: Path, stage: str, weights: WeightFormat) -> None:
    """Export one pipeline (base or refiner) into ``out_dir`` in the requested weight format."""
    from optimum.exporters.openvino import main_export
    from optimum.intel import OVConfig

    dtype = "fp16" if weights is WeightFormat.FP16 else "fp32"
    target = out_dir.with_name(out_dir.name + "-float") if weights.is_compressed else out_dir
    started = time.monotonic()
    log.info("[%s] exporting %s to OpenVINO IR (%s)", stage, source, dtype)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit tracer warnings about SDXL's Python control flow
            main_export(
                model_name_or_path=source,
                output=target,
                task=STAGE_TASKS[stage],
                library_name="diffusers",
                ov_config=OVConfig(dtype=dtype),  # explicit: no silent size-based int8
                convert_tokenizer=False,
                local_files_only=local or bool(os.environ.get("HF_HUB_OFFLINE")),
                model_loading_kwargs={"use_safetensors": True},  # never unpickle weights
            )
    except OvSdxlError:
        raise
    except Exception as exc:  # translated once, here, with the stage and source named
        raise ConversionError(f"exporting the {stage} from {source} failed: {_reason(exc)}") from exc
    _log_parts(stage, target, started)
    if weights.is_compressed:
        _compress_stage(target, out_dir, stage, weights)
        shutil.rmtree(target)


def _compress_stage(float_dir: Path, out_dir: Path, stage: str, weights: WeightFormat) -> None:
    """NNCF weight compression of every sub-model of one exported pipeline, through optimum-intel."""
    from optimum.intel import OVStableDiffusionXLImg2ImgPipeline, OVStableDiffusionXLPipeline

    pipeline_class = OVStableDiffusionXLPipeline if stage == "base" else OVStableDiffusionXLImg2ImgPipeline
    config = dict(INT8_CONFIG if weights is WeightFormat.INT8 else INT4_CONFIG)
    started = time.monotonic()
    log.info("[%s] compressing weights to %s with NNCF", stage, weights.value)
    try:
        pipeline = pipeline_class.from_pretrained(float_dir, compile=False, quantization_config=config)
        pipeline.save_pretrained(out_dir)
    except Exception as exc:
        raise ConversionError(f"compressing the {stage} to {weights.value} failed: {_reason(exc)}") from exc
    del pipeline
    _log_parts(stage, out_dir, started)


def _reason(exc: BaseException) -> str:
    """The cause in a line; a full disk is named as such wherever it surfaced."""
    import errno

    text = f"{type(exc).__name__}: {exc}"
    cause: BaseException | None = exc
    while cause is not None:
        full = isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
        # native writers (safetensors, OpenVINO) report it only in their message
        full = full or any(words in str(cause) for words in DISK_FULL_WORDS)
        if full:
            return f"no space left to write the model ({text}); free disk space and run again"
        cause = cause.__cause__ or cause.__context__
    if "safetensors" in str(exc) and "use_safetensors" in str(exc):
        return f"the source has no .safetensors weights; ov-sdxl does not load pickled weights ({text})"
    return text


def _log_parts(stage: str, folder: Path, started: float) -> None:
    for xml in sorted(folder.glob("*/openvino_model.xml")):
        size = xml.with_suffix(".bin").stat().st_size
        log.info("[%s] %-15s %8.1f MB", stage, xml.parent.name, size / 1e6)
    log.info("[%s] done in %.1f s", stage, time.monotonic() - started)


def _remove_stale_partials(output: Path) -> None:
    for stale in output.parent.glob(f".{output.name}.partial-*"):
        log.warning("removing %s left by an interrupted conversion", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _already_done(config: ConvertConfig, sources: dict[str, str | None]) -> bool:
    """True when the output already is a complete model of these sources (and --overwrite is not given)."""
    output = config.output
    if not output.exists():
        return False
    if config.overwrite:
        return False
    if not output.is_dir():
        raise ConfigError(f"--output {output} exists and is not a folder")
    try:
        layout = ModelLayout.open(output)
    except OvSdxlError:
        layout = None
    if layout is None or layout.manifest is None:
        if any(output.iterdir()):
            raise ConfigError(f"--output {output} exists and is not a complete ov-sdxl model; add --overwrite")
        return False
    manifest = layout.manifest
    if manifest.get("weights") != config.weights.value or manifest["sources"] != sources:
        raise ConfigError(
            f"--output {output} already holds a different conversion "
            f"({manifest.get('weights')} of {manifest['sources']}); add --overwrite to replace it"
        )
    return True


def convert_models(config: ConvertConfig, source_labels: dict[str, str] | None = None) -> ConvertResult:
    """Convert ``config.base`` (and ``config.refiner``) into ``config.output``. Idempotent on a complete output.

    ``source_labels`` replaces the sources recorded in the manifest (the tiny builder uses temporary folders).
    """
    started = time.monotonic()
    stages = {"base": config.base, "refiner": config.refiner}
    resolved = {stage: resolve_source(src, stage) for stage, src in stages.items() if src}
    sources = {stage: (source_labels or {}).get(stage, src) for stage, src in stages.items()}
    if _already_done(config, sources):
        log.info(
            "%s is already converted (%s); nothing to do (use --overwrite to redo it)",
            config.output,
            config.weights.value,
        )
        return ConvertResult(config.output, skipped=True, seconds=time.monotonic() - started)

    output = config.output
    output.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(output)
    partial = output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        for stage, (source, local) in resolved.items():
            _export_stage(source, local, partial / stage, stage, config.weights)
        write_manifest(partial, sources=sources, weights=config.weights.value)
        if output.exists():
            retired = output.parent / f".{output.name}.partial-old-{uuid.uuid4().hex[:8]}"
            os.replace(output, retired)
            os.replace(partial, output)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(partial, output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    seconds = time.monotonic() - started
    log.info("converted into %s in %.1f s", output, seconds)
    return ConvertResult(output, skipped=False, seconds=seconds)

"""Offline export of SDXL base (+ refiner) to OpenVINO IR with optimum-intel, with optional NNCF compression.

    from ov_sdxl import ConvertConfig, convert_models
    convert_models(ConvertConfig(base="stabilityai/stable-diffusion-xl-base-1.0",
                                 refiner="stabilityai/stable-diffusion-xl-refiner-1.0",
                                 output="models/sdxl", weights="int8"))

A source is a hub id, a diffusers folder or one single-file checkpoint (``single_file``). Each group of
sub-models (the UNet; the text encoders and the VAE) is exported in a child process of its own
(``ov_sdxl.convert.export_part``), so each loads only the weights it exports and its memory returns to the system
when it ends; the whole process tree is watched against ``max_memory``. Free memory and disk are checked first. With
``--weights hybrid-int8`` each stage's UNet is exported in fp16 and then calibrated and quantized in place by one
more child (``hybrid``), which also gives the VAE decoder int8 activations; the other sub-models get int8 weights.

Everything is written into ``.<output>.partial`` beside the target; each finished sub-model is recorded there with
the sha256 of its files, so a rerun after an interruption reuses what finished and exports the rest. The manifest
is written last and the folder renamed into place: the output folder is never half-written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_sdxl.config import ConvertConfig, WeightFormat
from ov_sdxl.convert.sources import COMPONENT, STAGE_GROUPS, StageSource, estimate, is_inpainting, resolve_source
from ov_sdxl.errors import ConfigError, ConversionError, InputError, OvSdxlError
from ov_sdxl.layout import TINY_VAE, ModelLayout, add_source, sha256_file, write_manifest
from ov_sdxl.resources import check_free, gb, run_watched

log = logging.getLogger(__name__)

HYBRID_PARTS = ("unet", "vae_decoder")  # what --weights hybrid-int8 calibrates (hybrid.py)
SHARED_WITH_BASE = ("text_encoder_2", "vae_decoder", "vae_encoder")  # byte-identical in SDXL 1.0's refiner
PROGRESS = "progress.json"


@dataclass(frozen=True)
class ConvertResult:
    output: Path
    skipped: bool  # True when the output was already complete and nothing was done
    seconds: float
    peak_rss: int = 0  # the largest process-tree RSS of any export child, in bytes
    parts: tuple[dict[str, Any], ...] = ()  # per exported sub-model group: stage, parts, seconds, peak_rss


# -- the partial folder: what is finished, checked by hash ---------------------------------------------------------
def _request_key(config: ConvertConfig, sources: dict[str, StageSource], calibration: Any = None) -> str:
    request = {
        "weights": config.weights.value,
        "sources": {stage: [s.label, str(s.folder), str(s.checkpoint)] for stage, s in sources.items()},
        "loras": [[str(spec.path), spec.scale, spec.path.stat().st_size] for spec in config.loras],
    }
    if calibration is not None:
        request["calibration"] = [calibration.sha256, calibration.samples]
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def _files_of(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


class _Progress:
    """``progress.json`` in the partial folder: the request it belongs to and the sub-models finished."""

    def __init__(self, partial: Path, key: str):
        self.path = partial / PROGRESS
        data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        self.key, self.done = key, data.get("done", {}) if data.get("key") == key else {}
        self.steps = data.get("steps", {}) if data.get("key") == key else {}  # "stage/part:step" -> its result

    def finished(self, stage: str, part: str, step: str | None = None) -> bool:
        """True when the part was recorded as finished (after ``step``, if given: a later step done in place) and
        its files still have the recorded hashes."""
        recorded = self.done.get(f"{stage}/{part}")
        folder = self.path.parent / stage / part
        done = bool(recorded) and folder.is_dir() and _files_of(folder) == recorded
        return done and (step is None or f"{stage}/{part}:{step}" in self.steps)

    def hashes(self) -> dict[str, str]:
        """The recorded sha256 of every finished sub-model's files, by path relative to the partial folder."""
        return {f"{key}/{name}": digest for key, files in self.done.items() for name, digest in files.items()}

    def record(self, stage: str, part: str, step: str | None = None, result: Any = None) -> None:
        """The part is finished (exported, or ``step`` done on it in place, with its result)."""
        self.done[f"{stage}/{part}"] = _files_of(self.path.parent / stage / part)
        if step is None:  # freshly exported: the steps done on an earlier export of it are to be done again
            self.steps = {k: v for k, v in self.steps.items() if not k.startswith(f"{stage}/{part}:")}
        else:
            self.steps[f"{stage}/{part}:{step}"] = result
        tmp = self.path.with_suffix(".tmp")
        data = {"key": self.key, "done": self.done, "steps": self.steps}
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)


def _prepare_partial(output: Path, key: str) -> tuple[Path, _Progress]:
    partial = output.parent / f".{output.name}.partial"
    progress = _Progress(partial, key) if partial.is_dir() else None
    if progress is not None and not progress.done:
        log.warning("removing %s: it belongs to another conversion request", partial)
        shutil.rmtree(partial)
    elif progress is not None:
        log.info("resuming the conversion in %s (%d sub-models finished)", partial, len(progress.done))
    partial.mkdir(parents=True, exist_ok=True)
    return partial, _Progress(partial, key)


# -- export ----------------------------------------------------------------------------------------------------------
def _same_as_base(sources: dict[str, StageSource], part: str, config: ConvertConfig) -> bool:
    """The refiner's part has the base's config and weights byte for byte (SDXL 1.0's text_encoder_2 and VAE)."""
    base, refiner = sources["base"], sources.get("refiner")
    if refiner is None or config.loras or base.checkpoint or refiner.checkpoint:
        return False
    folders = [s.folder / COMPONENT[part] for s in (base, refiner)]
    names = [sorted(p.name for p in f.iterdir() if p.suffix in (".json", ".safetensors")) for f in folders]
    if names[0] != names[1] or not names[0]:
        return False
    return all(sha256_file(folders[0] / n) == sha256_file(folders[1] / n) for n in names[0])


def _export_group(job_parts: tuple[str, ...], stage: str, source: StageSource, config: ConvertConfig, out: Path):
    from ov_sdxl.convert.export_part import ExportJob

    loras = tuple({"path": str(s.path), "scale": s.scale} for s in config.loras) if stage == "base" else ()
    weights, fp16_parts = config.weights.value, ()
    if config.weights is WeightFormat.HYBRID_INT8:  # the others int8; the UNet and the VAE decoder in fp16, whose
        weights, fp16_parts = "int8", HYBRID_PARTS  # int8 weights and activations the hybrid step makes after
    job = ExportJob(
        source=str(source.folder),
        stage=stage,
        parts=job_parts,
        weights=weights,
        output=str(out),
        checkpoint=str(source.checkpoint) if source.checkpoint else None,
        allow_pickle=config.allow_pickle,
        loras=loras,
        fp16_parts=fp16_parts,
    )
    what = f"exporting the {stage}'s {', '.join(job_parts)} from {source.label}"
    return _run_child("ov_sdxl.convert.export_part", job, what, config)[0]


def _run_child(module: str, job: Any, what: str, config: ConvertConfig) -> tuple[Any, Any]:
    """``python -m <module> job.json``, watched against ``max_memory``: (the watch, what the child returned)."""
    with tempfile.TemporaryDirectory(prefix="ov-sdxl-job-") as folder:
        job_file = Path(folder) / "job.json"
        job.write(job_file)
        watched = run_watched([sys.executable, "-m", module, str(job_file)], limit=config.max_memory)
        error_file, result_file = job_file.with_suffix(".error.json"), job_file.with_suffix(".result.json")
        if watched.returncode != 0:
            error = json.loads(error_file.read_text(encoding="utf-8")) if error_file.is_file() else {}
            message = error.get("message") or f"the {module} process ended with code {watched.returncode}"
            if error.get("input"):
                raise InputError(f"{what} failed: {message}")
            raise ConversionError(f"{what} failed: {_reason(error.get('type', 'Error'), message)}")
        result = json.loads(result_file.read_text(encoding="utf-8")) if result_file.is_file() else None
    return watched, result


def _hybrid_unet(stage: str, config: ConvertConfig, partial: Path, progress: _Progress, calibration, report) -> None:
    """--weights hybrid-int8: calibrate the stage's exported UNet and VAE decoder on its own pipeline and quantize
    them in place."""
    from ov_sdxl.convert.hybrid import HybridJob

    if progress.finished(stage, "unet", step=config.weights.value):
        log.info("[%s] unet: hybrid-quantized in an earlier run, reused", stage)
        return
    log.info("[%s] unet: calibrating on %d prompts and quantizing (hybrid-int8)", stage, len(calibration.prompts))
    base = str(partial / "base") if stage == "refiner" else None
    job = HybridJob(stage, str(partial / stage), calibration.prompts, base_folder=base, samples=calibration.samples)
    watched, result = _run_child("ov_sdxl.convert.hybrid", job, f"hybrid-quantizing the {stage}'s unet", config)
    render_seconds = result.pop("render_seconds")  # a time: in the report, not in the manifest
    progress.record(stage, "vae_decoder", step=config.weights.value)  # int8 activations too, in the same child
    progress.record(stage, "unet", step=config.weights.value, result=result)
    log.info("[%s] unet quantized in %.0f s, peak %s", stage, watched.seconds, gb(watched.peak_rss))
    parts = ["unet, vae_decoder (hybrid)"]
    calibration = {"unet_calls": result["unet_calls"], "render_seconds": render_seconds}
    entry = {"stage": stage, "parts": parts, "seconds": watched.seconds, "peak_rss": watched.peak_rss}
    report.append({**entry, "calibration": calibration})


def _tiny_vae(folder: Path, label: str, config: ConvertConfig, target: Path, progress: _Progress | None, report):
    """Export the TAESDXL decoder from ``folder`` into ``target`` (reused when an earlier run did it from
    ``label``)."""
    from ov_sdxl.convert.tiny_vae import PART, TinyVaeJob

    if progress is not None and progress.finished(TINY_VAE, PART, step=label):
        log.info("[%s] %s: finished in an earlier run, reused", TINY_VAE, PART)
        return
    log.info("[%s] exporting the decoder from %s (fp16)", TINY_VAE, label)
    job = TinyVaeJob(source=str(folder), output=str(target))
    watched, _ = _run_child("ov_sdxl.convert.tiny_vae", job, f"exporting TAESDXL from {label}", config)
    if progress is not None:
        progress.record(TINY_VAE, PART, step=label)
    log.info("[%s] %s done in %.0f s, peak %s", TINY_VAE, PART, watched.seconds, gb(watched.peak_rss))
    report.append({"stage": TINY_VAE, "parts": [PART], "seconds": watched.seconds, "peak_rss": watched.peak_rss})


def _add_tiny_vae(config: ConvertConfig, folder: Path, label: str, started: float) -> ConvertResult:
    """A finished model gains TAESDXL (or another one): only its decoder is exported, beside the rest."""
    output, report = config.output, []
    work = output.parent / f".{output.name}.{TINY_VAE}.partial"
    shutil.rmtree(work, ignore_errors=True)
    _tiny_vae(folder, label, config, work, None, report)
    shutil.rmtree(output / TINY_VAE, ignore_errors=True)
    os.replace(work, output / TINY_VAE)
    add_source(output, TINY_VAE, label)
    seconds = time.monotonic() - started
    log.info("added TAESDXL from %s to %s in %.0f s", label, output, seconds)
    return ConvertResult(output, skipped=False, seconds=seconds, peak_rss=report[0]["peak_rss"], parts=tuple(report))


def _taesdxl_only(config: ConvertConfig, label: str, started: float) -> ConvertResult:
    """No --base: TAESDXL is added to the converted model in --output (or nothing is done, when it has that one)."""
    from ov_sdxl.convert.tiny_vae import resolve

    try:
        layout = ModelLayout.open(config.output)
    except OvSdxlError as exc:
        raise ConfigError(f"without --base, convert adds --taesdxl to a converted model: {exc}") from None
    if layout.manifest is None:
        raise ConfigError(f"--output {config.output} is a plain optimum-intel export; convert it with ov-sdxl first")
    folder = resolve(config.taesdxl)
    if layout.manifest["sources"].get(TINY_VAE) == label and not config.overwrite:
        log.info("%s already has TAESDXL from %s; nothing to do (--overwrite redoes it)", config.output, label)
        return ConvertResult(config.output, skipped=True, seconds=time.monotonic() - started)
    return _add_tiny_vae(config, folder, label, started)


def _reason(kind: str, message: str) -> str:
    """The cause in a line; a full disk is named as such wherever it surfaced."""
    words = ("No space left on device", "File too large", "Disk quota exceeded", "os error 28", "os error 27")
    text = f"{kind}: {message}"
    if any(w in message for w in words):
        return f"no space left to write the model ({text}); free disk space and run again"
    return text


def _copy(source: Path, target: Path) -> None:
    """Copy a file or a folder into the partial folder; a failure (a full disk) is a ConversionError naming it."""
    try:
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    except (OSError, shutil.Error) as exc:
        raise ConversionError(f"writing {target} failed: {_reason(type(exc).__name__, str(exc))}") from exc


def _write_stage_files(source: StageSource, out: Path) -> None:
    """model_index.json, the scheduler and the tokenizers, as optimum-intel's pipeline folder has them."""
    out.mkdir(parents=True, exist_ok=True)
    _copy(source.folder / "model_index.json", out / "model_index.json")
    for name in ("scheduler", "tokenizer", "tokenizer_2"):
        if (source.folder / name).is_dir():
            _copy(source.folder / name, out / name)


def _convert_stage(stage, source, sources, config, partial, progress, report, calibration=None) -> None:
    out = partial / stage
    _write_stage_files(source, out)
    for group in STAGE_GROUPS[stage]:
        todo = []
        for part in group:
            if progress.finished(stage, part):
                log.info("[%s] %s: finished in an earlier run, reused", stage, part)
            elif stage == "refiner" and part in SHARED_WITH_BASE and _same_as_base(sources, part, config):
                _copy(partial / "base" / part, out / part)
                progress.record(stage, part)
                log.info("[%s] %s: identical to the base's, copied", stage, part)
            else:
                todo.append(part)
        if not todo:
            continue
        log.info("[%s] exporting %s (%s)", stage, ", ".join(todo), config.weights.value)
        watched = _export_group(tuple(todo), stage, source, config, out)
        for part in todo:
            progress.record(stage, part)
        log.info("[%s] %s done in %.0f s, peak %s", stage, ", ".join(todo), watched.seconds, gb(watched.peak_rss))
        report.append({"stage": stage, "parts": todo, "seconds": watched.seconds, "peak_rss": watched.peak_rss})
    if calibration is not None:
        _hybrid_unet(stage, config, partial, progress, calibration, report)


def _already_done(
    config: ConvertConfig, labels: dict[str, str | None], calibration: Any = None, tiny_label: str | None = None
) -> bool | str:
    """True when the output already is a complete model of this request (and --overwrite is not given);
    ``"add-taesdxl"`` when it is, but for the TAESDXL asked for (which can be added alone)."""
    output = config.output
    if not output.exists() or config.overwrite:
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
    loras = [[spec.path.name, spec.scale] for spec in config.loras]
    recorded_loras = [[entry["file"], entry["scale"]] for entry in manifest.get("loras", [])]
    model_info = config.few_step.manifest_entry() if config.few_step is not None else None
    recorded_sources = {key: value for key, value in manifest["sources"].items() if key != TINY_VAE}
    same = manifest.get("weights") == config.weights.value and recorded_sources == labels
    recorded = manifest.get("calibration") or {}
    wanted = [calibration.sha256, calibration.samples] if calibration is not None else [None, None]
    same = same and [recorded.get("prompts_sha256"), recorded.get("samples_per_unet")] == wanted
    if not same or recorded_loras != loras or manifest.get("model_info") != model_info:
        raise ConfigError(
            f"--output {output} already holds a different conversion "
            f"({manifest.get('weights')} of {recorded_sources}); add --overwrite to replace it"
        )
    if tiny_label is not None and manifest["sources"].get(TINY_VAE) != tiny_label:
        return "add-taesdxl"
    return True


def convert_models(config: ConvertConfig, source_labels: dict[str, str] | None = None) -> ConvertResult:
    """Convert ``config.base`` (and ``config.refiner``) into ``config.output``. Idempotent on a complete output.

    ``source_labels`` replaces the sources recorded in the manifest (the tiny builder uses temporary folders).
    """
    started = time.monotonic()
    if config.base is None:
        return _taesdxl_only(config, (source_labels or {}).get(TINY_VAE, config.taesdxl), started)
    stages = {"base": config.base, "refiner": config.refiner}
    labels = {stage: (source_labels or {}).get(stage, src) for stage, src in stages.items()}
    calibration = None
    if config.weights is WeightFormat.HYBRID_INT8:
        from ov_sdxl.convert.hybrid import read_prompts

        calibration = read_prompts(config.calibration_prompts, config.calibration_samples)
    tiny_label = (source_labels or {}).get(TINY_VAE, config.taesdxl)
    done = _already_done(config, labels, calibration, tiny_label)
    tiny_vae = None
    if config.taesdxl is not None:
        from ov_sdxl.convert.tiny_vae import resolve

        tiny_vae = resolve(config.taesdxl)
    if done == "add-taesdxl":
        return _add_tiny_vae(config, tiny_vae, tiny_label, started)
    if done:
        log.info("%s is already converted (%s); nothing to do (--overwrite redoes it)", config.output, config.weights)
        return ConvertResult(config.output, skipped=True, seconds=time.monotonic() - started)
    sources = {stage: resolve_source(src, stage, config) for stage, src in stages.items() if src}
    inpainting = is_inpainting(sources["base"])
    if inpainting and calibration is not None:
        raise ConfigError(
            f"--base {labels['base']} is an inpainting model; --weights hybrid-int8 calibrates on text2img renders, "
            "which it cannot make: choose fp16, int8 or int4"
        )
    peak, disk = estimate(sources, config.weights)
    check_free(memory=peak, disk=disk, folder=config.output.parent, max_memory=config.max_memory)
    log.info("expected: peak memory about %s, disk about %s", gb(peak), gb(disk))

    output = config.output
    partial, progress = _prepare_partial(output, _request_key(config, sources, calibration))
    report: list[dict[str, Any]] = []
    for stage, source in sources.items():
        _convert_stage(stage, source, sources, config, partial, progress, report, calibration)
    if tiny_vae is not None:
        _tiny_vae(tiny_vae, tiny_label, config, partial / TINY_VAE, progress, report)
        labels[TINY_VAE] = tiny_label
    (partial / PROGRESS).unlink()
    extra: dict[str, Any] = {}
    if config.loras:
        from ov_sdxl.convert.lora import manifest_entry

        extra["loras"] = manifest_entry(list(config.loras))
    if config.few_step is not None:
        extra["model_info"] = config.few_step.manifest_entry()
    if inpainting:
        extra["inpainting"] = True  # the base's UNet takes 9 channels: latents, mask, the masked image's latents
    if calibration is not None:
        steps = progress.steps.items()  # the hybrid step of each stage's unet (TAESDXL's step is not one)
        unets = {key.split("/")[0]: result for key, result in steps if key.split("/")[0] in sources}
        extra["calibration"] = calibration.manifest_entry(unets)
    write_manifest(partial, sources=labels, weights=config.weights.value, extra=extra, known=progress.hashes())
    if output.exists():
        retired = output.parent / f".{output.name}.retired-{os.getpid()}"
        os.replace(output, retired)
        os.replace(partial, output)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(partial, output)
    seconds = time.monotonic() - started
    peak_rss = max((entry["peak_rss"] for entry in report), default=0)
    log.info("converted into %s in %.0f s (largest export process: %s)", output, seconds, gb(peak_rss))
    return ConvertResult(output, skipped=False, seconds=seconds, peak_rss=peak_rss, parts=tuple(report))

"""Export some sub-models of one SDXL stage to OpenVINO IR, in a process of their own.

The converter (``ov_sdxl.convert``) runs this once per group of sub-models, so that each process loads only the
weights it exports and gives all of its memory back to the system when it exits:

    python -m ov_sdxl.convert.export_part job.json      # job: an ExportJob as JSON (see ExportJob.write)

What is exported is exactly what ``optimum-cli export openvino`` exports: the pipeline is assembled with the
requested components loaded for real (in fp16 unless fp32 was asked for, as optimum-intel loads an fp16 source)
and every other component built on PyTorch's ``meta`` device (configuration only, no weights); optimum-intel's own
``get_diffusion_models_for_export_ext`` then yields the sub-model and its export configuration, and its
``export_models`` traces and writes it. int8/int4 weights are then compressed with NNCF through optimum-intel's
weight-only quantization, one sub-model at a time, after the PyTorch weights are freed.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ov_sdxl.convert.sources import COMPONENT, INPAINTING_CLASS, STAGE_CLASSES  # which component holds each part
from ov_sdxl.formats import WeightFormat
from ov_sdxl.page_release import ReleaseMappedPages

log = logging.getLogger("ov_sdxl.convert.export_part")

# The side of the dummy input each sub-model is traced with (latents for the UNet and the VAE decoder, pixels for
# the VAE encoder).
# optimum-intel traces at the model's sample size (128x128 latents, 1024x1024 pixels), and torch.jit.trace keeps
# every activation of that pass alive until it ends: about 11 GB for SDXL's UNet. The graph does not depend on it
# (sizes stay dynamic in the IR), so a small one gives the same IR for a fraction of the memory.
TRACE_SIZE = {"unet": 32, "vae_encoder": 256, "vae_decoder": 32}


@dataclass(frozen=True)
class ExportJob:
    """What one child process exports. ``source`` is a diffusers folder (configs, and weights unless
    ``checkpoint`` names a single-file checkpoint that holds them)."""

    source: str
    stage: str
    parts: tuple[str, ...]
    weights: str
    output: str  # the stage's output folder; each part goes to <output>/<part>/openvino_model.xml
    checkpoint: str | None = None
    allow_pickle: bool = False
    loras: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # LoraSpec fields: path, scale
    fp16_parts: tuple[str, ...] = ()  # written in fp16 whatever ``weights`` says: a later step quantizes them

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> ExportJob:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        tuples = {name: tuple(data[name]) for name in ("parts", "loras", "fp16_parts")}
        return cls(**{**data, **tuples})


def _torch_dtype(weights: str) -> Any:
    import torch

    return torch.float32 if weights == "fp32" else torch.float16


def _library_class(source: Path, name: str) -> Any:
    import importlib

    library, class_name = json.loads((source / "model_index.json").read_text(encoding="utf-8"))[name]
    return getattr(importlib.import_module(library), class_name)


def _variant(folder: Path, weights: str) -> str | None:
    """diffusers' ``fp16`` variant when the folder has one and full precision is not needed (half the reading)."""
    has_fp16 = any(folder.glob("*.fp16.safetensors"))
    has_plain = any(p for p in folder.glob("*.safetensors") if ".fp16." not in p.name)
    return "fp16" if has_fp16 and (weights != "fp32" or not has_plain) else None


def _load_real(job: ExportJob, name: str) -> Any:
    """One component with its weights, in the export dtype, with the job's LoRAs fused into it."""
    source, dtype = Path(job.source), _torch_dtype(job.weights)
    started = time.monotonic()
    if job.checkpoint:
        from ov_sdxl.convert.single_file import load_component

        module = load_component(
            job.checkpoint, job.stage, name, torch_dtype=dtype, config_dir=source, allow_pickle=job.allow_pickle
        )
    else:
        module = _library_class(source, name).from_pretrained(
            source,
            subfolder=name,
            torch_dtype=dtype,
            use_safetensors=True,
            variant=_variant(source / name, job.weights),
            local_files_only=True,
        )
    if job.loras and name in ("unet", "text_encoder", "text_encoder_2"):
        from ov_sdxl.convert.lora import LoraSpec, fuse_loras

        applied = fuse_loras(module, name, [LoraSpec(Path(lora["path"]), lora["scale"]) for lora in job.loras])
        if applied:
            log.info("[%s] %s: fused LoRA %s", job.stage, name, ", ".join(applied))
    module.eval()
    log.info("[%s] %s loaded (%s) in %.1f s", job.stage, name, str(dtype).split(".")[-1], time.monotonic() - started)
    return module


def _load_meta(source: Path, name: str) -> Any:
    """A component built from its configuration only: no memory for weights, enough for export configs."""
    import torch

    cls = _library_class(source, name)
    if hasattr(cls, "load_config"):  # diffusers model
        config = cls.load_config(source, subfolder=name, local_files_only=True)
        with torch.device("meta"):
            return cls.from_config(config)
    config = cls.config_class.from_pretrained(source, subfolder=name, local_files_only=True)
    with torch.device("meta"):
        return cls(config)


def _pipeline(job: ExportJob) -> Any:
    """The stage's diffusers pipeline: the job's components real, the others on the meta device."""
    import diffusers

    source = Path(job.source)
    index = json.loads((source / "model_index.json").read_text(encoding="utf-8"))
    wanted = {COMPONENT[part] for part in job.parts}
    components: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list):
            continue
        if spec[0] is None:
            components[name] = None
        elif name == "scheduler" or name.startswith("tokenizer"):
            components[name] = _library_class(source, name).from_pretrained(source, subfolder=name)
        elif name in wanted:
            components[name] = _load_real(job, name)
        else:
            components[name] = _load_meta(source, name)
    flags = {k: index[k] for k in ("force_zeros_for_empty_prompt", "requires_aesthetics_score") if k in index}
    own = index.get("_class_name")  # an inpainting base keeps its class: its UNet takes 9 channels
    cls = getattr(diffusers, own if own == INPAINTING_CLASS else STAGE_CLASSES[job.stage])
    return cls(**components, **flags, add_watermarker=False)


class _TraceSize:
    """An export config's normalized config with another ``image_size``: the size of the dummy input traced."""

    def __init__(self, inner: Any, size: int):
        self._inner, self._size = inner, size

    def __getattr__(self, name: str) -> Any:
        return self._size if name == "image_size" else getattr(self._inner, name)

    def has_attribute(self, name: str) -> bool:
        return name == "image_size" or self._inner.has_attribute(name)


def _weight_files(job: ExportJob, component: str) -> list[Path]:
    if job.checkpoint:
        return [Path(job.checkpoint)]
    return sorted((Path(job.source) / component).glob("*.safetensors"))


def _compress(xml: Path, weights: str) -> None:
    """NNCF weight compression of one written IR, in place, with optimum-intel's weight-only quantization."""
    import openvino as ov
    from optimum.intel.openvino.quantization import _weight_only_quantization

    started = time.monotonic()
    tmp = xml.with_name("compressed.xml")
    with ReleaseMappedPages([xml.with_suffix(".bin")]):
        model = ov.Core().read_model(xml)
        model = _weight_only_quantization(model, dict(WeightFormat(weights).facts.compression))
        ov.save_model(model, tmp, compress_to_fp16=False)
    del model
    gc.collect()
    tmp.replace(xml)
    tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    log.info("compressed %s to %s in %.1f s", xml.parent.name, weights, time.monotonic() - started)


def run(job: ExportJob) -> None:
    """Export ``job.parts`` of ``job.stage`` into ``job.output``."""
    import torch
    from optimum.exporters.openvino.convert import (
        _set_runtime_options,
        export_models,
        get_diffusion_models_for_export_ext,
    )
    from optimum.intel import OVConfig
    from optimum.utils import DEFAULT_DUMMY_SHAPES

    output = Path(job.output)
    pipeline = _pipeline(job)
    _, models = get_diffusion_models_for_export_ext(pipeline, exporter="openvino")
    del pipeline
    shapes = {k: v for k, v in DEFAULT_DUMMY_SHAPES.items() if k not in ("height", "width")}
    for part in job.parts:
        started = time.monotonic()
        weights = "fp16" if part in job.fp16_parts else job.weights
        compressed = WeightFormat(weights).facts.compression is not None
        chosen = {part: models.pop(part)}
        _set_runtime_options(chosen, "text-to-image", "diffusers", compressed)
        module, export_config = chosen[part]
        if part in TRACE_SIZE:
            export_config._normalized_config = _TraceSize(export_config._normalized_config, TRACE_SIZE[part])
        (output / part).mkdir(parents=True, exist_ok=True)
        if hasattr(module, "save_config"):
            module.save_config(output / part)
        else:
            module.config.save_pretrained(output / part)
        with ReleaseMappedPages(_weight_files(job, COMPONENT[part])):
            export_models(
                models_and_export_configs=chosen,
                output_dir=output,
                output_names=[f"{part}/openvino_model.xml"],
                input_shapes=shapes,
                ov_config=OVConfig(dtype=weights),
                stateful=False,
                patch_16bit_model=_torch_dtype(job.weights) != torch.float32,
                library_name="diffusers",
            )
        del chosen, module, export_config
        gc.collect()
        log.info("[%s] %s exported in %.1f s", job.stage, part, time.monotonic() - started)
        if compressed:
            _compress(output / part / "openvino_model.xml", weights)


def child_main(argv: list[str], work: Any) -> int:
    """A converter child: ``work(job_file)`` with quiet libraries; what it returns goes to ``job.result.json``, a
    failure to ``job.error.json`` (where the parent reads them), exit code 1."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from ov_sdxl.libraries import quiet_child

    quiet_child()
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # loading bars; the parent reports each part with its time
    transformers_logging.disable_progress_bar()
    job_file = Path(argv[0])
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit tracer warnings about SDXL's Python control flow
            result = work(job_file)
    except Exception as exc:  # the parent translates it, with the stage and part named
        from ov_sdxl.errors import InputError

        error = {"type": type(exc).__name__, "message": str(exc), "input": isinstance(exc, InputError)}
        job_file.with_suffix(".error.json").write_text(json.dumps(error), encoding="utf-8")
        log.debug("export failed", exc_info=True)
        return 1
    if result is not None:
        job_file.with_suffix(".result.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


def main(argv: list[str]) -> int:
    """Child entry point: run the export job; on failure write the error where the parent reads it, exit 1."""
    return child_main(argv, lambda job_file: run(ExportJob.read(job_file)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Hybrid int8 quantization of a converted SDXL UNet, and int8 VAE decoder (``--weights hybrid-int8``), calibrated
offline.

It is what optimum-intel's ``quant_method="hybrid"`` does to a diffusion pipeline's UNet, done with optimum-intel's
own functions: the weights of MatMuls (and embeddings) become int8, weight-only; Convolutions and the other ops get
int8 weights *and* activations through FakeQuantize, calibrated on the UNet inputs seen while the stage's own
pipeline renders the calibration prompts (smooth-quant off). The prompts are shipped
(``ov_sdxl/data/calibration_prompts.txt``) or given as a file; nothing is downloaded (optimum-intel's own hybrid
mode fetches a caption dataset from the hub). The stage's VAE decoder gets int8 weights and activations too (NNCF's
post-training quantization, mixed preset, ``conv_in`` and ``conv_out`` left in float), calibrated on the latents
the stage's calibration renders end with: on a CPU with VNNI the int8 decode is about 1.6 times faster than bf16
(docs/benchmark.md). A refiner whose decoder is a copy of the base's (SDXL 1.0) keeps that copy, already quantized.
The converter runs it in a child process, after the export:

    python -m ov_sdxl.convert.hybrid job.json          # a HybridJob as JSON (see HybridJob.write)

    from ov_sdxl.convert.hybrid import HybridJob, read_prompts, run
    calibration = read_prompts(None)           # the shipped prompts; or read_prompts(Path("my_prompts.txt"))
    run(HybridJob(stage="base", folder="models/.sdxl.partial/base", prompts=calibration.prompts))

Calibration data, per stage (the constants below are recorded in the model's manifest):
- base: text2img of each prompt at ``min(native, 512)`` squared, ``STEPS`` steps, guidance ``GUIDANCE``, latents
  out (no VAE decode); every UNet call is one sample, until ``SAMPLES`` are collected.
- refiner: what ``--mode refine`` does to a base image: the base (already quantized, as it runs later) renders
  latents as above, then the refiner denoises them as img2img with strength ``REFINER_STRENGTH`` over
  ``REFINER_STEPS`` steps, so noise is added at the level where base+refiner hands over (t about 160 of 1000) and
  each prompt gives ``REFINER_STEPS * REFINER_STRENGTH`` refiner samples. The base and the refiner are
  loaded one after the other, never together.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ov_sdxl.config import DEFAULT_HIGH_NOISE_FRAC
from ov_sdxl.convert.hybrid_quantize import is_quantized, quantize_decoder, quantize_unet
from ov_sdxl.errors import ConfigError
from ov_sdxl.page_release import ReleaseMappedPages

log = logging.getLogger("ov_sdxl.convert.hybrid")  # also when run as __main__

SHIPPED_PROMPTS = Path(__file__).parents[1] / "data" / "calibration_prompts.txt"
SAMPLES = 32  # UNet calls collected per UNet: a full-size UNet call at 512x512 takes about 3 s on 2 cores
MAX_SIZE = 512  # calibration images are min(native, MAX_SIZE) squared, as optimum-intel's hybrid mode renders them
STEPS = 10
REFINER_STEPS = 25
GUIDANCE = 5.0
REFINER_STRENGTH = round(1 - DEFAULT_HIGH_NOISE_FRAC, 6)  # the refiner's share at the default hand-off: 5 steps of 25
SEED = 0  # prompt i is rendered with seed SEED + i


@dataclass(frozen=True)
class CalibrationPrompts:
    """The prompts the UNets are calibrated on, where they came from, and the sha256 of the list."""

    prompts: tuple[str, ...]
    source: str  # "shipped" or the file given with --calibration-prompts
    samples: int = SAMPLES  # UNet calls collected per UNet (--calibration-samples)

    @property
    def sha256(self) -> str:
        """sha256 of the prompts joined by newlines (comments and blank lines are not part of it)."""
        return hashlib.sha256("\n".join(self.prompts).encode("utf-8")).hexdigest()

    def manifest_entry(self, unets: dict[str, Any]) -> dict[str, Any]:
        settings = {"max_size": MAX_SIZE, "steps": STEPS, "guidance": GUIDANCE, "seed": SEED}
        settings.update(refiner_steps=REFINER_STEPS, refiner_strength=REFINER_STRENGTH)
        return {
            "prompt_source": self.source,
            "prompts": len(self.prompts),
            "prompts_sha256": self.sha256,
            "samples_per_unet": self.samples,
            "settings": settings,
            "unets": unets,  # per stage: samples collected, prompts rendered, size
        }


def read_prompts(path: Path | None, samples: int | None = None) -> CalibrationPrompts:
    """One prompt per line; blank lines and lines starting with ``#`` are skipped. None: the shipped prompts."""
    file = SHIPPED_PROMPTS if path is None else Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--calibration-prompts {file}: cannot read it as UTF-8 text ({exc})") from exc
    prompts = tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))
    if not prompts:
        raise ConfigError(
            f"--calibration-prompts {file} holds no prompt; write one prompt per line (blank lines and "
            "# comments are skipped)"
        )
    return CalibrationPrompts(prompts, "shipped" if path is None else str(file), samples or SAMPLES)


@dataclass(frozen=True)
class HybridJob:
    """One UNet to calibrate and quantize in place: ``<folder>/unet/openvino_model.xml`` of a stage's folder."""

    stage: str  # "base" or "refiner"
    folder: str  # the stage's converted folder (its text encoders, VAE and scheduler are used to render)
    prompts: tuple[str, ...]
    base_folder: str | None = None  # refiner: the converted base, which renders the refiner's input latents
    samples: int = SAMPLES

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> HybridJob:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**{**data, "prompts": tuple(data["prompts"])})


def _load(cls: Any, folder: str) -> Any:
    pipe = cls.from_pretrained(folder, device="CPU", compile=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.weight_files = sorted(Path(folder).glob("*/openvino_model.bin"))  # pages given back while it compiles
    return pipe


def _size(pipe: Any) -> int:
    return min(pipe.unet.config.get("sample_size", 64) * pipe.vae_scale_factor, MAX_SIZE)


def _render(pipe: Any, prompts: tuple[str, ...], collect: list | None, limit: int = 0, images=None, **call: Any):
    """Run ``pipe`` on each prompt (seed ``SEED + i``; img2img of ``images[i]`` when given), collecting its UNet's
    inputs into ``collect`` with optimum-intel's InferRequestWrapper until ``limit`` are there; the latents made."""
    import torch
    from optimum.intel.openvino.quantization import InferRequestWrapper

    with ReleaseMappedPages(pipe.weight_files):  # the CPU plugin copies the weights: the mapped fp16 ones go
        pipe.compile()
    unet = pipe.unet
    if collect is not None:
        unet.request = InferRequestWrapper(unet.request, collect)
    latents = []
    try:
        for i, prompt in enumerate(prompts):
            if collect is not None and len(collect) >= limit:
                break
            image = {} if images is None else {"image": images[i]}
            generator = torch.Generator().manual_seed(SEED + i)
            latents.append(pipe(prompt=prompt, output_type="latent", generator=generator, **image, **call).images)
    finally:
        if collect is not None:
            unet.request = unet.request.request
    return latents


def collect_samples(job: HybridJob) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """The UNet inputs to calibrate on (at most ``job.samples``), the VAE decoder's inputs (the renders' final
    latents, scaled as the decode scales them), and what was run to get them."""
    from optimum.intel import OVStableDiffusionXLImg2ImgPipeline, OVStableDiffusionXLPipeline

    samples: list[Any] = []
    calls = 0  # UNet calls of the calibration renders: samples collected, and the base's renders for the refiner
    base = _load(OVStableDiffusionXLPipeline, job.base_folder or job.folder)
    size = _size(base)
    base.reshape(1, size, size, 1)  # static shapes: the CPU plugin compiles the fp16 UNet in 9 GB, not 15
    text2img = {"height": size, "width": size, "num_inference_steps": STEPS, "guidance_scale": GUIDANCE}
    if job.stage == "base":
        rendered = _render(base, job.prompts, samples, job.samples, **text2img)
        scaling = base.vae.config.scaling_factor
    else:
        per_prompt = max(1, int(REFINER_STEPS * REFINER_STRENGTH))  # as diffusers counts img2img steps
        prompts = job.prompts[: math.ceil(job.samples / per_prompt)]
        images = _render(base, prompts, None, **text2img)
        calls = len(prompts) * STEPS
        del base
        gc.collect()
        refiner = _load(OVStableDiffusionXLImg2ImgPipeline, job.folder)
        refiner.reshape(1, size, size, 1)
        refine = {"strength": REFINER_STRENGTH, "num_inference_steps": REFINER_STEPS, "guidance_scale": GUIDANCE}
        rendered = _render(refiner, prompts, samples, job.samples, images=images, **refine)
        scaling = refiner.vae.config.scaling_factor
    calls += len(samples)
    samples = samples[: job.samples]
    latents = [(latent / scaling).numpy() for latent in rendered]
    return samples, latents, {"samples": len(samples), "prompts_run": len(rendered), "size": size, "unet_calls": calls}


def run(job: HybridJob) -> dict[str, Any]:
    """Calibrate and quantize the job's UNet and VAE decoder in place; returns samples collected, prompts rendered,
    image size, UNet calls, how the decoder was quantized, and ``render_seconds`` (the
    calibration renders' time, which is not recorded in the manifest)."""
    started = time.monotonic()
    samples, latents, info = collect_samples(job)
    gc.collect()  # the pipelines are gone; give their memory back before NNCF compiles the UNet again
    info["render_seconds"] = round(time.monotonic() - started, 1)
    log.info(
        "[%s] %d calibration samples from %d prompts (%d UNet calls) in %.1f s",
        job.stage,
        len(samples),
        info["prompts_run"],
        info["unet_calls"],
        info["render_seconds"],
    )
    decoder = Path(job.folder) / "vae_decoder" / "openvino_model.xml"
    if is_quantized(decoder):  # the base's, copied (SDXL 1.0's refiner shares its VAE)
        info["vae_decoder"] = "int8 already"
    else:
        started = time.monotonic()
        quantize_decoder(decoder, latents)
        info["vae_decoder"] = f"int8, calibrated on {len(latents)} latents"
        log.info("[%s] vae_decoder: int8 quantization in %.1f s", job.stage, time.monotonic() - started)
    started = time.monotonic()
    quantize_unet(Path(job.folder) / "unet" / "openvino_model.xml", samples)
    log.info("[%s] unet: hybrid int8 quantization in %.1f s", job.stage, time.monotonic() - started)
    return info


def main(argv: list[str]) -> int:
    """Child entry point, as ``ov_sdxl.convert.export_part``'s: errors are written where the parent reads them."""
    from ov_sdxl.convert.export_part import child_main

    return child_main(argv, lambda job_file: run(HybridJob.read(job_file)))


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))

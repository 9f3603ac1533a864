"""The contenders of ``ov-sdxl bench`` and the child process that measures one of them.

    python -m ov_sdxl.bench.contenders job.json      # what ov_sdxl.bench runs, once per contender

Each contender runs in a process of its own, so its first image (imports, load, compile, generation) and its peak
memory are what a user's new process sees. The child loads the pipelines the way the contender's users do, wraps
the ``forward`` of the UNet(s) and text encoders and the VAE's ``decode`` with timers (counting UNet calls), makes
one warm-up image and ``repeat`` measured ones, and writes its figures as JSON and its last image as PNG. Shared
parts (the refiner taking the base's ``text_encoder_2`` and VAE) are timed once.

A contender is a ``ContenderSpec``: a kind (``torch``, ``optimum``, ``ov-sdxl``), its options and the converted
weights it runs. The ov-sdxl presets are one entry each, e.g. ``ContenderSpec("ov-sdxl:fast", "ov-sdxl",
{"preset": "fast"}, weights="hybrid-int8")``: the options go to ``RuntimeConfig``, and the bench converts the
synthetic model with those weights once (targets.py).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ov_sdxl.errors import ConfigError, GenerationError

log = logging.getLogger(__name__)

KINDS = ("torch", "optimum", "ov-sdxl")


@dataclass(frozen=True)
class ContenderSpec:
    """One contender: ``kind`` says how it is loaded and run, ``options`` tune it (torch dtype, RuntimeConfig)."""

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    weights: str | None = None  # the conversion it runs (convert --weights); None: the measured model itself
    floor_steps: bool = True  # its UNet steps do the floor's math (bf16 at the full batch): comparable with it

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"contender kind {self.kind!r} is not one of: {', '.join(KINDS)}")

    @property
    def compiled_cache(self) -> bool:
        """Whether it keeps a compiled-model cache, so a priming process runs first (optimum-intel's default sets
        ``CACHE_DIR`` only on GPU: on CPU it compiles in every new process, as its users see)."""
        return self.kind == "ov-sdxl"


CONTENDERS: dict[str, ContenderSpec] = {
    spec.name: spec
    for spec in (
        ContenderSpec("diffusers-fp32", "torch", {"dtype": "float32"}, "diffusers PyTorch, float32"),
        ContenderSpec("diffusers-bf16", "torch", {"dtype": "bfloat16"}, "diffusers PyTorch, bfloat16"),
        ContenderSpec("optimum-default", "optimum", {}, "optimum-intel from_pretrained, default settings"),
        ContenderSpec("ov-sdxl:quality", "ov-sdxl", {"preset": "quality"}, "ov-sdxl, quality preset (fp16 IR)"),
        ContenderSpec(
            "ov-sdxl:balanced", "ov-sdxl", {"preset": "balanced"}, "ov-sdxl, balanced preset (int8 IR)", "int8"
        ),
        ContenderSpec(
            "ov-sdxl:fast",
            "ov-sdxl",
            {"preset": "fast"},
            "ov-sdxl, fast preset (hybrid-int8 IR)",
            "hybrid-int8",
            floor_steps=False,  # int8 activations, and unguided (half-batch) steps after the guidance window
        ),
        ContenderSpec(
            "ov-sdxl:fast+taesdxl",
            "ov-sdxl",
            {"preset": "fast", "vae": "taesdxl"},
            "ov-sdxl, fast preset, TAESDXL decode (approximate)",
            "hybrid-int8",
            floor_steps=False,
        ),
    )
}


def resolve_contenders(names: list[str] | tuple[str, ...]) -> list[ContenderSpec]:
    """The specs for ``names``, in order; an unknown or repeated name is a ConfigError naming the choices."""
    unknown = [name for name in names if name not in CONTENDERS]
    if unknown:
        raise ConfigError(f"unknown contender {unknown[0]!r}; choose from: {', '.join(CONTENDERS)}")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ConfigError(f"contender {repeated[0]!r} is given more than once")
    if not names:
        raise ConfigError(f"no contender chosen; choose from: {', '.join(CONTENDERS)}")
    return [CONTENDERS[name] for name in names]


class Timers:
    """Seconds and calls per label, gathered by wrapping methods of model parts (each object wrapped once)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._wrapped: set[int] = set()

    def wrap(self, obj: Any, method: str, label: str) -> None:
        if obj is None or id(obj) in self._wrapped:
            return
        self._wrapped.add(id(obj))
        original = getattr(obj, method)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1

        setattr(obj, method, timed)  # an instance attribute: found before the class's method

    def wrap_pipeline(self, pipe: Any, stage: str) -> None:
        """The UNet, the text encoders and the VAE decode of one diffusers (or optimum-intel) pipeline."""
        self.wrap(pipe.unet, "forward", f"unet_{stage}")
        self.wrap(getattr(pipe, "text_encoder", None), "forward", "text_encoders")
        self.wrap(getattr(pipe, "text_encoder_2", None), "forward", "text_encoders")
        self.wrap(pipe.vae, "decode", "vae_decode")

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def planned_unet_calls(scheduler: Any, steps: int, handoff: float | None) -> dict[str, int]:
    """UNet calls per stage for ``steps``, by the rule of diffusers' SDXL pipelines (``denoising_end`` keeps the
    timesteps at or above the cut-off, ``denoising_start`` the ones below it, +1 for an even count when the
    scheduler is second order)."""
    scheduler = scheduler.__class__.from_config(scheduler.config)
    scheduler.set_timesteps(steps)
    timesteps = [float(t) for t in scheduler.timesteps]
    if handoff is None:
        return {"base": len(timesteps)}
    train = scheduler.config.num_train_timesteps
    cutoff = int(round(train - handoff * train))
    refiner = sum(t < cutoff for t in timesteps)
    if scheduler.order == 2 and refiner % 2 == 0:
        refiner += 1
    return {"base": sum(t >= cutoff for t in timesteps), "refiner": refiner}


# -- loading and running, per kind ------------------------------------------------------------------------------
def _load_torch(job: dict[str, Any], two_stage: bool) -> tuple[Any, Any]:
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    dtype = getattr(torch, job["contender"]["options"]["dtype"])
    base_dir, *rest = job["torch_source"]
    base = StableDiffusionXLPipeline.from_pretrained(base_dir, torch_dtype=dtype, add_watermarker=False)
    refiner = None
    if two_stage:  # as diffusers' SDXL documentation does it: the refiner takes the base's encoder 2 and VAE
        refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
            rest[0], text_encoder_2=base.text_encoder_2, vae=base.vae, torch_dtype=dtype, add_watermarker=False
        )
    return base, refiner


def _load_optimum(job: dict[str, Any], two_stage: bool) -> tuple[Any, Any]:
    from optimum.intel import OVStableDiffusionXLImg2ImgPipeline, OVStableDiffusionXLPipeline

    base = OVStableDiffusionXLPipeline.from_pretrained(job["base"], add_watermarker=False)
    refiner = None
    if two_stage:
        refiner = OVStableDiffusionXLImg2ImgPipeline.from_pretrained(job["refiner"], add_watermarker=False)
    return base, refiner


def _diffusers_image(base: Any, refiner: Any, settings: dict[str, Any], steps: int) -> Any:
    """One image the way diffusers' SDXL documentation and the OpenVINO notebook make it."""
    import torch

    common = dict(
        prompt=settings["prompt"],
        num_inference_steps=steps,
        guidance_scale=settings["guidance"],
        generator=torch.Generator("cpu").manual_seed(settings["seed"]),
    )
    size = dict(width=settings["width"], height=settings["height"])
    if refiner is None:
        return base(**common, **size).images[0]
    fraction = settings["high_noise_frac"]
    latents = base(**common, **size, denoising_end=fraction, output_type="latent").images
    return refiner(**common, image=latents, denoising_start=fraction).images[0]


class _Runner:
    """Loads one contender and makes images with it; ``scheduler`` and the pipelines are known after load()."""

    def __init__(self, job: dict[str, Any]):
        self.job, self.settings = job, job["settings"]
        self.kind = job["contender"]["kind"]
        self.two_stage = self.settings["mode"] == "base+refiner"
        self.timers = Timers()

    def load(self) -> None:
        if self.kind == "ov-sdxl":
            from ov_sdxl.config import RuntimeConfig
            from ov_sdxl.runtime import SDXLRuntime

            options = {"cache_dir": self.job["cache_dir"], **self.job["contender"]["options"]}
            self.runtime = SDXLRuntime(RuntimeConfig(model_dir=self.job["model"], device="CPU", **options))
            self.base = self.runtime.pipelines.base
            self.refiner = self.runtime.pipelines.refiner if self.two_stage else None
            if self.runtime.tiny_decoder is not None:  # --vae taesdxl decodes there, not in the pipelines' VAE
                self.timers.wrap(self.runtime.tiny_decoder, "decode", "vae_decode")
        else:
            loader = _load_torch if self.kind == "torch" else _load_optimum
            self.base, self.refiner = loader(self.job, self.two_stage)
        for pipe in (self.base, self.refiner):
            if pipe is not None:
                pipe.set_progress_bar_config(disable=True)
        self.timers.wrap_pipeline(self.base, "base")
        if self.refiner is not None:
            self.timers.wrap_pipeline(self.refiner, "refiner")

    def image(self, steps: int) -> float:
        """Make one image; return its wall time (sub-model times accumulate in ``timers``)."""
        started = time.perf_counter()
        if self.kind != "ov-sdxl":
            self.last = _diffusers_image(self.base, self.refiner, self.settings, steps)
        else:
            s = self.settings
            kw = dict(width=s["width"], height=s["height"], steps=steps, guidance=s["guidance"], seed=s["seed"])
            kw["cache_interval"] = s["cache_interval"]  # None: the preset's own
            if self.two_stage:
                result = self.runtime.base_then_refiner(s["prompt"], high_noise_frac=s["high_noise_frac"], **kw)
            else:
                result = self.runtime.text2img(s["prompt"], **kw)
            self.last = result.images[0]
        return time.perf_counter() - started

    def planned(self, steps: int) -> dict[str, int]:
        return planned_unet_calls(
            self.base.scheduler, steps, self.settings["high_noise_frac"] if self.two_stage else None
        )


def _figures(runner: _Runner, image_s: float, stages: list[str]) -> dict[str, Any]:
    t = runner.timers
    unet = {stage: t.seconds[f"unet_{stage}"] for stage in stages}
    figures = {
        "image_s": image_s,
        "text_encoders_s": t.seconds["text_encoders"],
        "vae_decode_s": t.seconds["vae_decode"],
        "other_s": image_s - sum(unet.values()) - t.seconds["text_encoders"] - t.seconds["vae_decode"],
    }
    for stage in stages:
        figures[f"unet_{stage}_s_per_step"] = unet[stage] / t.calls[f"unet_{stage}"]
    figures["unet_calls"] = {stage: t.calls[f"unet_{stage}"] for stage in stages}
    return figures


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Load, make the first image (timed from the process's start), then ``repeat`` warm images."""
    import psutil

    started = psutil.Process().create_time()
    settings = job["settings"]
    steps = settings["steps"]
    if job["contender"]["kind"] == "torch" and settings["torch_steps"] is not None:
        steps = min(steps, settings["torch_steps"])
    runner = _Runner(job)
    runner.load()
    load_s = time.time() - started
    runner.image(steps)
    first_s = time.time() - started
    if job["prime"]:
        return {"primed": True, "first_image_s": first_s}
    stages = ["base", "refiner"] if runner.two_stage else ["base"]
    runs = []
    for _ in range(settings["repeat"]):
        runner.timers.reset()
        runs.append(_figures(runner, runner.image(steps), stages))
    planned, measured_plan = runner.planned(settings["steps"]), runner.planned(steps)
    if runs[0]["unet_calls"] != measured_plan:
        raise GenerationError(f"UNet calls {runs[0]['unet_calls']} differ from the planned {measured_plan}")
    figures = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "unet_calls"}
    # Slow contenders ran fewer steps: add the missing UNet calls at the measured seconds per call.
    missing = sum(figures[f"unet_{s}_s_per_step"] * (planned[s] - measured_plan[s]) for s in stages)
    figures["image_s"] += missing
    figures["first_image_s"] = first_s + missing
    figures["load_s"] = load_s
    figures["peak_rss_bytes"] = _peak_rss()
    image = Path(job["report"]).with_suffix(".png")  # the last image, for the drift column (report.add_drift)
    runner.last.save(image)
    one_shot = runner.kind == "ov-sdxl" and runner.runtime.config.one_shot
    return {
        "runtime": "one-shot" if one_shot else "long-lived",  # base+refiner: both UNets compiled, or one at a time
        "figures": figures,
        "image": str(image),
        "unet_calls": planned,
        "unet_calls_run": measured_plan,
        "steps_run": steps,
        "extrapolated": steps != settings["steps"],
    }


def _peak_rss() -> int:
    """The resident-memory high-water mark of this process (or of a child it ran, if larger); Linux reports kB."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * (1 if sys.platform == "darwin" else 1024)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for variable in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        os.environ.setdefault(variable, "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import warnings

    warnings.filterwarnings("ignore")
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    report = measure(job)
    Path(job["report"]).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

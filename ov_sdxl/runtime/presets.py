"""Run-time presets: what ``--preset quality|balanced|fast`` changes, and which converted weights each one runs.

    from ov_sdxl.runtime.presets import resolve_preset
    settings = resolve_preset(None, "hybrid-int8")       # no preset asked: the one matching the weights (fast)
    settings.ov_config("CPU")                            # {"INFERENCE_PRECISION_HINT": "bf16", ...} on bf16 CPUs
    guidance = settings.guidance_window(pipe, params.guidance)   # fast: classifier-free guidance in early steps

The weights are chosen when converting (``--weights fp16 | int8 | hybrid-int8``); a preset runs what its
conversion made, and asking for a preset the model was not converted for is a ``ConfigError`` naming the
conversion to run. Every preset uses static shapes and the compiled-model cache (sdxl_runtime.py, pipelines.py).

- ``quality``: fp16 (or fp32) weights; the math unchanged, apart from bf16 inference where the CPU has it.
- ``balanced``: int8 (or int4) weight-only compression; the same runtime as quality, but for the CPU plugin's
  quantization of the int8 MatMuls' activations in groups of 128 channels (as fast).
- ``fast``: hybrid-int8 (int8 activations in the UNet and the VAE decoder, calibrated offline), and classifier-free
  guidance only while the noise level is high: steps whose timestep is below ``guidance_until`` of the training
  schedule run the UNet on the conditional batch alone, which halves their cost (Kynkäänniemi et al. 2024,
  "Applying guidance in a limited interval"; diffusers documents the same switch as dynamic CFG). The UNet keeps a
  dynamic batch so that the switch needs no second compiled model. And feature reuse (DeepCache,
  ``feature_cache.py``): the whole UNet runs every third step, the steps between run only its outermost layers on
  the deep features of the last whole step (``cache_interval`` 3, branch 0; ``cache_interval=1`` turns it off). Any
  preset reuses features when a request asks for it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ov_sdxl.errors import ConfigError
from ov_sdxl.formats import Preset, WeightFormat

FAST_GUIDANCE_UNTIL = 0.5  # guidance while timestep >= 0.5 x the training timesteps: the noisier half
FAST_CACHE_INTERVAL = 3  # the whole UNet every third step, the shallow path between (DeepCache's published setting)
# The CPU plugin quantizes the activations of int8 weight-only MatMuls on the fly, in groups of 32 channels by
# default; groups of 128 made the full-size UNet step 1.15x faster for fast and 1.17x for balanced (both have int8
# weight-only MatMuls; docs/benchmark.md, "CPU plugin settings")
INT8_DYNAMIC_QUANTIZATION_GROUP = 128
GUIDED_TENSORS = ("prompt_embeds", "add_text_embeds", "add_time_ids")  # what diffusers doubles for guidance


@dataclass(frozen=True)
class PresetSettings:
    """One preset: the weights it runs, and what it changes at run time."""

    preset: Preset
    weights: tuple[WeightFormat, ...]  # the conversions it runs on
    convert_with: str  # the --weights value that makes a model for it
    guidance_until: float | None = None  # guidance only for timesteps >= this fraction of training's; None: all
    cache_interval: int = 1  # feature reuse by default: the whole UNet every N steps (feature_cache.py); 1: off
    dynamic_quantization_group: int | None = None  # the CPU plugin's group for int8 activations; None: its own

    def ov_config(self, device: str) -> dict[str, str]:
        """The OpenVINO settings of this preset on ``device``: bf16 inference on CPUs that have bf16, and the
        dynamic quantization group of the preset's int8 MatMuls."""
        if device != "CPU":
            return {}
        config = {"INFERENCE_PRECISION_HINT": "bf16"} if "BF16" in _capabilities(device) else {}
        if self.dynamic_quantization_group is not None:
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = str(self.dynamic_quantization_group)
        return config

    def metadata(self) -> dict[str, str]:
        out = {"preset": self.preset.value}
        if self.guidance_until is not None:
            out["guidance_until"] = str(self.guidance_until)
        return out

    def guidance_window(self, pipe: Any, guidance: float) -> GuidanceWindow | None:
        """For ``fast``: when this call's guidance stops; None when every step is guided (or none is)."""
        if self.guidance_until is None or not uses_guidance(pipe, guidance):
            return None
        return GuidanceWindow(self.guidance_until, pipe.scheduler.config.num_train_timesteps)


def uses_guidance(pipe: Any, guidance: float) -> bool:
    """Whether ``pipe`` runs classifier-free guidance (a doubled UNet batch) at ``guidance``: not at 1 or below,
    nor when the UNet takes the guidance scale as an input (LCM-distilled models)."""
    return guidance > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None


@dataclass(frozen=True)
class GuidanceWindow:
    """Guidance while the timestep is >= ``until`` x ``train`` (training timesteps); then the conditional half only.

    ``start_guided(level)`` tells whether a call starting at noise level ``level`` (1: pure noise; img2img: its
    strength; the refiner: 1 - the hand-off) begins with guidance at all; ``callback`` wraps a diffusers
    ``callback_on_step_end`` so that it drops the unconditional half once the next timestep is below the cutoff
    (and sets the pipeline's guidance scale to 1, which turns its guidance off for the remaining steps)."""

    until: float
    train: int

    @property
    def cutoff(self) -> float:
        return self.until * self.train

    def start_guided(self, level: float) -> bool:
        return level >= self.until

    def callback(self, inner: Callable) -> Callable:
        def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
            upcoming = _next_timestep(pipe.scheduler)
            if pipe.do_classifier_free_guidance and upcoming is not None and upcoming < self.cutoff:
                for name in GUIDED_TENSORS:
                    kwargs[name] = kwargs[name].chunk(2)[1]  # diffusers orders them (unconditional, conditional)
                pipe._guidance_scale = 1.0  # the property diffusers' loop reads at every step
            return inner(pipe, step, timestep, kwargs)

        return on_step_end


def _next_timestep(scheduler: Any) -> float | None:
    """The timestep of the scheduler's next step (None after the last): its ``step_index`` points at it."""
    index = getattr(scheduler, "step_index", None)
    if index is None or index >= len(scheduler.timesteps):
        return None
    return float(scheduler.timesteps[index])


@functools.cache
def _capabilities(device: str) -> tuple[str, ...]:
    import openvino as ov

    return tuple(ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))


CONVERT_WITH = {Preset.QUALITY: "fp16", Preset.BALANCED: "int8", Preset.FAST: "hybrid-int8"}  # --weights to use
PRESETS = {
    preset: PresetSettings(
        preset,
        tuple(f for f in WeightFormat if f.facts.preset is preset),
        CONVERT_WITH[preset],
        FAST_GUIDANCE_UNTIL if preset is Preset.FAST else None,
        FAST_CACHE_INTERVAL if preset is Preset.FAST else 1,
        None if preset is Preset.QUALITY else INT8_DYNAMIC_QUANTIZATION_GROUP,
    )
    for preset in Preset
}


def resolve_preset(requested: Preset | str | None, weights: str | None) -> PresetSettings:
    """The preset to run a model whose manifest says ``weights`` (None: a plain optimum-intel export, fp32 or
    fp16): ``requested`` if the model was converted for it (else ConfigError naming the conversion), or the one
    that matches the weights."""
    try:
        format_ = WeightFormat(weights) if weights is not None else WeightFormat.FP16
    except ValueError:
        raise ConfigError(f"the model's weight format {weights!r} is unknown to this ov-sdxl; reconvert it") from None
    matching = next(s for s in PRESETS.values() if format_ in s.weights)
    if requested is None:
        return matching
    settings = PRESETS[Preset(requested)]
    if format_ not in settings.weights:
        raise ConfigError(
            f"preset {settings.preset.value} runs a model converted with --weights {settings.convert_with}; this "
            f"model has {format_.value} weights (its preset is {matching.preset.value}): use --preset "
            f"{matching.preset.value}, or convert again with --weights {settings.convert_with}"
        )
    return settings

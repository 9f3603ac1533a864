"""Configuration: ``str`` enums and frozen dataclasses, each validated when it is built.

    from ov_sdxl.config import ConvertConfig, RuntimeConfig
    ConvertConfig(base="stabilityai/stable-diffusion-xl-base-1.0", output="models/sdxl", weights="int8")
    RuntimeConfig(model_dir="models/sdxl", device="CPU")

The request's own, ``GenerationParams`` and ``Mode``, live in ``ov_sdxl.params`` and are re-exported here, as
``WeightFormat`` and ``Preset`` are from ``ov_sdxl.formats``.

A value that breaks a rule raises ``ConfigError`` naming the value and the rule; nothing is silently changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ov_sdxl.checks import enum_value as _enum
from ov_sdxl.checks import set_field as _set
from ov_sdxl.errors import ConfigError
from ov_sdxl.formats import Preset, WeightFormat
from ov_sdxl.model_info import ModelInfo, parse_few_step
from ov_sdxl.params import (  # noqa: F401 - re-exported: the request's configuration
    DEFAULT_GUIDANCE,
    DEFAULT_HIGH_NOISE_FRAC,
    DEFAULT_STEPS,
    DEFAULT_STRENGTH,
    MAX_SEED,
    GenerationParams,
    Mode,
)
from ov_sdxl.specs import EmbeddingSpec, LoraSpec


class Precision(str, Enum):
    """OpenVINO inference precision: the device's default (bf16 on CPUs with AMX), or a fixed one."""

    AUTO = "auto"
    F32 = "f32"
    BF16 = "bf16"
    F16 = "f16"


class Vae(str, Enum):
    """What turns the final latents into pixels: SDXL's own VAE, or TAESDXL (fast, approximate; convert --taesdxl)."""

    FULL = "full"
    TAESDXL = "taesdxl"


@dataclass(frozen=True)
class ConvertConfig:
    """One conversion: SDXL base (and optionally refiner) sources into an ov-sdxl model folder; or, with
    ``base=None``, only ``taesdxl`` added to the converted model in ``output``."""

    base: str | None
    output: Path
    refiner: str | None = None
    weights: WeightFormat = WeightFormat.FP16
    overwrite: bool = False
    few_step: ModelInfo | None = None  # a few-step model: "turbo", "lightning:4", "lcm" (see model_info.py)
    loras: tuple[LoraSpec, ...] = ()  # LoraSpec or "FILE[:SCALE]" text, fused into the base before export
    allow_pickle: bool = False  # single-file .ckpt sources: unpickling can run code, so only when asked
    single_file_config: Path | None = None  # a diffusers folder whose configs describe a single-file source
    max_memory: int | None = None  # bytes the conversion's processes may use at once; None: what is free
    calibration_prompts: Path | None = None  # hybrid-int8: a text file, one prompt per line; None: the shipped ones
    calibration_samples: int | None = (
        None  # hybrid-int8: UNet calls calibrated on, per UNet; None: convert.hybrid.SAMPLES
    )
    taesdxl: str | None = None  # TAESDXL (AutoencoderTiny): hub id or folder; its decoder is exported too

    def __post_init__(self) -> None:
        _set(self, "weights", _enum(WeightFormat, self.weights, "weight format"))
        if self.calibration_prompts is not None:
            if self.weights is not WeightFormat.HYBRID_INT8:
                raise ConfigError(
                    f"--calibration-prompts is only used by --weights hybrid-int8, not {self.weights.value}"
                )
            _set(self, "calibration_prompts", Path(self.calibration_prompts))
            if not self.calibration_prompts.is_file():
                raise ConfigError(f"--calibration-prompts {self.calibration_prompts}: no such file")
        if self.calibration_samples is not None:
            if self.weights is not WeightFormat.HYBRID_INT8:
                raise ConfigError(
                    f"--calibration-samples is only used by --weights hybrid-int8, not {self.weights.value}"
                )
            value = self.calibration_samples
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"--calibration-samples {value!r} must be a whole number >= 1")
        loras = self.loras if isinstance(self.loras, (list, tuple)) else [self.loras]
        _set(self, "loras", tuple(s if isinstance(s, LoraSpec) else LoraSpec.parse(s) for s in loras))
        if self.single_file_config is not None:
            _set(self, "single_file_config", Path(self.single_file_config))
        if self.max_memory is not None and (
            not isinstance(self.max_memory, int) or isinstance(self.max_memory, bool) or self.max_memory <= 0
        ):
            raise ConfigError(f"max_memory {self.max_memory!r} must be a whole number of bytes > 0")
        if isinstance(self.few_step, str):
            _set(self, "few_step", parse_few_step(self.few_step))
        elif self.few_step is not None and not isinstance(self.few_step, ModelInfo):
            raise ConfigError(f"--few-step must be text such as turbo, lightning:4 or lcm, got {self.few_step!r}")
        _set(self, "output", Path(self.output))
        for name in ("base", "refiner", "taesdxl"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"--{name} must be a hub id, a diffusers folder or a file, got {value!r}")
        if self.base is None:
            if self.taesdxl is None:
                raise ConfigError("--base is needed (without it, convert only adds --taesdxl to a converted model)")
            given = [
                flag
                for flag, value in (
                    ("--refiner", self.refiner),
                    ("--lora", self.loras),
                    ("--few-step", self.few_step),
                    ("--single-file-config", self.single_file_config),
                    ("--calibration-prompts", self.calibration_prompts),
                    ("--calibration-samples", self.calibration_samples),
                )
                if value
            ]
            if given:
                raise ConfigError(f"{given[0]} needs --base (without it, only --taesdxl is added to --output)")


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how to run a converted model."""

    model_dir: Path
    device: str = "CPU"
    precision: Precision = Precision.AUTO
    static_shapes: bool = True
    max_pixels: int = 2048 * 2048  # width x height of one image; larger requests are refused before any work
    max_steps: int = 200
    max_images: int = 8
    cache_dir: Path | None = None  # compiled-model cache; None: $OV_SDXL_CACHE_DIR or ~/.cache/ov-sdxl/compiled
    use_cache: bool = True
    embeddings: tuple[EmbeddingSpec, ...] = ()  # textual inversion: "FILE.safetensors[:TOKEN]", paths or specs
    watermark: bool = False  # SDXL's invisible watermark in every image (needs invisible-watermark)
    preset: Preset | None = None  # None: the one that matches the model's weights (formats.py)
    one_shot: bool = False  # one request, then the process ends: base+refiner gives the base's UNet back first
    vae: Vae = Vae.FULL  # the final decode (and previews): SDXL's VAE, or TAESDXL where converted

    def __post_init__(self) -> None:
        _set(self, "model_dir", Path(self.model_dir))
        _set(self, "precision", _enum(Precision, self.precision, "precision"))
        _set(self, "vae", _enum(Vae, self.vae, "vae"))
        if self.preset is not None:
            _set(self, "preset", _enum(Preset, self.preset, "preset"))
        if not isinstance(self.device, str) or not self.device.strip():
            raise ConfigError(f"device must be a name such as CPU, GPU, GPU.1 or AUTO, got {self.device!r}")
        _set(self, "device", self.device.strip().upper())
        if self.cache_dir is not None:
            _set(self, "cache_dir", Path(self.cache_dir))
        for name in ("max_pixels", "max_steps", "max_images"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} {value!r} must be a whole number >= 1")
        if isinstance(self.embeddings, (str, Path, EmbeddingSpec)):
            raise ConfigError(f"embeddings must be a list of embedding files, got one: {self.embeddings!r}")
        _set(self, "embeddings", tuple(EmbeddingSpec.parse(item) for item in self.embeddings))
        tokens = [spec.token.lower() for spec in self.embeddings]
        repeated = sorted({token for token in tokens if tokens.count(token) > 1})
        if repeated:
            files = ", ".join(str(s.path) for s in self.embeddings if s.token.lower() == repeated[0])
            raise ConfigError(
                f"embedding token {repeated[0]} is given to several files ({files}); give each its own, FILE:TOKEN"
            )
        for name in ("watermark", "one_shot"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def check_limits(self, width: int, height: int, steps: int, num_images: int) -> None:
        """Refuse, before any work, a request over this runtime's caps (each named as the command line and
        Python name it)."""
        for value, limit, what, flag in (
            (width * height, self.max_pixels, f"{width}x{height} is {width * height} pixels", "max_pixels"),
            (steps, self.max_steps, f"steps {steps}", "max_steps"),
            (num_images, self.max_images, f"num_images {num_images}", "max_images"),
        ):
            if value > limit:
                raise ConfigError(
                    f"{what}, over the limit of {limit}; raise it with --{flag.replace('_', '-')} "
                    f"(RuntimeConfig {flag}=... in Python)"
                )

    def resolved_cache_dir(self) -> Path | None:
        import os

        if not self.use_cache:
            return None
        if self.cache_dir is not None:
            return self.cache_dir
        return Path(os.environ.get("OV_SDXL_CACHE_DIR") or Path.home() / ".cache" / "ov-sdxl" / "compiled")

"""ov-sdxl: Stable Diffusion XL on Intel CPUs and GPUs through OpenVINO.

    from ov_sdxl import ConvertConfig, SDXLRuntime, convert_models
    convert_models(ConvertConfig(base="stabilityai/stable-diffusion-xl-base-1.0", output="models/sdxl"))
    runtime = SDXLRuntime.from_dir("models/sdxl", device="CPU")
    runtime.text2img("a lighthouse at dusk", seed=7).images[0].save("out.png")

Heavy libraries (torch, openvino, optimum, diffusers) are imported only by the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ov_sdxl.config import ConvertConfig, GenerationParams, Mode, Precision, Preset, RuntimeConfig, WeightFormat
from ov_sdxl.errors import (
    ConfigError,
    ConversionError,
    CorruptModelError,
    DeviceNotAvailableError,
    GenerationCancelled,
    GenerationError,
    ImageError,
    InputError,
    InsufficientResourcesError,
    ModelNotFoundError,
    OutputError,
    OvSdxlError,
)

if TYPE_CHECKING:
    from ov_sdxl.convert import convert_models
    from ov_sdxl.generation import GenerationResult
    from ov_sdxl.runtime import SDXLRuntime

__version__ = "0.1.0"

_LAZY = {
    "SDXLRuntime": "ov_sdxl.runtime",
    "GenerationResult": "ov_sdxl.generation",
    "convert_models": "ov_sdxl.convert",
}


def __getattr__(name: str) -> Any:
    """Re-export the runtime and converter without importing them (and their dependencies) at import time."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ov_sdxl' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "ConversionError",
    "ConvertConfig",
    "CorruptModelError",
    "DeviceNotAvailableError",
    "GenerationCancelled",
    "GenerationError",
    "GenerationParams",
    "GenerationResult",
    "ImageError",
    "InputError",
    "InsufficientResourcesError",
    "Mode",
    "ModelNotFoundError",
    "OutputError",
    "OvSdxlError",
    "Precision",
    "Preset",
    "RuntimeConfig",
    "SDXLRuntime",
    "WeightFormat",
    "convert_models",
]

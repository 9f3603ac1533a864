"""ov-sdxl: Stable Diffusion XL on Intel CPUs and GPUs through OpenVINO.

    from ov_sdxl import ConvertConfig, SDXLRuntime, convert_models
    convert_models(ConvertConfig(base="stabilityai/stable-diffusion-xl-base-1.0", output="models/sdxl"))
    runtime = SDXLRuntime.from_dir("models/sdxl", device="CPU")
    runtime.text2img("a lighthouse at dusk", seed=7).images[0].save("out.png")

Heavy libraries (torch, openvino, optimum, diffusers) are imported only by the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from ov_sdxl.exports import lazy_exports
from ov_sdxl.repaint import InpaintArea, OutpaintFill

if TYPE_CHECKING:
    from ov_sdxl.convert import convert_models
    from ov_sdxl.runtime import GenerationResult, SDXLRuntime

__version__ = "0.1.0"

# the runtime and the converter, re-exported without importing them (and their dependencies) at import time
__getattr__ = lazy_exports(
    __name__,
    {"SDXLRuntime": "ov_sdxl.runtime", "GenerationResult": "ov_sdxl.runtime", "convert_models": "ov_sdxl.convert"},
)

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
    "InpaintArea",
    "InputError",
    "InsufficientResourcesError",
    "Mode",
    "ModelNotFoundError",
    "OutpaintFill",
    "OutputError",
    "OvSdxlError",
    "Precision",
    "Preset",
    "RuntimeConfig",
    "SDXLRuntime",
    "WeightFormat",
    "convert_models",
]

"""Weight formats and run-time presets, with every fact that depends on the weight format, in one place.

    from ov_sdxl.formats import Preset, WeightFormat
    WeightFormat("int8").facts.bits                  # 8
    WeightFormat.HYBRID_INT8.facts.preset            # Preset.FAST: the preset that runs these weights
    WeightFormat.INT4.facts.compression              # the NNCF settings optimum-intel compresses with
    [f.value for f in WeightFormat]                  # the CLI's --weights choices

Conversion (``--weights``), its memory and disk estimates, the run-time presets and the tutorials all read these
facts; nothing else spells them out again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any

from ov_sdxl.resources import GB


class Preset(str, Enum):
    """Speed against exactness at run time (runtime/presets.py); each runs the weights of its conversion."""

    QUALITY = "quality"  # fp16/fp32 weights, the math unchanged apart from bf16 where the hardware has it
    BALANCED = "balanced"  # int8 (or int4) weights, the same runtime
    FAST = "fast"  # hybrid-int8 weights, and classifier-free guidance only in the early steps


class WeightFormat(str, Enum):
    """How the converted IR stores weights: plain floats, or NNCF weight compression."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    INT4 = "int4"
    HYBRID_INT8 = "hybrid-int8"  # UNet, VAE decoder: int8 weights and activations (calibrated); others int8

    @property
    def facts(self) -> FormatFacts:
        return FORMATS[self]

    @property
    def is_compressed(self) -> bool:
        return self.facts.bits < 16


@dataclass(frozen=True)
class FormatFacts:
    """What follows from one weight format.

    ``peak`` is the peak memory of one export child as (fixed bytes, bytes per byte of the fp16 weights it
    exports); ``disk_per_fp16_byte`` the IR's size per byte of fp16 weights. Both were measured on the synthetic
    full-size SDXL (docs/benchmark.md): the base UNet (5.1 GB in fp16) peaks at 7.5 GB when exported in fp16, the
    text encoders and VAE (1.8 GB) at 2.6 GB; hybrid-int8's calibration child (the stage's pipeline compiled and
    run, then NNCF's statistics pass; ov_sdxl.convert.hybrid_quantize) at 9.9 GB for the base and for the refiner
    (4.5 GB of fp16 UNet, which renders its inputs with the base first), whatever the number of samples.
    """

    bits: int  # bits per weight of the large layers
    preset: Preset  # the run-time preset made for these weights
    peak: tuple[float, float]
    disk_per_fp16_byte: float
    compression: Mapping[str, Any] | None = None  # NNCF weight-only settings (optimum-cli's defaults); None: floats


FORMATS: Mapping[WeightFormat, FormatFacts] = MappingProxyType(
    {
        WeightFormat.FP32: FormatFacts(32, Preset.QUALITY, (1.2 * GB, 2.6), 2.0),
        WeightFormat.FP16: FormatFacts(16, Preset.QUALITY, (1.2 * GB, 1.3), 1.0),
        WeightFormat.INT8: FormatFacts(
            8, Preset.BALANCED, (1.2 * GB, 1.3), 0.52, MappingProxyType({"bits": 8, "sym": False})
        ),
        WeightFormat.INT4: FormatFacts(
            4,
            Preset.BALANCED,
            (1.2 * GB, 1.3),
            0.3,
            # asymmetric, group size 128; layers whose width 128 does not divide get the largest group that does
            MappingProxyType(
                {"bits": 4, "sym": False, "group_size": 128, "ratio": 1.0, "group_size_fallback": "adjust"}
            ),
        ),
        # the UNet is calibrated and hybrid-quantized in a child of its own; the other sub-models are made as int8
        WeightFormat.HYBRID_INT8: FormatFacts(8, Preset.FAST, (5.6 * GB, 0.95), 0.52),
    }
)

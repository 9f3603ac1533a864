"""The convert wing: SDXL base and refiner (a hub id, a diffusers folder or one single file) to OpenVINO IR.

    from ov_sdxl import ConvertConfig
    from ov_sdxl.convert import convert_models
    config = ConvertConfig(base="stabilityai/stable-diffusion-xl-base-1.0", output="models/sdxl", weights="int8")
    convert_models(config)                 # ConvertResult: the folder, and whether it was already converted

- ``export``: the whole conversion: preflight, one child process per sub-model group, resumable, the manifest.
- ``export_part``: the child that exports one group with optimum-intel (``python -m ov_sdxl.convert.export_part``).
- ``hybrid``: the child that calibrates and hybrid-quantizes a UNet (``--weights hybrid-int8``).
- ``sources``: what ``--base``/``--refiner`` name, and the memory and disk a conversion needs.
- ``single_file``: single-file checkpoints (original SGM layout) as diffusers components.
- ``lora``: LoRAs fused into the base before export.
- ``reference``: SDXL 1.0's shipped configurations and the offline CLIP tokenizer.

It imports only the core (``ov_sdxl.config``, ``errors``, ``formats``, ``layout``...), never another wing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ov_sdxl.exports import lazy_exports

if TYPE_CHECKING:
    from ov_sdxl.convert.export import ConvertResult, convert_models
    from ov_sdxl.convert.hybrid import SHIPPED_PROMPTS, read_prompts
    from ov_sdxl.convert.reference import component_config, write_clip_tokenizer

__getattr__ = lazy_exports(
    __name__,
    {
        "ConvertResult": "ov_sdxl.convert.export",
        "SHIPPED_PROMPTS": "ov_sdxl.convert.hybrid",
        "convert_models": "ov_sdxl.convert.export",
        "component_config": "ov_sdxl.convert.reference",
        "read_prompts": "ov_sdxl.convert.hybrid",
        "write_clip_tokenizer": "ov_sdxl.convert.reference",
    },
)
__all__ = [
    "ConvertResult",
    "SHIPPED_PROMPTS",
    "component_config",
    "convert_models",
    "read_prompts",
    "write_clip_tokenizer",
]

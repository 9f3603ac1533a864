"""The testing wing: SDXL models and files built locally, for tests, the offline demo, notebooks and benches.

    from ov_sdxl.testing import build_tiny_model, build_synthetic_sources
    build_tiny_model("models/tiny")                        # a tiny random SDXL, converted (about a minute)
    build_synthetic_sources("/data/sdxl-synthetic")        # the real SDXL 1.0 architectures, random weights

- ``tiny``: the tiny random base and refiner; ``synthetic``: the full-size synthetic SDXL;
- ``lora_files``: LoRA files in PEFT and kohya layouts; ``original``: single-file checkpoints in SGM layout.

Random weights make pictures of noise. The product never imports this wing; it imports the product.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ov_sdxl.exports import lazy_exports

if TYPE_CHECKING:
    from ov_sdxl.testing.lora_files import write_kohya_lora, write_peft_lora
    from ov_sdxl.testing.original import write_original_checkpoint
    from ov_sdxl.testing.synthetic import build_synthetic_sources, count_parameters
    from ov_sdxl.testing.tiny import (
        TEXT_HIDDEN,
        TINY_SOURCES,
        build_tiny_inpainting_source,
        build_tiny_model,
        build_tiny_sources,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "TEXT_HIDDEN": "ov_sdxl.testing.tiny",
        "TINY_SOURCES": "ov_sdxl.testing.tiny",
        "build_synthetic_sources": "ov_sdxl.testing.synthetic",
        "build_tiny_inpainting_source": "ov_sdxl.testing.tiny",
        "build_tiny_model": "ov_sdxl.testing.tiny",
        "build_tiny_sources": "ov_sdxl.testing.tiny",
        "count_parameters": "ov_sdxl.testing.synthetic",
        "write_kohya_lora": "ov_sdxl.testing.lora_files",
        "write_original_checkpoint": "ov_sdxl.testing.original",
        "write_peft_lora": "ov_sdxl.testing.lora_files",
    },
)
__all__ = [
    "TEXT_HIDDEN",
    "TINY_SOURCES",
    "build_synthetic_sources",
    "build_tiny_inpainting_source",
    "build_tiny_model",
    "build_tiny_sources",
    "count_parameters",
    "write_kohya_lora",
    "write_original_checkpoint",
    "write_peft_lora",
]

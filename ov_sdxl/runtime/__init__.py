"""The runtime wing: load a converted model once, then generate (text2img, img2img, base+refiner, refine).

    from ov_sdxl.runtime import SDXLRuntime
    runtime = SDXLRuntime.from_dir("models/sdxl", device="CPU")
    result = runtime.base_then_refiner("a lighthouse at dusk", seed=7)     # GenerationResult: images, seed, timings

- ``sdxl_runtime``: ``SDXLRuntime``, one ``generate(params, progress, cancel)`` behind the task methods.
- ``generation``: ``GenerationResult``, the run in flight and its step callbacks.
- ``pipelines``: optimum-intel's pipelines, reshaped and compiled once, sharing sub-models.
- ``presets``: quality / balanced / fast at run time.
- ``feature_cache``: feature reuse across steps (DeepCache), cut from the UNet's own IR.
- ``weighting``, ``embeddings``: prompt weights and long prompts; textual inversion.
- ``decode``, ``watermark``: latents to images; SDXL's invisible watermark.
- ``compare``: one labelled grid of several models on the same prompt and seeds.

It imports only the core, never another wing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ov_sdxl.exports import lazy_exports

if TYPE_CHECKING:
    from ov_sdxl.runtime.compare import compare_models
    from ov_sdxl.runtime.generation import GenerationResult
    from ov_sdxl.runtime.pipelines import check_device
    from ov_sdxl.runtime.presets import PresetSettings, resolve_preset
    from ov_sdxl.runtime.sdxl_runtime import SDXLRuntime
    from ov_sdxl.runtime.watermark import has_watermark

__getattr__ = lazy_exports(
    __name__,
    {
        "GenerationResult": "ov_sdxl.runtime.generation",
        "PresetSettings": "ov_sdxl.runtime.presets",
        "SDXLRuntime": "ov_sdxl.runtime.sdxl_runtime",
        "check_device": "ov_sdxl.runtime.pipelines",
        "compare_models": "ov_sdxl.runtime.compare",
        "has_watermark": "ov_sdxl.runtime.watermark",
        "resolve_preset": "ov_sdxl.runtime.presets",
    },
)
__all__ = [
    "GenerationResult",
    "PresetSettings",
    "SDXLRuntime",
    "check_device",
    "compare_models",
    "has_watermark",
    "resolve_preset",
]

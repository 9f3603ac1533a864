"""TAESDXL on OpenVINO: SDXL latents to pixels, fast and approximate (``--vae taesdxl``), and sharper previews.

    runtime = SDXLRuntime.from_dir("models/sdxl", vae="taesdxl")   # the model converted with --taesdxl
    runtime.tiny_decoder.decode(latents)     # torch [batch, 3, 8h, 8w] in [-1, 1], as the VAE's decode gives
    runtime.tiny_decoder.preview(latents)    # PIL images, for the preview callback

TAESDXL (madebyollin/taesdxl, diffusers' ``AutoencoderTiny``) was distilled to decode SDXL's latents as SDXL's VAE
does, for a small fraction of the time (docs/benchmarks.md has the figures): colours and composition match, fine
detail and texture are softer. It reads the UNet's latents as
they are (its scaling factor is 1). Its decoder is compiled for each latent shape when first needed, with the
runtime's device, cache and precision; a result that is not finite is decoded again in f32, as the VAE's is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class TinyDecoder:
    """The TAESDXL decoder IR in ``folder`` (``<model>/taesdxl/vae_decoder``), compiled per latent shape."""

    def __init__(self, folder: Path, device: str, ov_config: dict[str, str]):
        self.folder, self.device, self.ov_config = Path(folder), device, ov_config
        self._compiled: dict[tuple[tuple[int, ...], bool], Any] = {}  # (latent shape, f32) -> compiled model

    def _model(self, shape: tuple[int, ...], f32: bool) -> Any:
        if (shape, f32) not in self._compiled:
            import openvino as ov

            core = ov.Core()
            model = core.read_model(self.folder / "openvino_model.xml")
            model.reshape(list(shape))
            config = {**self.ov_config, **({"INFERENCE_PRECISION_HINT": "f32"} if f32 else {})}
            log.debug("compiling TAESDXL for latents %s%s", shape, " in f32" if f32 else "")
            compiled = core.compile_model(model, self.device, config)
            self._compiled = {key: value for key, value in self._compiled.items() if key[0] == shape}
            self._compiled[(shape, f32)] = compiled
        return self._compiled[(shape, f32)]

    def decode(self, latents: Any, f32: bool = False) -> Any:
        """Latents [batch, 4, h, w] (torch, the UNet's own scale) to an image tensor [batch, 3, 8h, 8w] in [-1, 1]."""
        import torch

        model = self._model(tuple(latents.shape), f32)
        return torch.from_numpy(model(latents.detach().float().numpy())[0])

    def preview(self, latents: Any) -> list[Any]:
        """One PIL image per latent of the batch, at the image's full size."""
        from PIL import Image

        pixels = ((self.decode(latents) + 1) * 127.5).clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(image, "RGB") for image in pixels]

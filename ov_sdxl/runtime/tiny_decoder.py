"""TAESDXL on OpenVINO: SDXL latents to pixels, fast and approximate (``--vae taesdxl``), and sharper previews.

    runtime = SDXLRuntime.from_dir("models/sdxl", vae="taesdxl")   # the model converted with --taesdxl
    runtime.tiny_decoder.decode(latents)     # torch [batch, 3, 8h, 8w] in [-1, 1], as the VAE's decode gives
    runtime.tiny_decoder.preview(latents)    # PIL images at half the image's side, for the preview callback

TAESDXL (madebyollin/taesdxl, diffusers' ``AutoencoderTiny``) was distilled to decode SDXL's latents as SDXL's VAE
does, for a small fraction of the time (docs/benchmarks.md has the figures): colours and composition match, fine
detail and texture are softer. It reads the UNet's latents as
they are (its scaling factor is 1). Its decoder is compiled for each latent shape when first needed, with the
runtime's device, cache and precision (the last few shapes stay compiled); a result that is not finite is decoded
again in f32, as the VAE's is.

Previews decode the latents averaged over 2x2 blocks: a picture at half the image's side for a quarter of a full
decode (a few percent of a UNet step at every size, where a full-size decode at 512x512 is a fifth of fast's step).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KEEP = 4  # compiled shapes kept: the final decode's and the previews', for a size or two


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
            while len(self._compiled) >= KEEP:  # the oldest goes
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[(shape, f32)] = compiled
        return self._compiled[(shape, f32)]

    def decode(self, latents: Any, f32: bool = False) -> Any:
        """Latents [batch, 4, h, w] (torch, the UNet's own scale) to an image tensor [batch, 3, 8h, 8w] in [-1, 1]."""
        import torch

        model = self._model(tuple(latents.shape), f32)
        return torch.from_numpy(model(latents.detach().float().numpy())[0])

    def preview(self, latents: Any) -> list[Any]:
        """One PIL image per latent of the batch, at half the image's side (a latent side of 2n+1 gives n+1)."""
        import torch
        from PIL import Image

        half = torch.nn.functional.avg_pool2d(latents.detach().float(), 2, ceil_mode=True)
        pixels = ((self.decode(half) + 1) * 127.5).clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(image, "RGB") for image in pixels]

"""Live previews: the latents after a denoising step as a small RGB image, by a linear map (no VAE call).

    from ov_sdxl.runtime.previews import latent_preview
    images = latent_preview(latents)          # latents [batch, 4, h, w] in SDXL's space -> PIL images h x w

    runtime.text2img("a fox", preview=lambda stage, step, images: images[0].save(f"{stage}-{step}.png"))

Each RGB pixel is a fixed linear combination of the four latent channels at that place: SDXL's VAE decodes
colour mostly that way, so the picture forming can be shown at every step for the cost of a 4x3 matrix product
(about a millisecond at 1024x1024), at the latent's size (1/8 of the image's side). It is an approximation: it
shows layout and colour, not detail, and it never changes the final image. The matrix is the one ComfyUI uses
for SDXL latent previews (``comfy/latent_formats.py``, class ``SDXL``, ``latent_rgb_factors``), fitted there
to SDXL's VAE; the latents are those of the sampling loop (noisy at the start, the image at the end).
"""

from __future__ import annotations

from typing import Any

# rows: the latent channels 0..3; columns: R, G, B (ComfyUI's SDXL latent_rgb_factors)
SDXL_LATENT_RGB = (
    (0.3920, 0.4054, 0.4549),
    (-0.2634, -0.0196, 0.0653),
    (0.0568, 0.1687, -0.0755),
    (-0.3112, -0.2359, -0.2076),
)


def latent_preview(latents: Any) -> list[Any]:
    """One PIL image per latent of the batch, ``latents`` being a torch tensor [batch, 4, height, width]."""
    import torch
    from PIL import Image

    factors = torch.tensor(SDXL_LATENT_RGB, dtype=torch.float32)
    rgb = torch.einsum("bchw,cr->bhwr", latents.detach().float(), factors)
    pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return [Image.fromarray(image, "RGB") for image in pixels]

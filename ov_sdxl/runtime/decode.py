"""Turning latents into images, with a check: NaN, infinite or all-black output is caught, never returned.

    from ov_sdxl.runtime.decode import decode_latents
    images, note = decode_latents(pipe, latents, f32_decoder=partial(pipes.decode_f32, pipe))
    images, note = decode_latents(pipe, latents, f32_decoder, tiny=runtime.tiny_decoder)   # TAESDXL instead

The decode is diffusers' own (``latents / scaling_factor`` -> VAE -> ``image_processor.postprocess``). In reduced
precision (bf16/f16) SDXL's VAE can overflow; when the result is not finite or entirely black, the decode is run
again with the VAE in f32, and if that does not give a usable image a ``GenerationError`` says so. With ``tiny``
(a ``TinyDecoder``, TAESDXL) the latents are decoded by it as they are, with the same check and fallback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from ov_sdxl.errors import GenerationError

log = logging.getLogger(__name__)

BLACK = -0.99  # decoded values live in [-1, 1]; an image whose every value is below this is black


def problem(image: Any) -> str | None:
    """What is wrong with a decoded image tensor, or None."""
    import torch

    if not torch.isfinite(image).all():
        return "NaN or infinite values"
    if bool((image <= BLACK).all()):
        return "an entirely black image"
    return None


def decode_latents(
    pipe: Any, latents: Any, f32_decoder: Callable[[Any], Any] | None, tiny: Any = None
) -> tuple[list[Any], str | None]:
    """Decode ``latents`` with ``pipe``'s VAE (or ``tiny``); return the PIL images and a note when the f32 fallback
    was used. ``f32_decoder`` None: the decode already ran in f32, there is nothing to fall back to."""
    if tiny is None:
        scaled = latents / pipe.vae.config.scaling_factor
        image = pipe.vae.decode(scaled, return_dict=False)[0]
    else:  # TAESDXL reads the latents as they are (its scaling factor is 1)
        scaled = latents
        image = tiny.decode(latents)
        if f32_decoder is not None:
            f32_decoder = functools.partial(tiny.decode, f32=True)
    issue = problem(image)
    note = None
    if issue is not None:
        if f32_decoder is None:
            raise GenerationError(f"the VAE produced {issue}, already in f32: try another seed or prompt")
        log.warning("the VAE produced %s; decoding again with the VAE in f32", issue)
        image = f32_decoder(scaled)
        retry = problem(image)
        if retry is not None:
            raise GenerationError(f"the VAE produced {issue}, and {retry} again in f32: try another seed or prompt")
        note = f"the VAE produced {issue} in reduced precision and was re-run in f32"
    return pipe.image_processor.postprocess(image, output_type="pil"), note

"""The denoising stages of one request on the loaded pipelines: each mode's run, from the shaped pipeline with its
scheduler, through diffusers' ``__call__``, to decoded (and pasted, and watermarked) images.

    stages = Stages(config, pipelines, preset, model_info, features, tiny_decoder=None, watermarker=None)
    images = stages.run(run)          # run: generation.Run (params resolved, size, generators, step callbacks)

Text2img, img2img, base+refiner (the base's latents handed over, undecoded, at ``high_noise_frac``), refine, and
inpaint/outpaint (inpaint.py's inputs, diffusers' inpainting pipeline on the base, then optionally the refiner's).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from ov_sdxl.config import Mode, Precision
from ov_sdxl.errors import GenerationCancelled, GenerationError
from ov_sdxl.runtime.decode import decode_latents
from ov_sdxl.runtime.generation import Run
from ov_sdxl.runtime.presets import GUIDED_TENSORS, uses_guidance
from ov_sdxl.runtime.weighting import CHUNK, chunk_count, encode, needs_embeddings
from ov_sdxl.schedulers import make_scheduler, scheduler_name

log = logging.getLogger(__name__)


class Stages:
    """The mode runners of one runtime (SDXLRuntime makes one), on its pipelines, preset, feature reuse, decoder
    (``tiny_decoder``: TAESDXL or None) and ``watermarker`` (or None)."""

    def __init__(self, config: Any, pipelines: Any, preset: Any, model_info: Any, features: Any, **decoding: Any):
        self.config, self.pipelines, self.preset, self.model_info = config, pipelines, preset, model_info
        self.features = features  # FeatureCache: the feature-reuse UNets
        self.tiny_decoder, self.watermarker = decoding["tiny_decoder"], decoding["watermarker"]
        self._schedulers: dict[int, Any] = {}  # each pipeline's own scheduler, the base of named ones

    def run(self, run: Run) -> list[Any]:
        """The images of ``run``, by its mode."""
        runner = {
            Mode.TEXT2IMG: self._text2img,
            Mode.IMG2IMG: self._img2img,
            Mode.BASE_REFINER: self._base_refiner,
            Mode.REFINE: self._refine,
            Mode.INPAINT: self._inpaint,
            Mode.OUTPAINT: self._inpaint,
        }[run.params.mode]
        return runner(run)

    def _prepare(self, name: str, run: Run) -> Any:
        """The pipeline, shaped for the request, with a fresh scheduler of the requested kind."""
        params = run.params
        loaded = getattr(self.pipelines, name)
        if needs_embeddings(loaded, params):  # weighted or long prompts: embeddings computed here, in windows
            run.chunks = chunk_count(loaded, params)
        tokens = (CHUNK + 2) * (run.chunks or 1)
        cfg = uses_guidance(loaded, params.guidance)
        window = cfg and self.preset.guidance_until is not None  # guidance stops part-way: a dynamic UNet batch
        pipe = self.pipelines.prepare(name, run.height, run.width, params.num_images, cfg, tokens, window)
        original = self._schedulers.setdefault(id(pipe), self._own_scheduler(name, pipe.scheduler))
        pipe.scheduler = make_scheduler(params.scheduler, original)
        run.scheduler = run.scheduler or params.scheduler or scheduler_name(pipe.scheduler)
        return pipe

    def _own_scheduler(self, name: str, scheduler: Any) -> Any:
        """The pipeline's scheduler, with the base UNet's prediction type when the model info names one (the
        1-step SDXL-Lightning predicts the sample), so that every named scheduler built from it uses it too."""
        prediction = self.model_info.prediction_type if self.model_info is not None else None
        if prediction is None or name.startswith("refiner"):
            return scheduler
        return scheduler.__class__.from_config(scheduler.config, prediction_type=prediction)

    def _call(self, stage: str, pipe: Any, run: Run, start: float = 1.0, **kwargs: Any) -> Any:
        """One diffusers ``__call__`` with the request's prompts and settings; ``kwargs`` add the task's own.
        ``start`` is the noise level it starts from (1: pure noise), for the fast preset's guidance window."""
        params = run.params
        guidance, callback = params.guidance, run.steps.callback(stage)
        window = self.preset.guidance_window(pipe, guidance)
        if window is not None:
            guidance = guidance if window.start_guided(start) else 1.0
            callback = window.callback(callback)
            kwargs["callback_on_step_end_tensor_inputs"] = ["latents", *GUIDED_TENSORS]  # latents: previews
        run.steps.check()
        started = time.monotonic()
        kwargs.setdefault("output_type", "latent")  # decoded here, with a check (see decode.py)
        if run.chunks is None:
            texts = dict(
                prompt=params.prompt,
                prompt_2=params.prompt_2,
                negative_prompt=params.negative_prompt,
                negative_prompt_2=params.negative_prompt_2,
            )
        else:
            texts = encode(pipe, params, run.chunks)
        try:
            with self.features.call(pipe.unet, pipe.scheduler, params.cache_interval, params.cache_branch or 0):
                out = pipe(
                    **texts,
                    num_inference_steps=params.steps,
                    guidance_scale=guidance,
                    num_images_per_prompt=params.num_images,
                    generator=run.generators,
                    callback_on_step_end=callback,
                    **kwargs,
                )
        except GenerationCancelled:
            raise
        except (RuntimeError, ValueError) as exc:
            raise GenerationError(f"the {stage} failed: {exc}") from exc
        run.timings[stage] = time.monotonic() - started
        return out.images

    def _input_image(self, run: Run) -> Any:
        from ov_sdxl.images import to_rgb

        image = to_rgb(run.params.image)
        if image.size != (run.width, run.height):
            log.debug("resizing the input image from %dx%d to %dx%d as requested", *image.size, run.width, run.height)
            image = image.resize((run.width, run.height))
        return image

    def _text2img(self, run: Run) -> list[Any]:
        pipe = self._prepare("base", run)
        return self._decode(pipe, self._call("base", pipe, run, width=run.width, height=run.height), run)

    def _img2img(self, run: Run) -> list[Any]:
        pipe = self._prepare("img2img", run)
        strength = run.params.strength
        latents = self._call("base", pipe, run, strength, image=self._input_image(run), strength=strength)
        return self._decode(pipe, latents, run)

    def _base_refiner(self, run: Run) -> list[Any]:
        fraction = run.params.high_noise_frac
        base = self._prepare("base", run)
        latents = self._call("base", base, run, width=run.width, height=run.height, denoising_end=fraction)
        if run.params.keep_base_images:
            run.base_images = self._decode(base, latents, run, "base_decode")
        self._release_base_unet(base)
        refiner = self._prepare("refiner", run)
        latents = self._call("refiner", refiner, run, 1 - fraction, image=latents, denoising_start=fraction)
        return self._decode(refiner, latents, run)

    def _release_base_unet(self, base: Any) -> None:
        if self.config.one_shot:  # the base's UNet is done with: its memory goes before the refiner's UNet compiles
            log.debug("one-shot: giving the base's UNet back before the refiner's compiles")
            self.features.forget(base.unet)
            base.unet.clear_requests()
        else:
            log.debug("long-lived runtime: the base's and the refiner's UNets stay compiled (one_shot=False)")

    def _refine(self, run: Run) -> list[Any]:
        pipe = self._prepare("refiner", run)
        strength = run.params.strength
        latents = self._call("refiner", pipe, run, strength, image=self._input_image(run), strength=strength)
        return self._decode(pipe, latents, run)

    def _inpaint(self, run: Run) -> list[Any]:
        """Inpaint and outpaint: diffusers' inpainting ``__call__`` on the base (a 4-channel UNet's latents are reset
        outside the mask at each step; an inpainting UNet takes the mask and the masked image as inputs). With
        ``refiner_frac`` the refiner's inpainting takes the latents over at that fraction (diffusers' inpainting
        ensemble); with ``refine_strength`` it repaints the masked part of the finished image again. The generated
        pixels are pasted over the original through the mask (inpaint.py)."""
        params, job, size = run.params, run.repaint, (run.width, run.height)
        pasting = functools.partial(job.paste, size=size)
        base, strength, fraction = self._prepare("inpaint", run), params.strength, params.refiner_frac
        inputs = {**job.inputs(base, job.image, size), "height": run.height, "width": run.width}
        handed = {"denoising_end": fraction} if fraction is not None else {}
        latents = self._call("base", base, run, strength, strength=strength, **inputs, **handed)
        if not params.uses_refiner:
            return self._decode(base, latents, run, paste=functools.partial(pasting, base))
        self._release_base_unet(base)
        refiner = self._prepare("refiner_inpaint", run)
        if fraction is not None:
            inputs.update(image=latents, denoising_start=fraction, strength=strength)
        else:  # the finished images, pasted, repainted again where the mask is
            paste = functools.partial(pasting, base)
            finished = self._decode(base, latents, run, "base_decode", paste=paste, mark=False)
            crops = [job.inputs(refiner, image, size)["image"] for image in finished]
            inputs.update(image=crops, strength=params.refine_strength)
        start = 1 - fraction if fraction is not None else params.refine_strength
        latents = self._call("refiner", refiner, run, start, **inputs)
        return self._decode(refiner, latents, run, paste=functools.partial(pasting, refiner))

    def _decode(
        self, pipe: Any, latents: Any, run: Run, timing: str = "decode", paste: Any = None, mark: bool = True
    ) -> list[Any]:
        """Latents to PIL images, as diffusers' SDXL ``__call__`` ends, with the NaN/black check of decode.py;
        ``paste`` puts each over its original (inpaint) before the watermark (``mark``: not on an image that is
        worked on further)."""
        started = time.monotonic()
        fallback = (
            None if self.config.precision is Precision.F32 else functools.partial(self.pipelines.decode_f32, pipe)
        )
        images, note = decode_latents(pipe, latents, fallback, self.tiny_decoder)
        if note:
            run.notes.append(note)
        if paste is not None:
            images = [paste(image) for image in images]
        if self.watermarker is not None and mark:
            images = self.watermarker.apply(images)
        run.timings[timing] = time.monotonic() - started
        return images

"""SDXLRuntime: load a converted model once, then run text2img, img2img, base+refiner and refine on it.

    from ov_sdxl import SDXLRuntime
    runtime = SDXLRuntime.from_dir("models/sdxl", device="CPU")
    result = runtime.text2img("a lighthouse at dusk", steps=30, seed=7)
    result.images[0].save("out.png"); result.seed; result.timings
    runtime.base_then_refiner("a lighthouse at dusk", high_noise_frac=0.8)
    runtime.refine("touch up", image=PIL.Image.open("photo.png"), strength=0.3)
    SDXLRuntime.from_dir("models/sdxl", embeddings=("neg.safetensors:<neg>",), watermark=True)  # embeddings.py...

Every task goes through ``generate(params, progress=..., cancel=..., preview=...)``: ``progress(stage, step, total)``
is called after each denoising step, ``preview(stage, step, images)`` with the picture forming (previews.py) every
``preview_every`` steps, and setting the ``cancel`` event stops the run within one step (GenerationCancelled).
The pipelines are optimum-intel's, i.e. diffusers' own ``__call__``; this module only chooses the pipeline,
the shape, the scheduler and the seed.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from ov_sdxl.config import DEFAULT_GUIDANCE, DEFAULT_STEPS, GenerationParams, Mode, Precision, RuntimeConfig, Vae
from ov_sdxl.errors import ConfigError, GenerationCancelled, GenerationError, ModelNotFoundError
from ov_sdxl.layout import ModelLayout
from ov_sdxl.model_info import ModelInfo
from ov_sdxl.params import image_seeds
from ov_sdxl.runtime.decode import decode_latents
from ov_sdxl.runtime.embeddings import Embedding, EmbeddingSet, EmbeddingSpec
from ov_sdxl.runtime.feature_cache import FeatureCache
from ov_sdxl.runtime.generation import GenerationResult, Preview, Progress, Run, Steps
from ov_sdxl.runtime.pipelines import PipelineSet, check_device
from ov_sdxl.runtime.presets import GUIDED_TENSORS, resolve_preset, uses_guidance
from ov_sdxl.runtime.tiny_decoder import TinyDecoder
from ov_sdxl.runtime.watermark import WATERMARK_METADATA, Watermarker
from ov_sdxl.runtime.weighting import CHUNK, chunk_count, encode, needs_embeddings
from ov_sdxl.schedulers import make_scheduler, scheduler_name

log = logging.getLogger(__name__)


class SDXLRuntime:
    """A converted SDXL model on one OpenVINO device. Thread-safe: one generation at a time."""

    def __init__(self, config: RuntimeConfig):
        self.config = config
        self.layout = ModelLayout.open(config.model_dir)
        self.model_info = ModelInfo.from_manifest(self.layout.manifest)  # None unless a few-step model
        check_device(config.device)
        self.preset = resolve_preset(config.preset, (self.layout.manifest or {}).get("weights"))
        self.pipelines = PipelineSet(self.layout, config.device, self._ov_config(), config.static_shapes)
        self._lock = threading.Lock()
        self._schedulers: dict[int, Any] = {}  # each pipeline's own scheduler, the base of named ones
        self._watermarker = Watermarker() if config.watermark else None
        self._embeddings = EmbeddingSet(self.layout.base)
        self._features = FeatureCache(config.device, self.pipelines.ov_config)  # the feature-reuse UNets
        self.pipelines.on_load = self._embeddings.apply
        self.tiny_decoder = self._tiny_decoder()  # TAESDXL, with vae="taesdxl"; None: SDXL's VAE decodes
        for spec in config.embeddings:
            self.load_embedding(spec.path, spec.token)

    def _tiny_decoder(self) -> TinyDecoder | None:
        if self.config.vae is not Vae.TAESDXL:
            return None
        if self.layout.tiny_vae is None:
            raise ModelNotFoundError(
                f"vae taesdxl: {self.layout.root} has no TAESDXL; add it with: python convert.py --output "
                f"{self.layout.root} --taesdxl madebyollin/taesdxl (or a local AutoencoderTiny folder)"
            )
        return TinyDecoder(self.layout.tiny_vae, self.config.device, self.pipelines.ov_config)

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str = "CPU", **options: Any) -> SDXLRuntime:
        return cls(RuntimeConfig(model_dir=model_dir, device=device, **options))

    def load_embedding(self, path: str | Path, token: str | None = None) -> Embedding:
        """Add an SDXL textual-inversion embedding; its token (default ``<file stem>``) then works in every prompt
        of every mode. Only the text encoders are recompiled (see embeddings.py)."""
        with self._lock:
            return self._embeddings.load(EmbeddingSpec(path, token), self.pipelines.loaded)

    @property
    def embeddings(self) -> list[Embedding]:
        """The loaded embeddings, in order: ``token``, ``path``, ``count`` (vectors), ``describe()``."""
        return list(self._embeddings.items)

    def _ov_config(self) -> dict[str, str]:
        ov_config = {"PERFORMANCE_HINT": "LATENCY"}
        cache = self.config.resolved_cache_dir()
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            ov_config["CACHE_DIR"] = str(cache)
        ov_config.update(self.preset.ov_config(self.config.device))
        if self.config.precision is not Precision.AUTO:
            ov_config["INFERENCE_PRECISION_HINT"] = self.config.precision.value
        return ov_config

    @property
    def has_refiner(self) -> bool:
        return self.pipelines.has_refiner

    @functools.cached_property
    def native_size(self) -> tuple[int, int]:
        """(width, height) the base was trained at: the UNet's sample size times the VAE's downscaling, or a
        few-step model's own (SDXL-Turbo: 512x512)."""
        import json

        if self.model_info is not None and self.model_info.native_size is not None:
            return self.model_info.native_size
        vae = json.loads((self.layout.base / "vae_decoder" / "config.json").read_text(encoding="utf-8"))
        side = self._unet_config["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)
        return side, side

    @functools.cached_property
    def _unet_config(self) -> dict[str, Any]:
        import json

        return json.loads((self.layout.base / "unet" / "config.json").read_text(encoding="utf-8"))

    @property
    def defaults(self) -> dict[str, Any]:
        """What a request that does not say runs with: steps, guidance and scheduler (None: the model's own)."""
        info = self.model_info
        if info is None:
            return {"steps": DEFAULT_STEPS, "guidance": DEFAULT_GUIDANCE, "scheduler": None}
        return {"steps": info.steps, "guidance": info.guidance, "scheduler": info.scheduler}

    def resolve(self, params: GenerationParams) -> tuple[GenerationParams, list[str]]:
        """``params`` with what was not given set to this model's defaults, and notes on what the user gave
        that this (few-step) model is not made for. Nothing the user gave is changed."""
        resolved = params.with_defaults(**self.defaults, cache_interval=self.preset.cache_interval)
        branches = 3 * len(self._unet_config["down_block_types"])  # DeepCache: three per down block
        if resolved.cache_interval > 1 and (resolved.cache_branch or 0) >= branches:
            raise ConfigError(
                f"cache_branch {resolved.cache_branch} is past this UNet's {branches} branches (0 to {branches - 1})"
            )
        notes = []
        if self.model_info is not None:
            embedded = self._unet_config.get("time_cond_proj_dim") is not None
            notes = self.model_info.check(resolved.steps, resolved.guidance, embedded_guidance=embedded)
        for note in notes:
            log.warning("%s", note)
        return resolved, notes

    # -- tasks -----------------------------------------------------------------------------------------------
    def text2img(self, prompt: str, **kw: Any) -> GenerationResult:
        return self._task(Mode.TEXT2IMG, prompt, kw)

    def img2img(self, prompt: str, image: Any, **kw: Any) -> GenerationResult:
        return self._task(Mode.IMG2IMG, prompt, {**kw, "image": image})

    def base_then_refiner(self, prompt: str, **kw: Any) -> GenerationResult:
        return self._task(Mode.BASE_REFINER, prompt, kw)

    def refine(self, prompt: str, image: Any, **kw: Any) -> GenerationResult:
        return self._task(Mode.REFINE, prompt, {**kw, "image": image})

    def _task(self, mode: Mode, prompt: str, kw: dict[str, Any]) -> GenerationResult:
        watch = {name: kw.pop(name) for name in ("progress", "cancel", "preview", "preview_every") if name in kw}
        return self.generate(GenerationParams(prompt=prompt, mode=mode, **kw), **watch)

    # -- the one entry point -----------------------------------------------------------------------------------
    def generate(
        self,
        params: GenerationParams,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        preview: Preview | None = None,
        preview_every: int = 1,
    ) -> GenerationResult:
        import torch

        from ov_sdxl.libraries import import_quietly

        import_quietly()
        if params.mode.needs_refiner and not self.has_refiner:
            raise ModelNotFoundError(
                f"mode {params.mode.value} needs a refiner, and {self.layout.root} has none; "
                "convert with --refiner stabilityai/stable-diffusion-xl-refiner-1.0"
            )
        params, notes = self.resolve(params)
        width, height = self._size(params)
        self.config.check_limits(width, height, params.steps, params.num_images)
        if self._watermarker is not None:
            self._watermarker.check_size(width, height)
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        generators = [torch.Generator("cpu").manual_seed(s) for s in image_seeds(seed, params.num_images)]
        previewer = self.tiny_decoder.preview if self.tiny_decoder is not None else None
        steps = Steps(progress, cancel, preview, preview_every, previewer)
        run = Run(self._embeddings.canonical_params(params), width, height, generators, steps)
        run.notes.extend(notes)
        for note in self._embeddings.notes(params):
            log.warning("%s", note)
            run.notes.append(note)
        runner = {
            Mode.TEXT2IMG: self._run_text2img,
            Mode.IMG2IMG: self._run_img2img,
            Mode.BASE_REFINER: self._run_base_refiner,
            Mode.REFINE: self._run_refine,
        }[params.mode]
        with self._lock:
            started = time.monotonic()
            images = runner(run)
            run.timings["total"] = time.monotonic() - started
        return GenerationResult(
            images=images,
            seed=seed,
            params=params,
            width=width,
            height=height,
            timings=run.timings,
            model=str(self.layout.root),
            base_images=run.base_images,
            notes=run.notes,
            scheduler=run.scheduler,
            extra={
                **self.preset.metadata(),
                **({"vae": Vae.TAESDXL.value} if self.tiny_decoder is not None else {}),
                **self._embeddings.metadata(),
                **(WATERMARK_METADATA if self._watermarker else {}),
            },
        )

    def _size(self, params: GenerationParams) -> tuple[int, int]:
        if params.mode.needs_image and params.width is None and params.height is None:
            width, height = params.image.size
            if width % 8 or height % 8 or min(width, height) < 64:
                raise ConfigError(
                    f"input image is {width}x{height}; its sides must be multiples of 8 and at least 64 "
                    "(give a size to resize it to: --width and --height, or width= and height= in Python)"
                )
            return width, height
        native_w, native_h = self.native_size
        return params.width or native_w, params.height or native_h

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
        if prediction is None or name == "refiner":
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
            with self._features.call(pipe.unet, pipe.scheduler, params.cache_interval, params.cache_branch or 0):
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

    def _run_text2img(self, run: Run) -> list[Any]:
        pipe = self._prepare("base", run)
        return self._decode(pipe, self._call("base", pipe, run, width=run.width, height=run.height), run)

    def _run_img2img(self, run: Run) -> list[Any]:
        pipe = self._prepare("img2img", run)
        strength = run.params.strength
        latents = self._call("base", pipe, run, strength, image=self._input_image(run), strength=strength)
        return self._decode(pipe, latents, run)

    def _run_base_refiner(self, run: Run) -> list[Any]:
        fraction = run.params.high_noise_frac
        base = self._prepare("base", run)
        latents = self._call("base", base, run, width=run.width, height=run.height, denoising_end=fraction)
        if run.params.keep_base_images:
            run.base_images = self._decode(base, latents, run, "base_decode")
        if self.config.one_shot:  # the base's UNet is done with: its memory goes before the refiner's UNet compiles
            log.debug("one-shot: giving the base's UNet back before the refiner's compiles")
            self._features.forget(base.unet)
            base.unet.clear_requests()
        else:
            log.debug("long-lived runtime: the base's and the refiner's UNets stay compiled (one_shot=False)")
        refiner = self._prepare("refiner", run)
        latents = self._call("refiner", refiner, run, 1 - fraction, image=latents, denoising_start=fraction)
        return self._decode(refiner, latents, run)

    def _run_refine(self, run: Run) -> list[Any]:
        pipe = self._prepare("refiner", run)
        strength = run.params.strength
        latents = self._call("refiner", pipe, run, strength, image=self._input_image(run), strength=strength)
        return self._decode(pipe, latents, run)

    def _decode(self, pipe: Any, latents: Any, run: Run, timing: str = "decode") -> list[Any]:
        """Latents to PIL images, as diffusers' SDXL ``__call__`` ends, with the NaN/black check of decode.py."""
        started = time.monotonic()
        fallback = (
            None if self.config.precision is Precision.F32 else functools.partial(self.pipelines.decode_f32, pipe)
        )
        images, note = decode_latents(pipe, latents, fallback, self.tiny_decoder)
        if note:
            run.notes.append(note)
        if self._watermarker is not None:
            images = self._watermarker.apply(images)
        run.timings[timing] = time.monotonic() - started
        return images

"""SDXLRuntime: load a converted model once, then run text2img, img2img, base+refiner, refine, inpaint and outpaint.

    from ov_sdxl import SDXLRuntime
    runtime = SDXLRuntime.from_dir("models/sdxl", device="CPU")
    result = runtime.text2img("a lighthouse at dusk", steps=30, seed=7)
    result.images[0].save("out.png"); result.seed; result.timings
    runtime.base_then_refiner("a lighthouse at dusk", high_noise_frac=0.8)
    runtime.refine("touch up", image=PIL.Image.open("photo.png"), strength=0.3)
    runtime.inpaint("a red scarf", image=photo, mask=mask, inpaint_area="masked")   # inpaint.py: masks, areas
    runtime.outpaint("a wide beach", image=photo, expand=(256, 0, 256, 0))
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
from ov_sdxl.errors import ConfigError, ModelNotFoundError
from ov_sdxl.layout import ModelLayout
from ov_sdxl.model_info import ModelInfo
from ov_sdxl.params import image_seeds
from ov_sdxl.runtime.embeddings import Embedding, EmbeddingSet, EmbeddingSpec
from ov_sdxl.runtime.feature_cache import FeatureCache
from ov_sdxl.runtime.generation import GenerationResult, Preview, Progress, Run, Steps
from ov_sdxl.runtime.inpaint import RepaintJob
from ov_sdxl.runtime.pipelines import PipelineSet, check_device
from ov_sdxl.runtime.presets import resolve_preset
from ov_sdxl.runtime.stages import Stages
from ov_sdxl.runtime.tiny_decoder import TinyDecoder
from ov_sdxl.runtime.watermark import WATERMARK_METADATA, Watermarker

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
        self._watermarker = Watermarker() if config.watermark else None
        self._embeddings = EmbeddingSet(self.layout.base)
        self._features = FeatureCache(config.device, self.pipelines.ov_config)  # the feature-reuse UNets
        self.pipelines.on_load = self._embeddings.apply
        self.tiny_decoder = self._tiny_decoder()  # TAESDXL, with vae="taesdxl"; None: SDXL's VAE decodes
        decoding = {"tiny_decoder": self.tiny_decoder, "watermarker": self._watermarker}
        self._stages = Stages(config, self.pipelines, self.preset, self.model_info, self._features, **decoding)
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

    def inpaint(self, prompt: str, image: Any, mask: Any = None, **kw: Any) -> GenerationResult:
        """Repaint the white (or transparent) part of ``mask``; no mask: the image's own transparent pixels."""
        return self._task(Mode.INPAINT, prompt, {**kw, "image": image, "mask": mask})

    def outpaint(self, prompt: str, image: Any, expand: tuple[int, int, int, int], **kw: Any) -> GenerationResult:
        """Extend ``image`` by ``expand`` pixels (left, top, right, bottom) and paint the new area."""
        return self._task(Mode.OUTPAINT, prompt, {**kw, "image": image, "expand": expand})

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
        if params.uses_refiner and not self.has_refiner:
            what = f"mode {params.mode.value}" if params.mode.needs_refiner else "the refiner's inpainting"
            raise ModelNotFoundError(
                f"{what} needs a refiner, and {self.layout.root} has none; "
                "convert with --refiner stabilityai/stable-diffusion-xl-refiner-1.0"
            )
        if self.layout.inpainting and not params.mode.repaints:
            raise ConfigError(
                f"{self.layout.root} is an inpainting model (its UNet takes the mask too): it runs inpaint and "
                f"outpaint, not {params.mode.value}"
            )
        params, notes = self.resolve(params)
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        repaint = RepaintJob.build(params, seed) if params.mode.repaints else None
        width, height = self._size(params, repaint)
        self.config.check_limits(width, height, params.steps, params.num_images)
        if self._watermarker is not None:
            self._watermarker.check_size(width, height)
        generators = [torch.Generator("cpu").manual_seed(s) for s in image_seeds(seed, params.num_images)]
        previewer = self.tiny_decoder.preview if self.tiny_decoder is not None else None
        steps = Steps(progress, cancel, preview, preview_every, previewer)
        run = Run(self._embeddings.canonical_params(params), width, height, generators, steps)
        run.notes.extend(notes)
        if repaint is not None:
            run.repaint = repaint
            run.notes.extend(repaint.notes)
        for note in self._embeddings.notes(params):
            log.warning("%s", note)
            run.notes.append(note)
        with self._lock:
            started = time.monotonic()
            images = self._stages.run(run)
            run.timings["total"] = time.monotonic() - started
        return GenerationResult(
            images=images,
            seed=seed,
            params=params,
            width=images[0].width,  # the output's size: with "masked only" the input's, not the generation's
            height=images[0].height,
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
                **(repaint.metadata(width, height) if repaint is not None else {}),
            },
        )

    def _size(self, params: GenerationParams, repaint: RepaintJob | None) -> tuple[int, int]:
        """The generation size: what was asked; else the input image's (the outpaint canvas), except for "masked
        only", which generates at the model's native size."""
        masked_only = repaint is not None and repaint.masked_only
        if params.mode.needs_image and params.width is None and params.height is None and not masked_only:
            width, height = (repaint or params).image.size
            if width % 8 or height % 8 or min(width, height) < 64:
                what = "the outpaint canvas (image plus expand)" if params.mode is Mode.OUTPAINT else "input image"
                raise ConfigError(
                    f"{what} is {width}x{height}; its sides must be multiples of 8 and at least 64 "
                    "(give a size to resize it to: --width and --height, or width= and height= in Python; "
                    "or inpaint_area masked, which generates the mask's surroundings at the model's size)"
                )
            return width, height
        native_w, native_h = self.native_size
        return params.width or native_w, params.height or native_h

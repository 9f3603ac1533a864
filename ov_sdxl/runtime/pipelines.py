"""Loading optimum-intel SDXL pipelines from a model folder: devices, sharing, static shapes.

    from ov_sdxl.runtime.pipelines import PipelineSet
    pipes = PipelineSet(layout, device="CPU", ov_config={"CACHE_DIR": "..."}, static_shapes=True)
    pipes.base        # OVStableDiffusionXLPipeline, loaded on first use
    pipes.img2img     # OVStableDiffusionXLImg2ImgPipeline over the *same* loaded base models
    pipes.inpaint     # OVStableDiffusionXLInpaintPipeline, the same way
    pipes.refiner_inpaint   # the refiner's, over the refiner's loaded models
    pipes.refiner     # OVStableDiffusionXLImg2ImgPipeline; text_encoder_2 and VAE taken from the base if identical
    pipes.prepare("base", height=1024, width=1024, num_images=1, guidance=True)  # reshapes only what changed
    pipes.on_load = callback  # called with each pipeline as it loads (textual inversion gives it its tokens)

Sharing works at the level of optimum's pipeline parts: one ``OVPipelinePart`` (one ``ov.Model`` and one
compiled model) is set on several pipelines, so nothing is read or compiled twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ov_sdxl.errors import CorruptModelError, DeviceNotAvailableError
from ov_sdxl.layout import ModelLayout

log = logging.getLogger(__name__)

BASE_PARTS = ("unet", "vae_decoder", "vae_encoder", "text_encoder", "text_encoder_2")
TOKENS = 77  # CLIP's context length, the only one SDXL uses


def available_devices() -> list[str]:
    import openvino as ov

    return list(ov.Core().available_devices)


def check_device(device: str) -> None:
    """Raise DeviceNotAvailableError unless ``device`` (CPU, GPU, GPU.1, AUTO, AUTO:GPU,CPU...) can be used here."""
    devices = available_devices()
    virtual = device.split(":", 1)[0] in ("AUTO", "MULTI", "HETERO")
    wanted = device.split(":", 1)[1].split(",") if virtual and ":" in device else ([] if virtual else [device])
    families = {d.split(".")[0] for d in devices}
    missing = [d for d in wanted if d not in devices and d not in families]
    if missing:
        raise DeviceNotAvailableError(
            f"device {', '.join(missing)} is not available; this machine has: {', '.join(devices) or 'none'}"
        )


def _share(target: Any, source: Any, names: tuple[str, ...] | list[str]) -> None:
    """Make ``target`` use ``source``'s loaded parts (same ov.Model, same compiled request)."""
    for name in names:
        setattr(target, name, getattr(source, name))
    target.vae.decoder, target.vae.encoder = target.vae_decoder, target.vae_encoder


class PipelineSet:
    """The loaded pipelines of one model folder, created lazily and shared where the weights allow."""

    def __init__(self, layout: ModelLayout, device: str, ov_config: dict[str, str], static_shapes: bool):
        self.layout = layout
        self.device = device
        self.ov_config = ov_config
        self.static_shapes = static_shapes
        self._pipes: dict[str, Any] = {}
        self._shapes: dict[int, tuple] = {}  # id(part) -> (batch, spatial) it is shaped for
        self._f32_decoders: dict[int, Any] = {}  # id(vae_decoder part) -> that decoder compiled in f32
        self.on_load: Callable[[Any], None] | None = None  # called with each new pipeline (textual inversion)

    @property
    def loaded(self) -> list[Any]:
        """The pipelines loaded so far."""
        return list(self._pipes.values())

    def _ready(self, name: str, pipe: Any) -> Any:
        cache = self.ov_config.get("CACHE_DIR")
        for part_name in BASE_PARTS:
            _release_after_compile(getattr(pipe, part_name, None), Path(cache) if cache else None)
        if self.on_load is not None:
            self.on_load(pipe)
        self._pipes[name] = pipe
        return pipe

    def _load(self, cls: Any, path: Any, **models: Any) -> Any:
        try:
            pipe = cls.from_pretrained(
                str(path),
                device=self.device,
                ov_config=dict(self.ov_config),
                compile=False,
                dynamic_shapes=False,  # we reshape explicitly before each call (see prepare)
                **models,
            )
        except (RuntimeError, ValueError, OSError, KeyError) as exc:
            raise CorruptModelError(f"cannot load the model in {path}: {exc}; reconvert with --overwrite") from exc
        pipe.set_progress_bar_config(disable=True)  # progress is reported through the runtime's callback
        return pipe

    @property
    def base(self) -> Any:
        if "base" not in self._pipes:
            from optimum.intel import OVStableDiffusionXLPipeline

            log.debug("loading the base from %s on %s", self.layout.base, self.device)
            self._ready("base", self._load(OVStableDiffusionXLPipeline, self.layout.base))
        return self._pipes["base"]

    @property
    def img2img(self) -> Any:
        if "img2img" not in self._pipes:
            from optimum.intel import OVStableDiffusionXLImg2ImgPipeline

            self._ready("img2img", self._over(self.base, OVStableDiffusionXLImg2ImgPipeline))
        return self._pipes["img2img"]

    @property
    def inpaint(self) -> Any:
        """The base's inpainting pipeline (diffusers' masked latent blending with its 4-channel UNet)."""
        if "inpaint" not in self._pipes:
            from optimum.intel import OVStableDiffusionXLInpaintPipeline

            self._ready("inpaint", self._over(self.base, OVStableDiffusionXLInpaintPipeline))
        return self._pipes["inpaint"]

    @property
    def refiner_inpaint(self) -> Any:
        """The refiner's inpainting pipeline, over the refiner's loaded models."""
        if "refiner_inpaint" not in self._pipes:
            from optimum.intel import OVStableDiffusionXLInpaintPipeline

            self._ready("refiner_inpaint", self._over(self.refiner, OVStableDiffusionXLInpaintPipeline))
        return self._pipes["refiner_inpaint"]

    def _over(self, source: Any, cls: Any) -> Any:
        """A ``cls`` pipeline over the *same* loaded models as ``source`` (nothing read or compiled twice)."""
        models = {name: getattr(source, name).model for name in BASE_PARTS if getattr(source, name) is not None}
        pipe = cls(
            scheduler=source.scheduler.__class__.from_config(source.scheduler.config),
            tokenizer=source.tokenizer,
            tokenizer_2=source.tokenizer_2,
            device=self.device,
            ov_config=dict(self.ov_config),
            compile=False,
            dynamic_shapes=False,
            model_save_dir=source.model_save_dir,
            force_zeros_for_empty_prompt=source.config.force_zeros_for_empty_prompt,
            requires_aesthetics_score=source.config.get("requires_aesthetics_score", False),
            **models,
        )
        _share(pipe, source, list(models))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @property
    def has_refiner(self) -> bool:
        return self.layout.refiner is not None

    @property
    def refiner(self) -> Any:
        if "refiner" not in self._pipes:
            from optimum.intel import OVStableDiffusionXLImg2ImgPipeline

            shared = self.layout.shared_parts()
            base = self.base if shared else None
            models = {name: getattr(base, name).model for name in shared}
            log.debug(
                "loading the refiner from %s (sharing %s with the base)",
                self.layout.refiner,
                ", ".join(shared) or "nothing",
            )
            pipe = self._load(OVStableDiffusionXLImg2ImgPipeline, self.layout.refiner, **models)
            if shared:
                _share(pipe, base, shared)
            self._ready("refiner", pipe)
        return self._pipes["refiner"]

    def decode_f32(self, pipe: Any, latents: Any) -> Any:
        """Run ``pipe``'s own VAE decoder compiled with f32 precision (the fallback when bf16/f16 fails)."""
        import openvino as ov
        import torch

        part = pipe.vae_decoder
        if id(part) not in self._f32_decoders:
            config = {**self.ov_config, "INFERENCE_PRECISION_HINT": "f32"}
            self._f32_decoders[id(part)] = ov.Core().compile_model(part.model.clone(), self.device, config)
        return torch.from_numpy(self._f32_decoders[id(part)](latents.numpy())[0])

    def prepare(
        self,
        name: str,
        height: int,
        width: int,
        num_images: int,
        guidance: bool,
        tokens: int = TOKENS,
        dynamic_batch: bool = False,
    ) -> Any:
        """Return pipeline ``name`` with its models shaped for this request.

        With static shapes each part is reshaped (and later recompiled) only when its own shape changes: the
        text encoders never, the VAE with the size, the UNet with size, image count, guidance and the prompt's
        length in tokens (77 per window; long or weighted prompts may use several). ``dynamic_batch`` leaves the
        UNet's batch open, for guidance that stops part-way (presets.py): one compiled model serves both batches.
        """
        pipe = getattr(self, name)
        if not self.static_shapes:
            return pipe
        factor = pipe.vae_scale_factor
        latent = (height // factor, width // factor)
        unet_batch = -1 if dynamic_batch else num_images * (2 if guidance else 1)
        wanted = {
            "unet": (unet_batch, latent, tokens),
            "vae_decoder": (num_images, latent, TOKENS),
            "vae_encoder": (1, (height, width), TOKENS),
            "text_encoder": (1, None, TOKENS),
            "text_encoder_2": (1, None, TOKENS),
        }
        for part_name, shape in wanted.items():
            part = getattr(pipe, part_name, None)
            if part is None or self._shapes.get(id(part)) == shape:
                continue
            log.debug("shaping %s %s for batch %d, %s, %d tokens", name, part_name, *shape)
            _reshape(part.model, *shape)
            part.clear_requests()
            self._f32_decoders.pop(id(part), None)  # compiled for the old shape
            self._shapes[id(part)] = shape
        return pipe


def _release_after_compile(part: Any, cache: Path | None) -> None:
    """Make ``part`` give back the pages of its memory-mapped weights while it compiles and runs its first call.

    OpenVINO reads the IR with mmap, and imports a compiled model from the ``cache`` folder with mmap too; the
    CPU plugin makes its own copy of the weights (bf16, blocked layouts) while compiling, or, for an imported
    model, during its first inference. Without this the read pages stay resident next to that copy, the weights
    counted twice (measured on the full-size SDXL at 512², warm cache: 7.8 GB of cache-blob pages next to 13 GB
    of compiled models for quality, 3 GB for fast). A page still used is read back from the page cache."""
    if part is None or getattr(part.compile, "releases_pages", False):
        return
    from ov_sdxl.page_release import ReleaseMappedPages

    paths, folders = [Path(part.model_save_dir) / "openvino_model.bin"], [cache] if cache else []
    original_compile, original_forward, fresh = part.compile, part.forward, [False]

    def compile_releasing() -> None:
        if part.request is None:
            with ReleaseMappedPages(paths, folders):
                original_compile()
            fresh[0] = True

    def forward_releasing(*args: Any, **kwargs: Any) -> Any:
        if part.request is not None and not fresh[0]:
            return original_forward(*args, **kwargs)
        with ReleaseMappedPages(paths, folders):  # compiling, when needed, and the first inference
            result = original_forward(*args, **kwargs)
        fresh[0] = False
        return result

    compile_releasing.releases_pages = True
    part.compile, part.forward = compile_releasing, forward_releasing  # instance attributes: found first


def _reshape(model: Any, batch: int, spatial: tuple[int, int] | None, tokens: int) -> None:
    """Static shapes for one SDXL part: batch first (-1: dynamic); 4-D inputs get ``spatial``; token inputs
    ``tokens`` long."""
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        rank = shape.rank.get_length()
        if port.get_any_name() == "timestep":
            shape = [1] if rank == 1 else shape
        elif rank == 4 and spatial is not None:
            shape = [batch, shape[1], *spatial]
        elif port.get_any_name() == "input_ids":
            shape = [batch, tokens]
        elif port.get_any_name() == "encoder_hidden_states":
            shape = [batch, tokens, shape[2]]
        else:
            shape[0] = batch
        shapes[port] = shape
    model.reshape(shapes)

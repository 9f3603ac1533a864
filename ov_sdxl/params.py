"""One generation request: what to make (``Mode``), and ``GenerationParams``, validated when built.

    from ov_sdxl.params import GenerationParams, Mode
    GenerationParams(prompt="a lighthouse at dusk", mode=Mode.BASE_REFINER, steps=30, seed=7)
    GenerationParams.from_options(args)            # the CLI's argparse namespace, the bench's settings
    GenerationParams(prompt="a red scarf", mode="inpaint", image=photo, mask=mask, inpaint_area="masked")
    GenerationParams(prompt="a wide beach", mode="outpaint", image=photo, expand=(256, 0, 256, 0), fill="blur")

A value that breaks a rule raises ``ConfigError`` naming the value and the rule; nothing is silently changed.
``ov_sdxl.config`` re-exports these names beside the runtime's and the converter's configurations.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ov_sdxl.checks import check_fraction, check_text, enum_value, set_field
from ov_sdxl.errors import ConfigError
from ov_sdxl.repaint import InpaintArea, OutpaintFill, check_repaint
from ov_sdxl.schedulers import check_scheduler_name

MAX_SEED = 2**64 - 1


def image_seeds(seed: int, count: int) -> list[int]:
    """The seed of each image of a batch: ``seed``, ``seed + 1``... (as AUTOMATIC1111 numbers them), so that image i
    of a batch is the image ``num_images=1, seed=image_seeds(seed, n)[i]`` makes alone."""
    return [(seed + i) % (MAX_SEED + 1) for i in range(count)]


DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 5.0
DEFAULT_HIGH_NOISE_FRAC = 0.8


class Mode(str, Enum):
    """What to generate: text to image, image to image, base then refiner, refine a finished image, repaint a
    masked region (inpaint), or extend the canvas (outpaint)."""

    TEXT2IMG = "text2img"
    IMG2IMG = "img2img"
    BASE_REFINER = "base+refiner"
    REFINE = "refine"
    INPAINT = "inpaint"
    OUTPAINT = "outpaint"

    @property
    def needs_image(self) -> bool:
        return self in (Mode.IMG2IMG, Mode.REFINE, Mode.INPAINT, Mode.OUTPAINT)

    @property
    def repaints(self) -> bool:
        """Inpaint or outpaint: a masked region is generated, the rest of the image kept."""
        return self in (Mode.INPAINT, Mode.OUTPAINT)

    @property
    def needs_refiner(self) -> bool:
        return self in (Mode.BASE_REFINER, Mode.REFINE)


DEFAULT_STRENGTH = {Mode.IMG2IMG: 0.6, Mode.REFINE: 0.3, Mode.INPAINT: 0.99, Mode.OUTPAINT: 0.99}


@dataclass(frozen=True)
class GenerationParams:
    """One generation request. ``width``/``height`` None mean the model's native size (1024 for SDXL).

    ``steps``, ``guidance`` and ``scheduler`` None mean the model's own: 30 steps, guidance 5.0 and its scheduler
    for SDXL, or what a few-step model is made for (see model_info.py); the runtime fills them in with
    ``with_defaults`` and the result records what ran. ``strength`` None means the mode's default (img2img 0.6,
    refine 0.3); ``seed`` None means a fresh one (returned in the result). Image i of a batch has its own seed,
    ``seed + i`` (``image_seeds``): alone, with that seed, it comes out the same.
    """

    prompt: str
    mode: Mode = Mode.TEXT2IMG
    prompt_2: str | None = None
    negative_prompt: str | None = None
    negative_prompt_2: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    strength: float | None = None
    high_noise_frac: float = DEFAULT_HIGH_NOISE_FRAC
    seed: int | None = None
    num_images: int = 1
    scheduler: str | None = None
    keep_base_images: bool = False  # base+refiner: also decode the base's latents, for side-by-side display
    cache_interval: int | None = (
        None  # feature reuse (DeepCache): the whole UNet every N steps; 1: off; None: preset's
    )
    cache_branch: int | None = None  # what a reused step skips (DeepCache's branch; None: 0, all but the outermost)
    image: Any = field(default=None, compare=False, repr=False)  # PIL.Image for img2img, refine, inpaint, outpaint
    mask: Any = field(default=None, compare=False, repr=False)  # inpaint: PIL.Image, white (or transparent) = repaint
    mask_blur: int | None = None  # inpaint, outpaint: pixels; None: DEFAULT_MASK_BLUR
    inpaint_area: InpaintArea | None = None  # inpaint, outpaint: None: whole
    masked_padding: int | None = None  # inpaint_area masked: pixels around the mask; None: DEFAULT_MASKED_PADDING
    expand: tuple[int, int, int, int] | None = None  # outpaint: pixels added left, top, right, bottom (multiples of 8)
    fill: OutpaintFill | None = None  # outpaint: what the new area starts as; None: edge
    refiner_frac: float | None = None  # inpaint, outpaint: the refiner's inpainting takes over at this fraction
    refine_strength: float | None = None  # inpaint, outpaint: then a refiner inpainting pass of this strength

    def __post_init__(self) -> None:
        set_field(self, "mode", enum_value(Mode, self.mode, "mode"))
        for name in ("prompt", "prompt_2", "negative_prompt", "negative_prompt_2"):
            check_text(name, getattr(self, name))
        if self.prompt is None:
            raise ConfigError("prompt must be text (it may be empty)")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 64 or value % 8:
                raise ConfigError(
                    f"{name} {value!r} must be a whole number of pixels, at least 64 and a multiple of 8"
                )
        steps_ok = isinstance(self.steps, int) and not isinstance(self.steps, bool) and self.steps >= 1
        if self.steps is not None and not steps_ok:
            raise ConfigError(f"steps {self.steps!r} must be a whole number >= 1")
        guidance_ok = isinstance(self.guidance, (int, float)) and not isinstance(self.guidance, bool)
        if self.guidance is not None and not (guidance_ok and math.isfinite(self.guidance) and self.guidance >= 0):
            raise ConfigError(f"guidance {self.guidance!r} must be a number >= 0")
        if not isinstance(self.num_images, int) or isinstance(self.num_images, bool) or self.num_images < 1:
            raise ConfigError(f"num_images {self.num_images!r} must be a whole number >= 1")
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED
        ):
            raise ConfigError(f"seed {self.seed!r} must be a whole number from 0 to 2**64-1")
        check_scheduler_name(self.scheduler)
        self._check_feature_reuse()
        check_fraction("high_noise_frac", self.high_noise_frac, low_closed=False, high_closed=False)
        self._check_strength_and_image()
        check_repaint(self)

    def _check_strength_and_image(self) -> None:
        if self.mode.needs_image:
            if self.image is None:
                raise ConfigError(f"mode {self.mode.value} needs an input image (--image FILE)")
            if self.strength is None:
                set_field(self, "strength", DEFAULT_STRENGTH[self.mode])
            check_fraction("strength", self.strength, low_closed=False, high_closed=True)
            if self.steps is not None and int(self.steps * self.strength) < 1:
                raise ConfigError(
                    f"steps {self.steps} x strength {self.strength} leaves no denoising step; raise steps or strength"
                )
        else:
            if self.image is not None:
                raise ConfigError(f"mode {self.mode.value} takes no input image; use img2img, refine or inpaint")
            if self.strength is not None:
                raise ConfigError(f"strength is only used by the modes with an input image, not {self.mode.value}")
        if self.keep_base_images and self.mode is not Mode.BASE_REFINER:
            raise ConfigError(f"keep_base_images is only for base+refiner, not {self.mode.value}")
        if self.mode is Mode.BASE_REFINER and self.steps is not None:
            for stage, fraction in (("base", self.high_noise_frac), ("refiner", 1 - self.high_noise_frac)):
                if int(round(self.steps * fraction)) < 1:
                    raise ConfigError(
                        f"steps {self.steps} with high_noise_frac {self.high_noise_frac} leaves the {stage} "
                        "no step; raise steps or move the fraction"
                    )

    @property
    def uses_refiner(self) -> bool:
        """Whether the request needs the refiner: its mode, or the refiner's part in inpainting."""
        return self.mode.needs_refiner or self.refiner_frac is not None or self.refine_strength is not None

    @classmethod
    def from_options(cls, options: Any, **given: Any) -> GenerationParams:
        """Parameters from an object whose attributes are named as the fields (the CLI's argparse namespace, the
        bench's settings): each field it has, then ``given`` over them; the fields it lacks keep their defaults."""
        found = {f.name: getattr(options, f.name) for f in dataclasses.fields(cls) if hasattr(options, f.name)}
        return cls(**{**found, **given})

    def _check_feature_reuse(self) -> None:
        for name, low in (("cache_interval", 1), ("cache_branch", 0)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise ConfigError(f"{name} {value!r} must be a whole number >= {low}")
        if self.cache_branch is not None and self.cache_interval == 1:
            raise ConfigError("cache_branch is only used when features are reused: give a cache_interval above 1")

    def to_metadata(self) -> dict[str, str]:
        """The parameters as text, for PNG metadata and display (the input image is not included)."""
        out = {"mode": self.mode.value, "prompt": self.prompt}
        for name in ("prompt_2", "negative_prompt", "negative_prompt_2", "strength", "scheduler"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        for name in ("steps", "guidance"):
            value = getattr(self, name)
            out[name] = "model default" if value is None else str(value)
        if self.mode is Mode.BASE_REFINER:
            out["high_noise_frac"] = str(self.high_noise_frac)
        if self.mode.repaints:
            out.update(inpaint_area=self.inpaint_area.value, mask_blur=str(self.mask_blur))
            if self.inpaint_area is InpaintArea.MASKED:
                out["masked_padding"] = str(self.masked_padding)
        if self.mode is Mode.OUTPAINT:
            out.update(expand=",".join(map(str, self.expand)), fill=self.fill.value)
        for name in ("refiner_frac", "refine_strength"):
            if getattr(self, name) is not None:
                out[name] = str(getattr(self, name))
        if self.cache_interval is not None and self.cache_interval > 1:
            out.update(cache_interval=str(self.cache_interval), cache_branch=str(self.cache_branch or 0))
        return out

    def with_defaults(
        self, steps: int, guidance: float, scheduler: str | None = None, cache_interval: int = 1
    ) -> GenerationParams:
        """These parameters with the ones not given filled in (and checked again): what the model runs with."""
        return dataclasses.replace(
            self,
            steps=steps if self.steps is None else self.steps,
            guidance=guidance if self.guidance is None else self.guidance,
            scheduler=scheduler if self.scheduler is None else self.scheduler,
            cache_interval=cache_interval if self.cache_interval is None else self.cache_interval,
        )

"""What one generation request carries: its result, its state while it runs, and its per-step callbacks.

    result = runtime.text2img("a lighthouse")        # a GenerationResult
    result.images, result.seed, result.timings, result.metadata()   # metadata: what reproduces the images
    result.seeds[1], result.metadata(1)              # image 1's own seed, and what reproduces it alone

``Run`` and ``Steps`` are the runtime's own: ``Steps`` turns diffusers' ``callback_on_step_end`` into
``progress(stage, step, total)`` reports and ``preview(stage, step, images)`` calls (previews.py) every
``preview_every`` steps (by TAESDXL when the runtime decodes with it), and stops the run (GenerationCancelled) once
``cancel`` is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ov_sdxl.config import GenerationParams
from ov_sdxl.errors import ConfigError, GenerationCancelled
from ov_sdxl.params import image_seeds

Progress = Callable[[str, int, int], None]
Preview = Callable[[str, int, list[Any]], None]  # stage, step, one small PIL image per image of the batch


@dataclass(frozen=True)
class GenerationResult:
    images: list[Any]  # PIL images
    seed: int
    params: GenerationParams
    width: int
    height: int
    timings: dict[str, float] = field(default_factory=dict)
    model: str = ""
    base_images: list[Any] = field(default_factory=list)  # base+refiner with keep_base_images: the base's own
    notes: list[str] = field(default_factory=list)  # what the user should know (a VAE re-run in f32)
    extra: dict[str, str] = field(default_factory=dict)  # runtime settings that shaped the images (embeddings...)
    scheduler: str = ""  # the scheduler that ran, by its ov-sdxl name (or diffusers class when it has none)

    @property
    def seeds(self) -> list[int]:
        """Each image's own seed: image i is what ``num_images=1, seed=seeds[i]`` makes alone."""
        return image_seeds(self.seed, self.params.num_images)

    def metadata(self, index: int | None = None) -> dict[str, str]:
        """Everything needed to reproduce the images, as text (PNG metadata, display); with ``index``, image
        ``index`` of the batch on its own: its seed, and where it sits in the batch."""
        out = {
            **self.params.to_metadata(),
            "scheduler": self.scheduler or self.params.scheduler or "the model's own",
            "seed": str(self.seed),
            "width": str(self.width),
            "height": str(self.height),
            "model": self.model,
            **self.extra,
        }
        if index is not None and self.params.num_images > 1:
            out["seed"] = str(self.seeds[index])
            count = self.params.num_images
            out["batch"] = f"image {index + 1} of {count}, batch seed {self.seed}; alone: seed {self.seeds[index]}"
        return out


@dataclass
class Run:
    """One request in flight: what was asked, the resolved size and generators (one per image), what it produced."""

    params: GenerationParams
    width: int
    height: int
    generators: list[Any]  # one torch.Generator per image, seeded with its own seed
    steps: Steps
    timings: dict[str, float] = field(default_factory=dict)
    base_images: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chunks: int | None = None  # 77-token windows when the prompts are weighted or long (see weighting.py)
    scheduler: str = ""  # the first stage's scheduler, named (schedulers.scheduler_name)
    repaint: Any = None  # inpaint and outpaint: the RepaintJob (inpaint.py)


class Steps:
    """Per-step progress reports and cancellation, through diffusers' ``callback_on_step_end``."""

    def __init__(
        self,
        progress: Progress | None,
        cancel: threading.Event | None,
        preview: Preview | None = None,
        preview_every: int = 1,
        previewer: Callable[[Any], list[Any]] | None = None,
    ):
        if not isinstance(preview_every, int) or isinstance(preview_every, bool) or preview_every < 1:
            raise ConfigError(f"preview_every {preview_every!r} must be a whole number >= 1")
        if preview is not None and not callable(preview):
            raise ConfigError(f"preview must be a function (stage, step, images), got {preview!r}")
        self.progress, self.cancel = progress, cancel
        self.preview, self.preview_every = preview, preview_every
        self.previewer = previewer  # latents -> PIL images; None: the linear approximation of previews.py

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise GenerationCancelled("generation cancelled")

    def callback(self, stage: str) -> Callable:
        def on_step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
            if self.progress is not None:
                self.progress(stage, step + 1, pipe.num_timesteps)
            if self.preview is not None and ((step + 1) % self.preview_every == 0 or step + 1 == pipe.num_timesteps):
                from ov_sdxl.runtime.previews import latent_preview

                self.preview(stage, step + 1, (self.previewer or latent_preview)(callback_kwargs["latents"]))
            self.check()
            return callback_kwargs

        return on_step_end

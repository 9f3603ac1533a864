"""What one generation request carries: its result, its state while it runs, and its per-step callbacks.

    result = runtime.text2img("a lighthouse")        # a GenerationResult
    result.images, result.seed, result.timings, result.metadata()   # metadata: what reproduces the images

``Run`` and ``Steps`` are the runtime's own: ``Steps`` turns diffusers' ``callback_on_step_end`` into
``progress(stage, step, total)`` reports and ``preview(stage, step, images)`` calls (previews.py) every
``preview_every`` steps, and stops the run (GenerationCancelled) once ``cancel`` is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ov_sdxl.config import GenerationParams
from ov_sdxl.errors import ConfigError, GenerationCancelled

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

    def metadata(self) -> dict[str, str]:
        """Everything needed to reproduce the images, as text (PNG metadata, display)."""
        scheduler = self.params.scheduler or "model default"
        return {
            **self.params.to_metadata(),
            "scheduler": scheduler,
            "seed": str(self.seed),
            "width": str(self.width),
            "height": str(self.height),
            "model": self.model,
            **self.extra,
        }


@dataclass
class Run:
    """One request in flight: what was asked, the resolved size and generator, and what it produced."""

    params: GenerationParams
    width: int
    height: int
    generator: Any
    steps: Steps
    timings: dict[str, float] = field(default_factory=dict)
    base_images: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chunks: int | None = None  # 77-token windows when the prompts are weighted or long (see weighting.py)


class Steps:
    """Per-step progress reports and cancellation, through diffusers' ``callback_on_step_end``."""

    def __init__(
        self,
        progress: Progress | None,
        cancel: threading.Event | None,
        preview: Preview | None = None,
        preview_every: int = 1,
    ):
        if not isinstance(preview_every, int) or isinstance(preview_every, bool) or preview_every < 1:
            raise ConfigError(f"preview_every {preview_every!r} must be a whole number >= 1")
        if preview is not None and not callable(preview):
            raise ConfigError(f"preview must be a function (stage, step, images), got {preview!r}")
        self.progress, self.cancel = progress, cancel
        self.preview, self.preview_every = preview, preview_every

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise GenerationCancelled("generation cancelled")

    def callback(self, stage: str) -> Callable:
        def on_step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
            if self.progress is not None:
                self.progress(stage, step + 1, pipe.num_timesteps)
            if self.preview is not None and ((step + 1) % self.preview_every == 0 or step + 1 == pipe.num_timesteps):
                from ov_sdxl.runtime.previews import latent_preview

                self.preview(stage, step + 1, latent_preview(callback_kwargs["latents"]))
            self.check()
            return callback_kwargs

        return on_step_end

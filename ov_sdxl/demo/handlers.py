"""What the demo's events do: form -> GenerationParams -> runtime -> PNGs and a gallery, or a readable error.

    from ov_sdxl.demo.handlers import DemoHandlers
    handlers = DemoHandlers(runtime, DemoLimits(), output_dir=Path("/tmp/ov-sdxl-demo"))
    *previews, (gallery, status, parameters, seed) = handlers.generate("Text to image", "a fox", size="Custom",
                                                                       width=128, height=128, steps=4)
    gallery, status, parameters = handlers.text2img("a fox", width=128, height=128, steps=4)   # /text2img

The runtime's typed errors become ``gr.Error`` (one line, never a traceback); ``GenerationCancelled`` (the Stop
button) ends the run with a status line. Every image is written as a PNG that carries its parameters, in a run
folder under ``output_dir``; old runs are deleted as new ones arrive.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr

from ov_sdxl.config import DEFAULT_HIGH_NOISE_FRAC, GenerationParams, Mode
from ov_sdxl.demo.inputs import MODEL_SCHEDULER, MODES, RANDOM_SEED, DemoLimits, preset_size, to_params
from ov_sdxl.demo.labels import step_line, timing_line
from ov_sdxl.demo.live import PREPARING, stream
from ov_sdxl.demo.repaint import repaint_fields
from ov_sdxl.demo.runs import Run, Runs
from ov_sdxl.errors import ConfigError, GenerationCancelled, InputError, OvSdxlError

log = logging.getLogger(__name__)

Outputs = tuple[list, str, dict, Any]  # gallery, status line, parameters, seed used (or gr.skip())


@contextmanager
def user_errors() -> Iterator[None]:
    """Our typed errors as ``gr.Error``: the message only, the user's to fix or the failure named."""
    try:
        yield
    except GenerationCancelled:
        raise
    except InputError as exc:
        raise gr.Error(str(exc), title="Check the settings", print_exception=False) from None
    except OvSdxlError as exc:
        log.error("demo: %s: %s", type(exc).__name__, exc)
        raise gr.Error(f"Generation failed: {exc}", print_exception=False) from None


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


class DemoHandlers:
    """The functions behind the demo's buttons and API endpoints, on one runtime."""

    def __init__(self, runtime: Any, limits: DemoLimits, output_dir: Path):
        self.runtime, self.limits = runtime, limits
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.native = runtime.native_size
        self.runs = Runs()

    # -- the browser's Stop (Generate is ``generate``, below) -------------------------------------------------
    def stop(self, request: gr.Request | None = None, wait_s: float = 5.0) -> str:
        """Stop this session's run within one step; wait a little for it to end, to say where it stopped."""
        return self.runs.stop(_session(request), wait_s)

    def close(self, wait_s: float = 30.0) -> None:
        """The demo is ending: every run stops within a step (waited for up to ``wait_s``) and none writes files."""
        self.runs.close(wait_s)

    def generate(
        self,
        mode: str,
        prompt: str,
        negative_prompt: str = "",
        image: str | None = None,
        size: str | None = None,
        width: float | None = None,
        height: float | None = None,
        steps: float | None = None,  # None: the model's own (30 for SDXL, 4 for SDXL-Turbo...)
        guidance: float | None = None,
        strength: float | None = None,
        high_noise_frac: float = DEFAULT_HIGH_NOISE_FRAC,
        seed: str | int = RANDOM_SEED,
        scheduler: str = MODEL_SCHEDULER,
        num_images: float = 1,
        cache_interval: float | None = None,  # None: the preset's (fast: 3, others: 1 = no feature reuse)
        editor: dict | None = None,  # Inpaint: gr.ImageEditor's value, the image and the painted mask (repaint.py)
        mask: str | None = None,  # Inpaint: an uploaded mask instead of the painted one
        mask_blur: float | None = None,
        inpaint_area: str | None = None,
        masked_padding: float | None = None,
        expand_left: float = 0,  # Outpaint: pixels added on each side
        expand_top: float = 0,
        expand_right: float = 0,
        expand_bottom: float = 0,
        fill: str | None = None,
        refiner_frac: float | None = None,  # Inpaint, Outpaint: the refiner's part; None or 0: the base alone
        refine_strength: float | None = None,
        request: gr.Request | None = None,
        progress: Any = gr.Progress(),  # noqa: B008 - Gradio's idiom: a tracker per event
    ) -> Iterator[Outputs]:
        """The Generate button: the picture forming in the gallery at each step (live.py), then the gallery of
        PNGs, a status line, the parameters and the seed used."""
        values = _form(locals())
        with user_errors():
            if mode not in MODES:
                raise ConfigError(f"mode {mode!r} is not one of: {', '.join(MODES)}")
            values["width"], values["height"] = preset_size(values.pop("size"), width, height, self.native)
            params = self._params(MODES[values.pop("mode")], values)
        with self.runs.start(_session(request)) as run:
            with self._boundary(run) as outcome:
                yield from stream(self.runtime, params, run, progress, self._publish)
                outcome.append(True)
            if not outcome:
                yield _stopped(run)

    # -- the API endpoints: the images, a status line and the parameters -------------------------------------
    def text2img(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: float | None = None,
        height: float | None = None,
        steps: float | None = None,  # None: the model's own (30 for SDXL, 4 for SDXL-Turbo...)
        guidance: float | None = None,
        seed: str | int = RANDOM_SEED,
        scheduler: str = MODEL_SCHEDULER,
        num_images: float = 1,
        cache_interval: float | None = None,  # None: the preset's (fast: 3, others: 1 = no feature reuse)
        request: gr.Request | None = None,
        progress: Any = gr.Progress(),  # noqa: B008
    ) -> tuple[list, str, dict]:
        """Text to image with the base; width and height default to the model's native size."""
        return self._generate(Mode.TEXT2IMG, _form(locals()), request, progress)[:3]

    def base_refiner(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: float | None = None,
        height: float | None = None,
        steps: float | None = None,  # None: the model's own (30 for SDXL, 4 for SDXL-Turbo...)
        guidance: float | None = None,
        high_noise_frac: float = DEFAULT_HIGH_NOISE_FRAC,
        seed: str | int = RANDOM_SEED,
        scheduler: str = MODEL_SCHEDULER,
        num_images: float = 1,
        cache_interval: float | None = None,  # None: the preset's (fast: 3, others: 1 = no feature reuse)
        request: gr.Request | None = None,
        progress: Any = gr.Progress(),  # noqa: B008
    ) -> tuple[list, str, dict]:
        """The base to ``high_noise_frac``, then the refiner: each base image next to its refined one."""
        return self._generate(Mode.BASE_REFINER, _form(locals()), request, progress)[:3]

    def img2img(
        self,
        prompt: str,
        image: str | None = None,
        negative_prompt: str = "",
        strength: float | None = None,
        width: float | None = None,
        height: float | None = None,
        steps: float | None = None,  # None: the model's own (30 for SDXL, 4 for SDXL-Turbo...)
        guidance: float | None = None,
        seed: str | int = RANDOM_SEED,
        scheduler: str = MODEL_SCHEDULER,
        num_images: float = 1,
        cache_interval: float | None = None,  # None: the preset's (fast: 3, others: 1 = no feature reuse)
        request: gr.Request | None = None,
        progress: Any = gr.Progress(),  # noqa: B008
    ) -> tuple[list, str, dict]:
        """Image to image with the base; the input's size unless width and height are given; strength 0.6."""
        return self._generate(Mode.IMG2IMG, _form(locals()), request, progress)[:3]

    def refine(
        self,
        prompt: str,
        image: str | None = None,
        negative_prompt: str = "",
        strength: float | None = None,
        width: float | None = None,
        height: float | None = None,
        steps: float | None = None,  # None: the model's own (30 for SDXL, 4 for SDXL-Turbo...)
        guidance: float | None = None,
        seed: str | int = RANDOM_SEED,
        scheduler: str = MODEL_SCHEDULER,
        num_images: float = 1,
        cache_interval: float | None = None,  # None: the preset's (fast: 3, others: 1 = no feature reuse)
        request: gr.Request | None = None,
        progress: Any = gr.Progress(),  # noqa: B008
    ) -> tuple[list, str, dict]:
        """The refiner on a finished image; the input's size unless width and height are given; strength 0.3."""
        return self._generate(Mode.REFINE, _form(locals()), request, progress)[:3]

    def inpaint(
        self,
        prompt: str,
        image: str | None = None,
        mask: str | None = None,
        negative_prompt: str = "",
        strength: float | None = None,
        mask_blur: float | None = None,
        inpaint_area: str | None = None,
        masked_padding: float | None = None,
        width: float | None = None,
        height: float | None = None,
        steps: float | None = None,
        guidance: float | None = None,
        seed: str | int = RANDOM_SEED,
        scheduler: str = MODEL_SCHEDULER,
        num_images: float = 1,
        refiner_frac: float | None = None,
        refine_strength: float | None = None,
        request: gr.Request | None = None,
        progress: Any = gr.Progress(),  # noqa: B008
    ) -> tuple[list, str, dict]:
        """Repaint the white (or transparent) part of ``mask``; no mask: the image's transparent pixels; strength
        0.99, mask blur 4 px, the whole image or only the mask's surroundings (``inpaint_area="masked"``); the
        refiner finishing from ``refiner_frac`` or repainting the result at ``refine_strength`` (None: no refiner)."""
        return self._generate(Mode.INPAINT, _form(locals()), request, progress)[:3]

    def outpaint(
        self,
        prompt: str,
        image: str | None = None,
        expand_left: float = 0,
        expand_top: float = 0,
        expand_right: float = 0,
        expand_bottom: float = 0,
        fill: str | None = None,
        negative_prompt: str = "",
        strength: float | None = None,
        mask_blur: float | None = None,
        steps: float | None = None,
        guidance: float | None = None,
        seed: str | int = RANDOM_SEED,
        scheduler: str = MODEL_SCHEDULER,
        num_images: float = 1,
        refiner_frac: float | None = None,
        refine_strength: float | None = None,
        request: gr.Request | None = None,
        progress: Any = gr.Progress(),  # noqa: B008
    ) -> tuple[list, str, dict]:
        """Extend the image by the expand pixels (multiples of 8) on each side and paint the new area (the refiner's
        part as for ``inpaint``)."""
        return self._generate(Mode.OUTPAINT, _form(locals()), request, progress)[:3]

    # -- one run -----------------------------------------------------------------------------------------------
    def _params(self, mode: Mode, values: dict[str, Any]) -> GenerationParams:
        has_refiner, limits = self.runtime.has_refiner, self.limits
        repaint = repaint_fields(mode, values, limits)
        return to_params(mode, values, native=self.native, has_refiner=has_refiner, limits=limits, repaint=repaint)

    def _generate(self, mode: Mode, values: dict[str, Any], request: gr.Request | None, progress: Any) -> Outputs:
        with user_errors():
            params = self._params(mode, values)
        with self.runs.start(_session(request)) as run, self._boundary(run) as outcome:
            progress(0, desc=PREPARING)

            def report(stage: str, step: int, total: int) -> None:
                run.steps[stage] = f"{step} of {total}"
                progress((step, total), desc=step_line(stage, step, total), unit="steps")

            log.info("demo: generating %s", params)
            outcome.append(self._publish(self.runtime.generate(params, progress=report, cancel=run.cancel)))
        return outcome[0] if outcome else _stopped(run)

    @contextmanager
    def _boundary(self, run: Run) -> Iterator[list]:
        """Around one run: a Stop ends it with nothing kept (the caller says so), our errors become gr.Error, and
        anything else is logged with its traceback and shown as one line."""
        try:
            with user_errors():
                yield []
        except GenerationCancelled:
            log.info("demo: stopped (%s)", run.reached())
        except gr.Error:
            raise
        except Exception as exc:  # the boundary: the server log gets the traceback, the browser one line
            log.exception("demo: unexpected error in generation")
            raise gr.Error(f"Unexpected {type(exc).__name__}; the server log has the details.") from None

    def _publish(self, result: Any) -> Outputs:
        """Write the PNGs with their parameters; the gallery shows each base image next to its refined one."""
        from ov_sdxl.images import save_images

        if self.runs.closed:  # the demo's folder is going away: this run ended too late to keep anything
            raise GenerationCancelled("the demo is closing")
        self.prune()
        run_dir = self.output_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        metadata = result.metadata()
        with user_errors():
            each = [result.metadata(i) for i in range(len(result.images))]  # each image's own seed
            final = save_images(result.images, run_dir / "image.png", each)
            base = save_images(result.base_images, run_dir / "base.png", {**metadata, "stage": "base"})
        if base:
            fraction = f"{result.params.high_noise_frac:g}"
            gallery = []
            for i, (b, r) in enumerate(zip(base, final, strict=True), start=1):
                gallery += [(str(b), f"{i}: base, handed off at {fraction}"), (str(r), f"{i}: refined")]
        else:
            seeds = result.seeds
            gallery = [(str(path), f"{i + 1}: seed {seeds[i]}") for i, path in enumerate(final)]
        timing = timing_line(result.timings)
        status = (
            f"Done: seed {result.seed}, {result.width}×{result.height} ({timing}). The PNGs carry their parameters."
        )
        return gallery, status, metadata, str(result.seed)

    def prune(self) -> None:
        """Delete runs older than ``output_ttl_s``, and the oldest beyond ``max_kept_runs`` (with the next one)."""
        runs = sorted((p for p in self.output_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        cutoff, extra = time.time() - self.limits.output_ttl_s, len(runs) + 1 - self.limits.max_kept_runs
        for i, run in enumerate(runs):
            if i < extra or run.stat().st_mtime < cutoff:
                shutil.rmtree(run, ignore_errors=True)


def _stopped(run: Run) -> Outputs:
    return [], f"Stopped ({run.reached()}); nothing was kept.", {}, gr.skip()


def _form(values: dict[str, Any]) -> dict[str, Any]:
    """A handler's arguments (its ``locals()``) without the ones Gradio fills in."""
    return {k: v for k, v in values.items() if k not in ("self", "request", "progress")}

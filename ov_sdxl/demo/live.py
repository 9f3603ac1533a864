"""The Generate button's stream: the run goes on in a worker thread, and its steps and previews reach the page as
they come (the progress bar; the picture forming in the gallery, runtime/previews.py), then the finished PNGs.

    for gallery, status, parameters, seed in stream(runtime, params, run, progress, publish):
        ...                       # previews first (parameters and seed: gr.skip()), the published result last

Only the newest preview is shown when several wait, so a slow browser never holds the run back; the run itself
is the same call as without previews (they never change the final image). A stopped or failed run raises here,
in the event's own thread, as the runtime raised it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from ov_sdxl.demo.labels import stage_label, step_line

PREPARING = "Preparing the model (the first run, and each new size, compiles it: up to a minute)…"


def stream(runtime: Any, params: Any, run: Any, progress: Any, publish: Callable[[Any], tuple]) -> Iterator[tuple]:
    """Yield (gallery, status, parameters, seed): a preview after each step, then ``publish(result)``."""
    events: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = runtime.generate(
                params,
                progress=lambda stage, step, total: events.put(("step", (stage, step, total))),
                cancel=run.cancel,
                preview=lambda stage, step, images: events.put(("preview", (stage, step, images))),
            )
        except BaseException as exc:  # handed to the event's thread, which raises it
            outcome["error"] = exc
        finally:
            events.put(("end", None))

    progress(0, desc=PREPARING)
    worker = threading.Thread(target=work, name="ov-sdxl-demo-run", daemon=True)
    worker.start()
    try:
        ended = False
        while not ended:
            latest = None
            for kind, value in _waiting(events):
                if kind == "end":
                    ended = True
                elif kind == "step":
                    stage, step, total = value
                    run.steps[stage] = f"{step} of {total}"
                    progress((step, total), desc=step_line(stage, step, total), unit="steps")
                else:
                    latest = value
            if latest is not None and not ended:
                stage, step, images = latest
                label = stage_label(stage)
                shown = [(image, f"preview: {label}, step {step}") for image in images]
                yield shown, f"{label}: step {step} (a preview; the finished image follows)", gr.skip(), gr.skip()
    finally:
        if worker.is_alive():  # the page went away: stop the run within a step
            run.cancel.set()
            worker.join()
    if "error" in outcome:
        raise outcome["error"]
    yield publish(outcome["result"])


def _waiting(events: queue.Queue) -> list[tuple[str, Any]]:
    """The next event (waiting for it), and every other one already there."""
    found = [events.get()]
    while True:
        try:
            found.append(events.get_nowait())
        except queue.Empty:
            return found

"""The generations in flight, per browser session: Stop reaches the runs of the tab that pressed it, and the demo's
end reaches them all.

    runs = Runs()
    with runs.start("session-1") as run:      # run.cancel: the runtime's cancel event; run.steps: where it got to
        runtime.generate(params, cancel=run.cancel)
    runs.stop("session-1", wait_s=5)          # from another thread: "Stopped (base step 3 of 30); nothing was kept."
    runs.close(wait_s=30)                     # the demo is ending: every run stops, and any that starts

Nothing here imports Gradio.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ov_sdxl.demo.labels import stage_label

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One generation in flight: its Stop event, the steps it reached, and whether it has ended."""

    cancel: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    steps: dict[str, str] = field(default_factory=dict)  # stage -> "5 of 30"

    def reached(self) -> str:
        where = [f"{stage_label(stage)} step {step}" for stage, step in self.steps.items()]
        return ", ".join(where) or "before the first step"


class Runs:
    """The runs in flight, by session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, list[Run]] = {}
        self.closed = False

    @contextmanager
    def start(self, session: str) -> Iterator[Run]:
        run = Run()
        with self._lock:
            self._live.setdefault(session, []).append(run)
            if self.closed:
                run.cancel.set()
        try:
            yield run
        finally:
            run.ended.set()
            with self._lock:
                self._live[session].remove(run)
                if not self._live[session]:
                    del self._live[session]

    def stop(self, session: str | None, wait_s: float) -> str:
        """Cancel the session's runs (every session's with None), wait up to ``wait_s`` for them to end, and say
        where they stopped."""
        with self._lock:
            runs = [run for key, live in self._live.items() if session in (None, key) for run in live]
        for run in runs:
            run.cancel.set()
        if not runs:
            return "Nothing was running."
        if all(run.ended.wait(wait_s) for run in runs):
            return f"Stopped ({'; '.join(run.reached() for run in runs)}); nothing was kept."
        return "Stopping at the end of the current step…"

    def close(self, wait_s: float) -> None:
        """Stop every session's runs, waiting up to ``wait_s`` for them to end; a run that starts later is cancelled
        at once."""
        with self._lock:
            self.closed = True
        log.debug("demo: closing; %s", self.stop(None, wait_s))

"""The demo as ``ov-sdxl demo`` runs it: every file in one folder of its own, removed however the demo stops.

    from ov_sdxl.demo import run_demo
    run_demo(runtime, port=7860, announce=print)   # serves until Ctrl-C, SIGTERM or SIGHUP; then its folder is gone

The folder, ``ov-sdxl-demo-XXXXXXXX`` in the temporary folder (``$TMPDIR``, else ``/tmp``), holds ``images/`` (the
PNGs, one folder per run) and ``gradio/`` (Gradio's copies of them, the previews and the uploads). GRADIO_TEMP_DIR
points there while the demo runs, since Gradio reads it when it builds the page, when it starts and at each upload
(a value of yours comes back afterwards); Gradio also reads it once at import, for an empty folder it makes at
launch, so ``run_demo`` imports Gradio only after setting it (unless the program imported it before).

Ctrl-C, SIGTERM (``kill``) and SIGHUP (the terminal closed) stop the demo alike: the runs in flight end within a
step, the server closes, the folder is removed and ``run_demo`` returns. A signal the process ignores (``nohup``)
stays ignored; SIGKILL (``kill -9``) leaves the folder behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ov_sdxl.demo.inputs import DemoLimits
from ov_sdxl.errors import InputError

log = logging.getLogger(__name__)

STOP_SIGNALS = ("SIGTERM", "SIGHUP")  # and SIGINT, Python's KeyboardInterrupt; Windows has no SIGHUP
FOLDER_PREFIX = "ov-sdxl-demo-"


def run_demo(
    runtime: Any,
    *,
    notice: str | None = None,
    limits: DemoLimits | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    announce: Callable[[str], None] = log.info,
) -> None:
    """Serve the demo of ``runtime`` until it is stopped, then remove every file it made or was sent.

    ``announce`` gets the lines for the user: the URL, a share link, how it stopped. A busy port is an InputError.
    """
    limits = limits or DemoLimits()
    stopped: list[str] = []  # the stop signals received, by name
    with _stop_on_signals(stopped):
        folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        log.info("demo: its files go to %s", folder)
        try:
            with _gradio_temp_dir(folder / "gradio"):
                how = _serve(runtime, folder, notice, limits, host, port, share, announce, stopped)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if folder.exists():  # e.g. a file someone else made there, read-only
                log.warning("demo: could not remove all of %s", folder)
    announce(f"demo stopped ({how}); its images and uploads are deleted")


def _serve(
    runtime: Any,
    folder: Path,
    notice: str | None,
    limits: DemoLimits,
    host: str,
    port: int,
    share: bool,
    announce: Callable[[str], None],
    stopped: list[str],
) -> str:
    """Build, launch and wait; stop the runs and close the server on the way out. Returns how it stopped."""
    from ov_sdxl.demo.app import build_demo, launch_demo  # Gradio: imported once GRADIO_TEMP_DIR is set
    from ov_sdxl.demo.handlers import DemoHandlers

    handlers = DemoHandlers(runtime, limits, folder / "images")
    demo = build_demo(runtime, notice=notice, limits=limits, handlers=handlers)
    try:
        url = launch_demo(demo, host=host, port=port, share=share, limits=limits)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc}); choose another --port") from None
    try:
        announce(f"demo running on {url} (Ctrl-C to stop)")
        if demo.share_url:
            announce(f"public share link: {demo.share_url}")
        return _wait(demo, stopped)
    finally:
        handlers.close()  # first, so that no run holds the server open or writes into the folder once it is gone
        demo.close(verbose=False)


def _wait(demo: Any, stopped: list[str]) -> str:
    try:
        while demo.is_running and not stopped:
            time.sleep(0.1)
    except KeyboardInterrupt:
        return "Ctrl-C"
    return stopped[0] if stopped else "the server stopped"


@contextmanager
def _stop_on_signals(stopped: list[str]) -> Iterator[None]:
    """SIGTERM and SIGHUP note themselves in ``stopped``, which ends the wait as Ctrl-C does; the previous handlers
    come back afterwards. Only the main thread may set handlers: in any other, nothing changes."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for name in STOP_SIGNALS:
            number = getattr(signal, name, None)
            if number is None or signal.getsignal(number) == signal.SIG_IGN:
                continue
            previous[number] = signal.signal(number, lambda signum, _: stopped.append(signal.Signals(signum).name))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


@contextmanager
def _gradio_temp_dir(path: Path) -> Iterator[None]:
    """GRADIO_TEMP_DIR set to ``path`` for the block, then as it was."""
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous

"""What a notebook needs around the model: quiet logging, the devices to offer, a free port, knowing it runs in CI.

from ov_sdxl import tutorial
tutorial.notebook_logging()      # first cell: ov_sdxl's messages shown, the libraries' notices hidden
tutorial.device_options("CPU")   # ["CPU", "AUTO"] here; GPU too where OpenVINO sees one
tutorial.free_port()             # 7860, or the next free one
"""

from __future__ import annotations

import logging
import sys


def device_options(current: str | None = None) -> list[str]:
    """This machine's OpenVINO devices (``openvino.Core().available_devices``), AUTO, and ``current`` if it is
    something else (``AUTO:GPU,CPU``): the choices of a device dropdown."""
    import openvino as ov

    options = list(ov.Core().available_devices)
    for extra in ("AUTO", current):
        if extra and extra not in options:
            options.append(extra)
    return options


def notebook_logging(level: int = logging.INFO) -> None:
    """Notebook output: ov_sdxl's own messages (conversion steps, reshapes, recompiles) shown on stdout; the
    libraries' routine notices and deprecation warnings hidden (their errors, and progress bars, still show).

    Call it before the libraries are imported (the first cell); calling it again changes only the level.
    """
    import os
    import warnings

    logger = logging.getLogger("ov_sdxl")
    logger.setLevel(level)
    if not any(getattr(handler, "_ov_sdxl_tutorial", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        handler._ov_sdxl_tutorial = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    for name in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):  # read when they are first imported
        os.environ.setdefault(name, "error")
    for name in ("optimum", "torch.utils.cpp_extension"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)


def import_libraries() -> None:
    """Import what the first model load needs (PyTorch, diffusers, transformers, optimum-intel, OpenVINO), so
    that their time and memory can be measured apart from the model's own."""
    import openvino  # noqa: F401
    import torch  # noqa: F401
    from optimum.intel import OVStableDiffusionXLImg2ImgPipeline, OVStableDiffusionXLPipeline  # noqa: F401


def free_port(start: int = 7860, tries: int = 100) -> int:
    """The first local TCP port from ``start`` that nothing listens on (Gradio's own default range)."""
    import socket

    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port from {start} to {start + tries - 1}")


def under_ci() -> bool:
    """True when the notebook runs unattended in CI (``CI`` set, as GitHub/GitLab and the notebook tests do)."""
    import os

    return os.environ.get("CI", "").lower() in ("1", "true", "yes")

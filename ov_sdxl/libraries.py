"""The libraries ov-sdxl drives, kept off the user's terminal: their import-time notices, logs and tables.

    from ov_sdxl.libraries import import_quietly, quiet_child
    import_quietly()     # diffusers and optimum-intel imported once, their import-time warnings held back
    quiet_child()        # in a converter child: NNCF's tables and bars, torch's and optimum's logs, off

Libraries speak only when asked: ``ov-sdxl --debug`` sets ``OV_SDXL_DEBUG=1`` (children inherit it), and a
``DIFFUSERS_VERBOSITY`` or ``TRANSFORMERS_VERBOSITY`` the user set is kept. The Python API logs through ``logging``
(logger ``ov_sdxl``) and prints nothing of its own.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

DEBUG_VARIABLE = "OV_SDXL_DEBUG"
VERBOSITY_VARIABLES = ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY")  # read when those libraries first log
LIBRARY_LOGGERS = ("optimum", "nncf", "torch", "diffusers", "transformers")


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE) == "1"


def import_quietly() -> None:
    """Import diffusers and optimum-intel without the notices they print on import ("Multiple distributions found
    for package optimum", deprecations of classes ov-sdxl never uses); later warnings are theirs to print."""
    if debugging() or "optimum.intel.openvino.modeling_diffusion" in sys.modules:
        return
    unset = [name for name in VERBOSITY_VARIABLES if name not in os.environ]
    for name in unset:
        os.environ[name] = "error"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import diffusers  # noqa: F401
            from optimum.intel import OVStableDiffusionXLImg2ImgPipeline, OVStableDiffusionXLPipeline  # noqa: F401
    finally:
        for name in unset:
            os.environ.pop(name, None)
    if unset:  # their loggers took "error" from the variables: back to the libraries' default, warnings
        for name in ("diffusers", "transformers"):
            logging.getLogger(name).setLevel(logging.WARNING)


def quiet_child() -> None:
    """A converter child writes its results to files and its progress to stderr: the libraries' output (NNCF's
    statistics tables and progress bars on stdout, torch's and optimum's logs) goes nowhere unless debugging."""
    if debugging():
        return
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the child's whole life; NNCF binds it on import)
    for name in VERBOSITY_VARIABLES:
        os.environ.setdefault(name, "error")
    import nncf  # noqa: F401  (nncf and torch set their loggers' levels on import: quieten them after)
    import torch  # noqa: F401

    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)

"""The tutorials' model: which one to use (real SDXL or the tiny one), where it lives, and the settings that fit it.

    import os
    from ov_sdxl import tutorial
    choice = tutorial.choose_model(os.environ.get("OV_SDXL_MODEL_DIR"), os.environ.get("OV_SDXL_DEVICE", "CPU"),
                                   tiny=os.environ.get("OV_SDXL_TINY") == "1")
    print(choice.summary())          # which model, on which device, and why
    S = choice.settings              # sizes and steps: SDXL's own, or small ones on the tiny model
    tutorial.ensure_model(choice)    # convert (real SDXL) or build (tiny) it unless already done

Which model: a folder given in ``OV_SDXL_MODEL_DIR`` wins; else the tiny offline model when asked for
(``OV_SDXL_TINY=1``) or when the Hugging Face hub cannot be reached (offline with ``HF_HUB_OFFLINE=1`` counts as
unreachable unless the SDXL models are already in the local cache); else real SDXL from the hub, converted by
``ov_sdxl.convert_models`` into the clone's ``models/sdxl`` (the README's folder; the tiny model goes to
``models/tiny``, as ``ov-sdxl tiny --output models/tiny`` builds it). A folder that is already there is used in
the weight format it holds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_sdxl.config import DEFAULT_HIGH_NOISE_FRAC
from ov_sdxl.formats import WeightFormat
from ov_sdxl.layout import MANIFEST_NAME, ModelLayout, read_manifest
from ov_sdxl.testing import TINY_SOURCES

log = logging.getLogger(__name__)

BASE_ID = "stabilityai/stable-diffusion-xl-base-1.0"
REFINER_ID = "stabilityai/stable-diffusion-xl-refiner-1.0"
HUB_TIMEOUT = 3.0  # seconds: how long the tutorials wait to learn whether the hub answers

# Sizes and steps for each kind of model. Real SDXL: its native 1024x1024 and common settings. Tiny: small and
# few, so that every notebook runs in seconds; its images are noise anyway (random weights).
REAL_SETTINGS: dict[str, Any] = {
    "weights": "int8",  # the format the tutorials run
    "compare_weights": "fp16",  # the base converted a second time in 01-convert, to compare sizes
    "width": 1024,
    "height": 1024,
    "other_size": (1152, 896),  # another of SDXL's trained sizes (width, height)
    "steps": 25,
    "fast_scheduler": "dpm++2m-karras",
    "fast_steps": 15,
    "strengths": (0.4, 0.6, 0.8),
    "refine_strength": 0.3,
    "high_noise_frac": DEFAULT_HIGH_NOISE_FRAC,
    "seed": 42,
}
TINY_SETTINGS: dict[str, Any] = {
    **REAL_SETTINGS,
    "weights": "fp32",
    "compare_weights": "int8",
    "width": 256,
    "height": 256,
    "other_size": (320, 192),
    "steps": 5,
    "fast_steps": 4,
}


def _bits(weights: str) -> int:
    """Bits per weight of a format named in a manifest (0 for one this ov-sdxl does not know)."""
    try:
        return WeightFormat(weights).facts.bits
    except ValueError:
        return 0


def _settings(tiny: bool, weights: str | None = None) -> dict[str, Any]:
    """The settings for a model; an existing folder's own weight format replaces the default one, and the format
    compared with it in 01-convert is then int8 for a float model, a float format for a compressed one."""
    settings = dict(TINY_SETTINGS if tiny else REAL_SETTINGS)
    if weights and weights != settings["weights"]:
        settings["weights"] = weights
        settings["compare_weights"] = "int8" if _bits(weights) >= 16 else ("fp32" if tiny else "fp16")
    return settings


def _weights_in(folder: Path) -> str | None:
    """The weight format of a finished conversion in ``folder``, or None when there is none."""
    manifest = read_manifest(folder) if (folder / MANIFEST_NAME).is_file() else None
    return manifest.get("weights") if manifest else None


@dataclass(frozen=True)
class ModelChoice:
    """The model the tutorials use, where it lives, on which device, why, and the settings that fit it."""

    model_dir: Path
    device: str
    tiny: bool
    reason: str
    settings: dict[str, Any]
    given: bool = False  # True when the folder came from OV_SDXL_MODEL_DIR (used as it is, never converted)

    @property
    def comparison_dir(self) -> Path:
        """Where ``01-convert`` puts the base converted a second time, in ``settings["compare_weights"]``."""
        name = "tiny" if self.tiny else "sdxl"
        return self.model_dir.parent / f"{name}-base-{self.settings['compare_weights']}"

    def base_folders(self) -> dict[str, Path]:
        """``{weight format: base folder}`` of the model and its comparison, widest format first."""
        folders = {
            self.settings["weights"]: self.model_dir / "base",
            self.settings["compare_weights"]: self.comparison_dir / "base",
        }
        return dict(sorted(folders.items(), key=lambda item: -_bits(item[0])))

    def summary(self) -> str:
        kind = "the tiny random SDXL (images are noise)" if self.tiny else "Stable Diffusion XL"
        s = self.settings
        return (
            f"model: {kind} in {self.model_dir} ({self.reason})\n"
            f"device: {self.device}; settings: {s['width']}x{s['height']}, {s['steps']} steps, seed {s['seed']}"
        )


def models_root(start: str | Path | None = None) -> Path:
    """Where converted models go: the clone's ``models/`` when run inside the clone (``notebooks/`` beside it),
    else ``./models`` in the working directory."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "models").is_dir() and (folder / "notebooks").is_dir():
            return folder / "models"
    return here / "models"


def hub_status(repo_ids: Sequence[str] = (BASE_ID, REFINER_ID), timeout: float = HUB_TIMEOUT) -> tuple[bool, str]:
    """(available, why): can these hub models be used, from the local cache or from the hub within ``timeout``?"""
    from huggingface_hub import HfApi, constants, snapshot_download

    missing = []
    for repo_id in repo_ids:
        try:
            snapshot_download(repo_id, local_files_only=True)
        except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError: not in the cache
            missing.append(repo_id)
    if not missing:
        return True, "in the local Hugging Face cache"
    if constants.HF_HUB_OFFLINE:
        return False, f"HF_HUB_OFFLINE=1 and {', '.join(missing)} not in the local Hugging Face cache"
    outcome: dict[str, str] = {}

    def probe() -> None:
        try:
            HfApi().model_info(missing[0], timeout=timeout)
            outcome["ok"] = ""
        except Exception as exc:  # DNS, proxy, TLS, HTTP errors: all mean "not reachable from here"
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=probe, daemon=True)  # a thread bounds DNS lookups too, not only the socket
    thread.start()
    thread.join(timeout)
    if "ok" in outcome:
        return True, "reachable on the Hugging Face hub (downloaded on first conversion)"
    why = outcome.get("error", f"no answer within {timeout:g} s")
    return False, f"the Hugging Face hub cannot be reached ({why})"


def choose_model(
    model_dir: str | Path | None = None,
    device: str = "CPU",
    tiny: bool = False,
    root: str | Path | None = None,
    timeout: float = HUB_TIMEOUT,
) -> ModelChoice:
    """Decide which model the tutorials run (see the module docstring) and check the device exists here.

    ``model_dir`` is a converted model folder (``OV_SDXL_MODEL_DIR``); ``root`` is where models are converted
    to when none is given (default: :func:`models_root`).
    """
    from ov_sdxl.runtime import check_device

    device = (device or "CPU").strip().upper()
    check_device(device)  # DeviceNotAvailableError names this machine's devices
    if model_dir:
        path = Path(model_dir).expanduser()
        manifest = ModelLayout.open(path).manifest or {}  # ModelNotFoundError... naming the command that converts
        is_tiny = tiny or manifest.get("sources", {}).get("base") == TINY_SOURCES["base"]
        settings = _settings(is_tiny, manifest.get("weights"))
        return ModelChoice(path, device, is_tiny, "OV_SDXL_MODEL_DIR", settings, given=True)
    root = Path(root) if root is not None else models_root()
    real_dir, tiny_dir = root / "sdxl", root / "tiny"
    if tiny:
        reason = "OV_SDXL_TINY=1"
    elif weights := _weights_in(real_dir):  # the manifest is written last: the conversion finished
        return ModelChoice(real_dir, device, False, "converted earlier", _settings(False, weights))
    else:
        available, why = hub_status(timeout=timeout)
        if available:
            return ModelChoice(real_dir, device, False, f"{BASE_ID} {why}", _settings(False))
        reason = f"{why}: using the tiny offline model instead"
    log.info("tutorials use the tiny model: %s", reason)
    return ModelChoice(tiny_dir, device, True, reason, _settings(True, _weights_in(tiny_dir)))


def ensure_model(choice: ModelChoice) -> Path:
    """Make sure ``choice.model_dir`` holds the converted model; convert or build it if not (idempotent).

    Real SDXL is converted from the hub (base and refiner) in ``settings["weights"]``; this is what
    ``01-convert.ipynb`` does step by step. A folder from ``OV_SDXL_MODEL_DIR`` is only checked.
    """
    if choice.given:
        ModelLayout.open(choice.model_dir)
        return choice.model_dir
    weights = choice.settings["weights"]
    if choice.tiny:
        from ov_sdxl.testing import build_tiny_model

        return build_tiny_model(choice.model_dir, weights=weights)
    from ov_sdxl.config import ConvertConfig
    from ov_sdxl.convert import convert_models

    config = ConvertConfig(base=BASE_ID, refiner=REFINER_ID, output=choice.model_dir, weights=weights)
    return convert_models(config).output


def base_source(choice: ModelChoice) -> str:
    """What to convert the base from: the hub id, or for the tiny model its diffusers folder (built once, offline,
    beside the model folder)."""
    if not choice.tiny:
        return BASE_ID
    folder = choice.model_dir.parent / "tiny-sources"
    if not (folder / "base" / "model_index.json").is_file():
        import shutil
        import tempfile

        from ov_sdxl.testing import build_tiny_sources

        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".tiny-sources.partial-", dir=folder.parent))
        build_tiny_sources(partial)  # written beside the target, then renamed: never half a folder
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return str(folder / "base")

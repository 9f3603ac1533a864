"""The weights ``ov-sdxl bench`` measures: a user's converted model, or the tiny or synthetic one it builds.

    from ov_sdxl.bench.targets import prepare_target, native_size
    target = prepare_target(model=None, torch_source=None, tiny=True, cache=Path("~/.cache/ov-sdxl/bench"),
                            synthetic=Path("~/.cache/ov-sdxl/synthetic"), two_stage=True)
    target.model, target.base, target.refiner, target.torch_source, target.label
    target.models["int8"]                                 # the same weights converted for a preset (weights=...)
    native_size(target)                                   # (1024, 1024) for SDXL

The tiny model and the synthetic full-size SDXL 1.0 (both ``ov_sdxl.testing``; the synthetic one converted to fp16
IR with ``convert_models``) are built once, in a process of their own, and reused from the cache afterwards; so are
their conversions with the other weights the presets run (``weights``: int8, hybrid-int8). A user's ``--model``
is measured as it is: the presets made for other weights are skipped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ov_sdxl.errors import ConfigError, ModelNotFoundError

log = logging.getLogger(__name__)

TORCH_SOURCE_HINT = "--torch-source BASE_DIR [REFINER_DIR] (the diffusers folders the model was converted from)"


@dataclass(frozen=True)
class BenchTarget:
    """The weights measured: a converted model and, for the PyTorch peers, the diffusers folders it came from."""

    model: Path
    base: Path
    refiner: Path | None
    torch_source: tuple[Path, ...] | None
    label: str
    models: dict[str, Path]  # weight format -> converted model folder (the same sources)


def _check_torch_source(paths: list[Path] | tuple[Path, ...], two_stage: bool) -> tuple[Path, ...]:
    if len(paths) > 2:
        raise ConfigError(f"--torch-source takes one or two folders (base, refiner), got {len(paths)}")
    if two_stage and len(paths) < 2:
        raise ConfigError(f"base+refiner needs the refiner's diffusers folder too: {TORCH_SOURCE_HINT}")
    for path in paths:
        if not (Path(path) / "model_index.json").is_file():
            raise ModelNotFoundError(f"--torch-source {path} is not a diffusers pipeline folder (no model_index.json)")
    return tuple(Path(p) for p in paths)


def prepare_target(
    model: Path | None,
    torch_source: list[Path] | None,
    tiny: bool,
    cache: Path,
    synthetic: Path,
    two_stage: bool,
    weights: tuple[str, ...] = (),
) -> BenchTarget:
    """Open the user's model, or build (once, cached) the tiny or the synthetic full-size one, and its conversions
    with ``weights``."""
    from ov_sdxl.layout import ModelLayout

    if model is not None and tiny:
        raise ConfigError("--tiny and --model both choose the weights; give one of them")
    if torch_source and model is None:
        raise ConfigError("--torch-source is for --model; the built-in models bring their own sources")
    if model is not None:
        sources, label = (_check_torch_source(torch_source, two_stage) if torch_source else None), "user model"
        layout = ModelLayout.open(model)
        models = {(layout.manifest or {}).get("weights", "fp16"): Path(model)}
    else:
        kind = "tiny" if tiny else "synthetic"
        sources = _build(kind, cache, synthetic, weights)
        model = cache / "tiny" / "model" if tiny else cache / "synthetic-fp16"
        label = "tiny random SDXL" if tiny else "synthetic full-size SDXL 1.0"
        layout = ModelLayout.open(model)
        models = {w: _converted(kind, cache, w) for w in weights}
        models[layout.manifest["weights"]] = model
    if two_stage and layout.refiner is None:
        raise ModelNotFoundError(f"base+refiner needs a refiner and {model} has none; convert one with --refiner")
    return BenchTarget(model, layout.base, layout.refiner, sources, label, models)


def _converted(kind: str, cache: Path, weights: str) -> Path:
    """Where the tiny or synthetic model converted with ``weights`` is kept."""
    return cache / "tiny" / f"model-{weights}" if kind == "tiny" else cache / f"synthetic-{weights}"


def _build(kind: str, cache: Path, synthetic: Path, weights: tuple[str, ...]) -> tuple[Path, Path]:
    """Build (or find) the tiny or synthetic model in a process of its own: the builder's memory (PyTorch, the
    weights) is returned to the system before anything is measured, and this process stays small."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    built = _built(kind, cache, synthetic)
    missing = tuple(w for w in weights if not _complete(_converted(kind, cache, w)))
    if built is not None and not missing:
        return built
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_build_here, kind, cache, synthetic, missing).result()


def _made(model: Path) -> bool:
    """Whether a conversion finished in ``model`` (its manifest is written last)."""
    from ov_sdxl.layout import read_manifest

    return model.is_dir() and read_manifest(model) is not None


def _complete(model: Path) -> bool:
    """A finished conversion that has TAESDXL too (the fast+taesdxl contender decodes with it)."""
    from ov_sdxl.layout import TINY_VAE, read_manifest

    return _made(model) and TINY_VAE in read_manifest(model)["sources"]


def _convert(base: Path, refiner: Path, output: Path, weights: str) -> None:
    """Convert the sources with ``weights`` and their TAESDXL; a conversion made before TAESDXL only gains it."""
    from ov_sdxl.config import ConvertConfig
    from ov_sdxl.convert import convert_models

    taesdxl = str(base.parent / "taesdxl")
    if _made(output):
        convert_models(ConvertConfig(base=None, output=output, taesdxl=taesdxl))
    else:
        convert_models(
            ConvertConfig(base=str(base), refiner=str(refiner), output=output, weights=weights, taesdxl=taesdxl)
        )


def _built(kind: str, cache: Path, synthetic: Path) -> tuple[Path, Path] | None:
    """The sources when the model and its sources are already in the cache."""
    from ov_sdxl.layout import read_manifest
    from ov_sdxl.testing import TINY_SOURCES

    sources = cache / "tiny" / "sources" if kind == "tiny" else synthetic
    model = cache / "tiny" / "model" if kind == "tiny" else cache / "synthetic-fp16"
    if not all((sources / stage / "model_index.json").is_file() for stage in ("base", "refiner")):
        return None
    manifest = read_manifest(model) if model.is_dir() else None
    if manifest is None or (kind == "tiny" and (manifest["sources"], manifest["weights"]) != (TINY_SOURCES, "fp32")):
        return None
    if not _complete(model):  # made before TAESDXL was part of it
        return None
    log.info("%s model already built in %s", kind, model)
    return sources / "base", sources / "refiner"


def _build_here(kind: str, cache: Path, synthetic: Path, weights: tuple[str, ...]) -> tuple[Path, Path]:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ov_sdxl").setLevel(logging.INFO)
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    base, refiner = _tiny(cache / "tiny") if kind == "tiny" else _synthetic(cache, synthetic)
    for weight in weights:
        log.info("converting the %s model with --weights %s (and TAESDXL), once", kind, weight)
        _convert(base, refiner, _converted(kind, cache, weight), weight)
    return base, refiner


def _tiny(folder: Path) -> tuple[Path, Path]:
    from ov_sdxl.testing import build_tiny_model, build_tiny_sources

    sources = folder / "sources"
    if not (sources / "refiner" / "model_index.json").is_file():
        build_tiny_sources(sources)
    build_tiny_model(folder / "model")  # from its own, identical sources (seeded); does nothing when present
    return sources / "base", sources / "refiner"


def _synthetic(cache: Path, synthetic: Path) -> tuple[Path, Path]:
    from ov_sdxl.testing import build_synthetic_sources

    log.info("synthetic full-size SDXL in %s (built once, about 12 GB of fp16 safetensors)", synthetic)
    base, refiner = build_synthetic_sources(synthetic)
    _convert(base, refiner, cache / "synthetic-fp16", "fp16")
    return base, refiner


def native_size(target: BenchTarget) -> tuple[int, int]:
    """The base's native (width, height): the UNet's sample size times the VAE's downscaling."""
    unet = json.loads((target.base / "unet" / "config.json").read_text(encoding="utf-8"))
    vae = json.loads((target.base / "vae_decoder" / "config.json").read_text(encoding="utf-8"))
    side = unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)
    return side, side

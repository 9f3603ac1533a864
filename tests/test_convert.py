"""Conversion: manifest, idempotence, atomicity, weight compression and source checks."""

import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ov_sdxl import ConfigError, ConvertConfig, ModelNotFoundError, convert_models
from ov_sdxl.layout import MANIFEST_NAME, ModelLayout
from ov_sdxl.testing import TINY_SOURCES

LOW_PRECISION = {"u8", "i8", "u4", "i4", "nf4"}


def weight_types(xml: Path) -> Counter:
    """Element types of the weight constants (more than 64 elements) of one IR."""
    import openvino as ov

    model = ov.Core().read_model(xml)
    counts = Counter()
    for op in model.get_ops():
        if op.get_type_name() == "Constant" and op.get_output_size() == 1:
            shape = op.get_output_partial_shape(0)
            if shape.is_static and shape.get_shape() and int(np.prod(shape.get_shape())) > 64:
                counts[op.get_element_type().get_type_name()] += 1
    return counts


def test_manifest_lists_every_file(tiny_model):
    manifest = json.loads((tiny_model / MANIFEST_NAME).read_text())
    on_disk = {p.relative_to(tiny_model).as_posix() for p in tiny_model.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {MANIFEST_NAME}
    assert manifest["weights"] == "fp32" and manifest["format_version"] == 1 and manifest["sources"] == TINY_SOURCES
    assert {"openvino", "optimum-intel", "diffusers", "transformers"} <= set(manifest["versions"])
    assert all(len(entry["sha256"]) == 64 and entry["size"] > 0 for entry in manifest["files"].values())
    for stage in ("base", "refiner"):
        assert (tiny_model / stage / "unet" / "openvino_model.xml").is_file()
    assert not (tiny_model / "refiner" / "text_encoder").exists()  # the refiner has only the second encoder
    assert ModelLayout.open(tiny_model).verify() == []


def test_refiner_shares_identical_parts(tiny_model):
    assert ModelLayout.open(tiny_model).shared_parts() == ["text_encoder_2", "vae_decoder", "vae_encoder"]


def test_rerun_on_complete_output_does_nothing(tiny_model, tiny_sources, caplog):
    caplog.set_level(logging.INFO, logger="ov_sdxl")
    base, refiner = tiny_sources
    before = (tiny_model / MANIFEST_NAME).stat().st_mtime_ns
    config = ConvertConfig(base=str(base), refiner=str(refiner), output=tiny_model, weights="fp32")
    result = convert_models(config, source_labels=TINY_SOURCES)
    assert result.skipped and (tiny_model / MANIFEST_NAME).stat().st_mtime_ns == before
    assert "already converted" in caplog.text


def test_different_request_on_existing_output_needs_overwrite(tiny_model, tiny_sources):
    base, refiner = tiny_sources
    with pytest.raises(ConfigError, match="already holds a different conversion.*--overwrite"):
        convert_models(ConvertConfig(base=str(base), refiner=str(refiner), output=tiny_model, weights="int8"))


def test_output_that_is_not_a_model_is_refused(tiny_sources, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not a complete ov-sdxl model; add --overwrite"):
        convert_models(ConvertConfig(base=str(tiny_sources[0]), output=tmp_path))


@pytest.mark.slow
def test_interrupted_export_leaves_nothing(tiny_sources, tmp_path, monkeypatch):
    """Ctrl-C while the refiner exports: no output folder, no temporary folder left beside it."""
    import ov_sdxl.convert as convert

    real_export = convert._export_stage

    def export_then_interrupt(source, local, out_dir, stage, weights):
        if stage == "refiner":
            assert (out_dir.parent / "base" / "unet" / "openvino_model.xml").is_file()  # mid-export indeed
            raise KeyboardInterrupt
        real_export(source, local, out_dir, stage, weights)

    monkeypatch.setattr(convert, "_export_stage", export_then_interrupt)
    base, refiner = tiny_sources
    output = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        convert_models(ConvertConfig(base=str(base), refiner=str(refiner), output=output, weights="fp16"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_int8_then_int4_with_overwrite(tiny_sources, tmp_path):
    output = tmp_path / "model"
    convert_models(ConvertConfig(base=str(tiny_sources[0]), output=output, weights="int8"))
    parts = sorted((output / "base").glob("*/openvino_model.xml"))
    assert [p.parent.name for p in parts] == ["text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder"]
    for xml in parts:
        types = weight_types(xml)
        assert types["u8"] + types["i8"] > 0, (xml, types)
        assert types["u8"] + types["i8"] >= types["f32"] + types["f16"], (xml, types)  # most weights compressed

    convert_models(ConvertConfig(base=str(tiny_sources[0]), output=output, weights="int4", overwrite=True))
    assert json.loads((output / MANIFEST_NAME).read_text())["weights"] == "int4"
    for name in ("text_encoder", "text_encoder_2", "unet"):
        types = weight_types(output / "base" / name / "openvino_model.xml")
        assert types["u4"] + types["i4"] > 0, (name, types)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_source_checks(tiny_sources, tmp_path):
    base, refiner = tiny_sources
    out = tmp_path / "out"
    with pytest.raises(ModelNotFoundError, match="--base ./no-such-folder is neither an existing folder nor a hub id"):
        convert_models(ConvertConfig(base="./no-such-folder", output=out))
    with pytest.raises(ModelNotFoundError, match="has no model_index.json; it is not a diffusers folder"):
        convert_models(ConvertConfig(base=str(base / "unet"), output=out))
    swapped = "is a StableDiffusionXLImg2ImgPipeline, expected a StableDiffusionXLPipeline"
    with pytest.raises(ConfigError, match=swapped):
        convert_models(ConvertConfig(base=str(refiner), refiner=str(base), output=out))
    single = tmp_path / "model.safetensors"
    shutil.copy(base / "unet" / "diffusion_pytorch_model.safetensors", single)
    with pytest.raises(ConfigError, match="is a single-file checkpoint"):
        convert_models(ConvertConfig(base=str(single), output=out))
    with pytest.raises(ModelNotFoundError, match="the hub is offline .* not in the local Hugging Face cache"):
        convert_models(ConvertConfig(base="stabilityai/stable-diffusion-xl-base-1.0", output=out))
    assert not out.exists()


def test_pickled_weights_are_refused(tiny_sources, tmp_path):
    source = tmp_path / "pickled"
    shutil.copytree(tiny_sources[0], source)
    weights = source / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))  # a pickle by name is enough: it is refused before loading
    with pytest.raises(ConfigError, match="unet/diffusion_pytorch_model.bin is a pickled checkpoint"):
        convert_models(ConvertConfig(base=str(source), output=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_disk_full_is_named(tmp_path):
    import errno

    from ov_sdxl.convert import _reason

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("Exception from src/core/src/pass/serialize.cpp") from inner
    except RuntimeError as exc:
        assert _reason(exc).startswith("no space left to write the model (RuntimeError: Exception from")


@pytest.mark.slow
def test_disk_full_during_conversion_leaves_nothing(tiny_sources, tmp_path):
    """A file-size limit makes the export's writes fail as a full disk would: exit 1, the cause named, no folder."""
    import resource
    import signal
    import subprocess
    import sys

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))

    argv = ["convert", "--base", str(tiny_sources[0]), "--output", str(tmp_path / "m"), "--weights", "fp32"]
    done = subprocess.run(
        [sys.executable, "-m", "ov_sdxl.cli", *argv],
        preexec_fn=small_disk,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert done.returncode == 1, done.stderr
    assert "error: exporting the base" in done.stderr and "no space left to write the model" in done.stderr
    assert list(tmp_path.iterdir()) == []

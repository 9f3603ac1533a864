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
def test_interrupted_conversion_resumes(tiny_sources, tmp_path, monkeypatch, caplog):
    """Ctrl-C after the UNet: no output folder; the rerun reuses the finished UNet (checked by hash) and ends."""
    import ov_sdxl.convert.export as convert

    real_export = convert._export_group

    def export_then_interrupt(parts, stage, source, config, out):
        if "unet" not in parts:
            assert (out / "unet" / "openvino_model.xml").is_file()  # mid-conversion indeed
            raise KeyboardInterrupt
        return real_export(parts, stage, source, config, out)

    monkeypatch.setattr(convert, "_export_group", export_then_interrupt)
    output = tmp_path / "model"
    config = ConvertConfig(base=str(tiny_sources[0]), output=output, weights="fp16")
    with pytest.raises(KeyboardInterrupt):
        convert_models(config)
    assert not output.exists() and (tmp_path / ".model.partial" / "progress.json").is_file()

    monkeypatch.setattr(convert, "_export_group", real_export)
    caplog.set_level(logging.INFO, logger="ov_sdxl")
    result = convert_models(config)
    assert "[base] unet: finished in an earlier run, reused" in caplog.text
    assert [entry["parts"] for entry in result.parts] == [
        ["text_encoder", "text_encoder_2", "vae_decoder", "vae_encoder"]
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and ModelLayout.open(output).verify() == []


def test_resume_checks_hashes(tmp_path):
    """A recorded sub-model whose files changed since is not reused; another request's progress is discarded."""
    from ov_sdxl.convert.export import _prepare_partial

    partial, progress = _prepare_partial(tmp_path / "m", key="request-1")
    (partial / "base" / "unet").mkdir(parents=True)
    (partial / "base" / "unet" / "openvino_model.bin").write_bytes(b"weights")
    progress.record("base", "unet")
    assert _prepare_partial(tmp_path / "m", key="request-1")[1].finished("base", "unet")
    (partial / "base" / "unet" / "openvino_model.bin").write_bytes(b"changed")
    assert not _prepare_partial(tmp_path / "m", key="request-1")[1].finished("base", "unet")
    progress.record("base", "unet")
    partial, other = _prepare_partial(tmp_path / "m", key="request-2")
    assert not other.finished("base", "unet") and not (partial / "base").exists()


def test_not_enough_memory_is_refused_before_any_work(tiny_sources, tmp_path):
    from ov_sdxl import InsufficientResourcesError

    config = ConvertConfig(base=str(tiny_sources[0]), output=tmp_path / "m", max_memory=1_000_000)
    with pytest.raises(
        InsufficientResourcesError, match=r"needs about \d+\.\d GB of memory .* --max-memory allows 0\.0 GB"
    ):
        convert_models(config)
    assert list(tmp_path.iterdir()) == []


def test_memory_cap_stops_the_process_tree():
    """run_watched sums the RSS of a child and its own children, and stops the whole tree over the limit."""
    import sys

    from ov_sdxl import InsufficientResourcesError
    from ov_sdxl.resources import parse_size, run_watched

    grandchild = "import time; b = bytearray(300_000_000); b[::4096] = b'x' * len(b[::4096]); time.sleep(60)"
    child = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(60)"
    with pytest.raises(InsufficientResourcesError, match="over --max-memory 0.2 GB; it was stopped"):
        run_watched([sys.executable, "-c", child], limit=parse_size("200MB"))
    assert run_watched([sys.executable, "-c", "pass"], limit=parse_size("1GB")).returncode == 0
    assert parse_size("8GB") == 8_000_000_000 and parse_size("1.5GiB") == int(1.5 * 2**30) and parse_size("512M")
    with pytest.raises(ConfigError, match="'eight' is not a size like 8GB"):
        parse_size("eight")


@pytest.mark.slow
def test_same_images_as_optimum_cli_export(tiny_sources, tmp_path):
    """Our per-process, small-trace export gives the images of optimum-intel's own export of the same weights."""
    from conftest import mean_abs_diff
    from optimum.exporters.openvino import main_export
    from optimum.intel import OVConfig

    from ov_sdxl import SDXLRuntime

    theirs = tmp_path / "optimum"
    main_export(
        model_name_or_path=str(tiny_sources[0]),
        output=theirs,
        task="text-to-image",
        library_name="diffusers",
        ov_config=OVConfig(dtype="fp16"),
        convert_tokenizer=False,
        local_files_only=True,
    )
    ours = convert_models(ConvertConfig(base=str(tiny_sources[0]), output=tmp_path / "ours", weights="fp16")).output
    images = []
    for folder in (theirs, ours):
        runtime = SDXLRuntime.from_dir(folder, precision="f32", cache_dir=tmp_path / "cache")
        images.append(runtime.text2img("a red fox in snow", width=256, height=192, steps=4, seed=3).images[0])
    assert mean_abs_diff(*images) <= 1.0, mean_abs_diff(*images)
    assert float(np.asarray(images[0], dtype=np.float32).std()) > 5  # not a flat picture


@pytest.mark.slow
def test_int8_then_int4_with_overwrite(tiny_sources, tmp_path, capfd):
    output = tmp_path / "model"
    convert_models(ConvertConfig(base=str(tiny_sources[0]), output=output, weights="int8"))
    printed = capfd.readouterr()  # the converter children's too: NNCF's tables and bars stay off the terminal
    assert printed.out == "" and "nncf" not in printed.err.lower(), printed
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
    with pytest.raises(ModelNotFoundError, match="--base ./no-such-folder is neither an existing folder or file nor"):
        convert_models(ConvertConfig(base="./no-such-folder", output=out))
    with pytest.raises(ModelNotFoundError, match="has no model_index.json; it is not a diffusers folder"):
        convert_models(ConvertConfig(base=str(base / "unet"), output=out))
    swapped = "is a StableDiffusionXLImg2ImgPipeline, expected a StableDiffusionXLPipeline"
    with pytest.raises(ConfigError, match=swapped):
        convert_models(ConvertConfig(base=str(refiner), refiner=str(base), output=out))
    single = tmp_path / "model.safetensors"
    shutil.copy(base / "unet" / "diffusion_pytorch_model.safetensors", single)
    with pytest.raises(ConfigError, match="not an SDXL base or refiner checkpoint: it looks like a single diffusers"):
        convert_models(ConvertConfig(base=str(single), output=out))
    with pytest.raises(ModelNotFoundError, match="the hub is offline .* not in the local Hugging Face cache"):
        convert_models(ConvertConfig(base="stabilityai/stable-diffusion-xl-base-1.0", output=out))
    assert not out.exists()


def test_a_hub_failure_is_one_line_of_ours(tmp_path, monkeypatch):
    """Online (HF_HUB_OFFLINE unset) an id that is not on the hub, or a hub out of reach, is one line."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelNotFoundError) as error:
        convert_models(ConvertConfig(base="ov-sdxl-tests/no-such-model", output=tmp_path / "out"))
    message = str(error.value)
    assert "\n" not in message and message.startswith("--base ov-sdxl-tests/no-such-model: "), message
    assert "no such model on the hub" in message or "cannot reach the Hugging Face hub (no network?)" in message


def test_pickled_weights_are_refused(tiny_sources, tmp_path):
    source = tmp_path / "pickled"
    shutil.copytree(tiny_sources[0], source)
    weights = source / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))  # a pickle by name is enough: it is refused before loading
    with pytest.raises(ConfigError, match="unet/diffusion_pytorch_model.bin is a pickled checkpoint"):
        convert_models(ConvertConfig(base=str(source), output=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_disk_full_is_named():
    from ov_sdxl.convert.export import _reason

    reason = _reason("RuntimeError", "Exception from src/core/src/pass/serialize.cpp: No space left on device")
    assert reason.startswith("no space left to write the model (RuntimeError: Exception from")


@pytest.mark.slow
def test_disk_full_during_conversion_leaves_nothing(tiny_sources, tmp_path):
    """A file-size limit makes the export's writes fail as a full disk would: exit 1, the cause named, no model."""
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
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "no space left to write the model" in line and "Traceback" not in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == [".m.partial"]  # kept for the rerun to resume

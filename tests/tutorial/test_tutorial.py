"""ov_sdxl.tutorial: choosing the model, sizes, time and memory, images (no model is built or converted here)."""

from __future__ import annotations

import json
import logging
import mmap
import socket
import time

import pytest
from PIL import Image

from ov_sdxl import tutorial
from ov_sdxl.errors import DeviceNotAvailableError, ModelNotFoundError
from ov_sdxl.layout import write_manifest
from ov_sdxl.testing import TINY_SOURCES
from ov_sdxl.tutorial import models as tutorial_models  # where choose_model looks hub_status up


def fake_model(root, sources, weights="fp32"):
    """A folder that passes ModelLayout.open: base/model_index.json, a 'unet' part, and the manifest."""
    for stage in [stage for stage, source in sources.items() if source]:
        (root / stage / "unet").mkdir(parents=True)
        (root / stage / "model_index.json").write_text("{}")
        (root / stage / "unet" / "openvino_model.xml").write_text("<net/>")
        (root / stage / "unet" / "openvino_model.bin").write_bytes(b"\0" * 4000)
    write_manifest(root, sources=sources, weights=weights)
    return root


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache, offline; tests switch it online or fill it."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def cache_repo(cache, repo_id):
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    (folder / "snapshots" / "abc").mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("abc")


# -- choosing the model ------------------------------------------------------------------------------------------
def test_tiny_when_asked(tmp_path):
    choice = tutorial.choose_model(tiny=True, root=tmp_path / "models")
    assert choice.tiny and not choice.given
    assert choice.model_dir == tmp_path / "models" / "tiny"
    assert choice.reason == "OV_SDXL_TINY=1"
    assert choice.settings == tutorial.TINY_SETTINGS and choice.settings is not tutorial.TINY_SETTINGS
    assert choice.device == "CPU"
    assert "tiny random SDXL" in choice.summary() and "256x256" in choice.summary()


def test_offline_without_the_models_cached_falls_back_to_tiny(tmp_path, hub):
    choice = tutorial.choose_model(root=tmp_path)
    assert choice.tiny
    assert "HF_HUB_OFFLINE=1" in choice.reason and tutorial.BASE_ID in choice.reason
    assert "using the tiny offline model instead" in choice.reason


def test_offline_with_the_models_cached_uses_sdxl(tmp_path, hub):
    cache_repo(hub, tutorial.BASE_ID)
    assert tutorial.hub_status()[0] is False  # the refiner is still missing
    cache_repo(hub, tutorial.REFINER_ID)
    assert tutorial.hub_status() == (True, "in the local Hugging Face cache")
    choice = tutorial.choose_model(root=tmp_path)
    assert not choice.tiny and choice.model_dir == tmp_path / "sdxl"
    assert choice.settings["width"] == 1024 and choice.settings["weights"] == "int8"


def test_unreachable_hub_falls_back_quickly(tmp_path, hub, monkeypatch):
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def refuse(self, repo_id, timeout=None):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(HfApi, "model_info", refuse)
    available, why = tutorial.hub_status()
    assert not available and "ConnectionError: Name or service not known" in why
    assert tutorial.choose_model(root=tmp_path).tiny


def test_a_hub_that_does_not_answer_is_given_up_after_the_timeout(hub, monkeypatch):
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "model_info", lambda self, repo_id, timeout=None: time.sleep(5))
    started = time.monotonic()
    available, why = tutorial.hub_status(timeout=0.2)
    assert not available and "no answer within 0.2 s" in why
    assert time.monotonic() - started < 2


def test_reachable_hub_uses_sdxl(tmp_path, hub, monkeypatch):
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "model_info", lambda self, repo_id, timeout=None: object())
    choice = tutorial.choose_model(root=tmp_path)
    assert not choice.tiny and "reachable on the Hugging Face hub" in choice.reason


def test_a_converted_sdxl_is_used_without_asking_the_hub(tmp_path, monkeypatch):
    fake_model(tmp_path / "sdxl", {"base": tutorial.BASE_ID, "refiner": tutorial.REFINER_ID}, "int8")
    monkeypatch.setattr(tutorial_models, "hub_status", lambda **kw: pytest.fail("the hub was asked"))
    choice = tutorial.choose_model(root=tmp_path)
    assert not choice.tiny and choice.reason == "converted earlier" and choice.model_dir == tmp_path / "sdxl"
    assert choice.settings == tutorial.REAL_SETTINGS


def test_an_existing_folder_keeps_its_weight_format(tmp_path, monkeypatch):
    monkeypatch.setattr(tutorial_models, "hub_status", lambda **kw: pytest.fail("the hub was asked"))
    fake_model(tmp_path / "sdxl", {"base": tutorial.BASE_ID}, "fp16")  # as the README's command with --weights fp16
    real = tutorial.choose_model(root=tmp_path)
    assert (real.settings["weights"], real.settings["compare_weights"]) == ("fp16", "int8")
    assert list(real.base_folders()) == ["fp16", "int8"] and real.comparison_dir == tmp_path / "sdxl-base-int8"
    fake_model(tmp_path / "tiny", TINY_SOURCES, "int8")  # as `ov-sdxl tiny --output models/tiny --weights int8`
    tiny = tutorial.choose_model(tiny=True, root=tmp_path)
    assert (tiny.settings["weights"], tiny.settings["compare_weights"]) == ("int8", "fp32")
    given = tutorial.choose_model(fake_model(tmp_path / "mine", {"base": "my/sdxl"}, "int4"))
    assert (given.settings["weights"], given.settings["compare_weights"]) == ("int4", "fp16")


def test_a_given_folder_is_used_as_it_is(tmp_path):
    real = fake_model(tmp_path / "mine", {"base": "my/sdxl", "refiner": None})
    choice = tutorial.choose_model(str(real), "cpu")
    assert choice.given and not choice.tiny and choice.model_dir == real and choice.device == "CPU"
    assert choice.settings["width"] == 1024
    tiny = fake_model(tmp_path / "tiny", TINY_SOURCES)
    assert tutorial.choose_model(tiny).tiny  # recognised from its manifest
    assert tutorial.choose_model(real, tiny=True).tiny  # or when asked
    with pytest.raises(ModelNotFoundError, match="does not exist; convert one with"):
        tutorial.choose_model(tmp_path / "missing")


def test_an_unavailable_device_is_refused_with_the_choices(tmp_path):
    with pytest.raises(DeviceNotAvailableError, match="NPU.7 is not available; this machine has: .*CPU"):
        tutorial.choose_model(tiny=True, device="NPU.7", root=tmp_path)


def test_models_root_is_the_clones_models_folder(tmp_path, monkeypatch):
    (tmp_path / "clone" / "models").mkdir(parents=True)
    (tmp_path / "clone" / "notebooks").mkdir()
    assert tutorial.models_root(tmp_path / "clone" / "notebooks") == (tmp_path / "clone" / "models").resolve()
    assert tutorial.models_root(tmp_path / "clone") == (tmp_path / "clone" / "models").resolve()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert tutorial.models_root() == (tmp_path / "elsewhere" / "models").resolve()


def test_comparison_folders_widest_format_first(tmp_path):
    tiny = tutorial.choose_model(tiny=True, root=tmp_path)
    assert tiny.comparison_dir == tmp_path / "tiny-base-int8"
    assert list(tiny.base_folders().items()) == [
        ("fp32", tmp_path / "tiny" / "base"),
        ("int8", tmp_path / "tiny-base-int8" / "base"),
    ]
    real = tutorial.ModelChoice(tmp_path / "sdxl", "CPU", False, "test", dict(tutorial.REAL_SETTINGS))
    assert list(real.base_folders()) == ["fp16", "int8"]
    assert real.comparison_dir == tmp_path / "sdxl-base-fp16"


# -- making sure the model exists ----------------------------------------------------------------------------------
def test_ensure_model_builds_converts_or_checks(tmp_path, monkeypatch):
    import ov_sdxl.convert
    import ov_sdxl.testing

    calls = []
    monkeypatch.setattr(
        ov_sdxl.testing, "build_tiny_model", lambda out, weights: calls.append(("tiny", weights)) or out
    )

    def convert(config):
        calls.append((config.base, config.refiner, config.weights.value, config.output))
        return ov_sdxl.convert.ConvertResult(config.output, skipped=False, seconds=0.0)

    monkeypatch.setattr(ov_sdxl.convert, "convert_models", convert)
    tiny = tutorial.choose_model(tiny=True, root=tmp_path)
    assert tutorial.ensure_model(tiny) == tiny.model_dir
    real = tutorial.ModelChoice(tmp_path / "sdxl", "CPU", False, "test", dict(tutorial.REAL_SETTINGS))
    assert tutorial.ensure_model(real) == tmp_path / "sdxl"
    assert calls == [("tiny", "fp32"), (tutorial.BASE_ID, tutorial.REFINER_ID, "int8", tmp_path / "sdxl")]
    given = tutorial.choose_model(fake_model(tmp_path / "mine", {"base": "my/sdxl"}))
    assert tutorial.ensure_model(given) == tmp_path / "mine" and len(calls) == 2


def test_base_source_builds_the_tiny_sources_once(tmp_path, monkeypatch):
    import ov_sdxl.testing

    builds = []

    def build(directory):
        builds.append(directory)
        (directory / "base").mkdir()
        (directory / "base" / "model_index.json").write_text("{}")

    monkeypatch.setattr(ov_sdxl.testing, "build_tiny_sources", build)
    tiny = tutorial.choose_model(tiny=True, root=tmp_path)
    assert tutorial.base_source(tiny) == str(tmp_path / "tiny-sources" / "base")
    assert tutorial.base_source(tiny) == str(tmp_path / "tiny-sources" / "base")
    assert len(builds) == 1 and builds[0].parent == tmp_path and builds[0].name.startswith(".tiny-sources.partial-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-sources"]  # built aside, renamed into place
    real = tutorial.ModelChoice(tmp_path / "sdxl", "CPU", False, "test", dict(tutorial.REAL_SETTINGS))
    assert tutorial.base_source(real) == tutorial.BASE_ID


# -- sizes ----------------------------------------------------------------------------------------------------------
def test_human_size():
    assert [tutorial.human_size(n) for n in (512, 1_800, 1_820_000, 5_140_000_000)] == [
        "512 B",
        "1.8 kB",
        "1.82 MB",
        "5.14 GB",
    ]


def test_folder_and_part_sizes(tmp_path):
    model = fake_model(tmp_path / "m", {"base": "a", "refiner": "b"})
    parts = tutorial.part_sizes(model)
    assert parts["base/unet"] == parts["refiner/unet"] == 4006
    assert sum(parts.values()) == tutorial.folder_size(model)
    assert parts["other"] == tutorial.folder_size(model) - 2 * 4006  # model_index.json files and the manifest
    assert tutorial.folder_size(model / "base" / "unet" / "openvino_model.bin") == 4000


def test_size_table_compares_two_folders(tmp_path):
    big = fake_model(tmp_path / "fp32", {"base": "a"})
    small = fake_model(tmp_path / "int8", {"base": "a"})
    (small / "base" / "unet" / "openvino_model.bin").write_bytes(b"\0" * 994)  # unet: 1000 bytes instead of 4006
    table = tutorial.size_table({"fp32": big / "base", "int8": small / "base"})
    unet = next(row for row in table.rows if row["part"] == "unet")
    assert unet == {"part": "unet", "fp32": "4.01 kB", "int8": "1 kB", "int8 / fp32": "0.25"}
    assert table.rows[-1]["part"] == "**total**"
    text = str(table)
    assert text.splitlines()[0] == "| part | fp32 | int8 | int8 / fp32 |" and text == table._repr_markdown_()


def test_size_table_marks_parts_one_folder_lacks(tmp_path):
    both = fake_model(tmp_path / "both", {"base": "a", "refiner": "b"})
    base_only = fake_model(tmp_path / "base-only", {"base": "a"})
    rows = {row["part"]: row for row in tutorial.size_table({"x": both, "y": base_only}).rows}
    assert rows["refiner/unet"]["y"] == "–" and rows["refiner/unet"]["y / x"] == "–"


# -- time and memory ------------------------------------------------------------------------------------------------
def resident(size: int) -> mmap.mmap:
    """``size`` bytes of fresh anonymous memory, every page written so that it counts in RSS (a malloc'ed buffer
    could reuse memory the process already holds)."""
    buffer = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        buffer[offset] = 1
    return buffer


def test_measure_sees_a_short_peak_and_what_is_held():
    with tutorial.measure("allocate") as m:
        held = resident(30_000_000)
        passing = resident(60_000_000)
        time.sleep(0.2)
        passing.close()
    assert m.seconds >= 0.2 and m.samples > 0
    assert m.transient_mb >= 80, m  # both buffers were resident at once
    assert 20 <= m.held_mb < 80, m
    assert m.peak_mb >= m.rss_after / 1e6
    held.close()
    row = m.row()
    assert list(row) == ["step", "time", "peak RSS", "peak − before", "held after"] and row["step"] == "allocate"
    assert str(tutorial.measurements_table([m])).startswith("| step | time |")


def test_measure_fills_in_when_the_block_fails():
    with pytest.raises(ValueError), tutorial.measure("fails") as m:
        raise ValueError("boom")
    assert m.rss_after > 0 and m.rss_peak >= m.rss_before


# -- images, devices, notebook plumbing -----------------------------------------------------------------------------
def test_side_by_side_scales_to_one_height():
    sheet = tutorial.side_by_side([Image.new("RGB", (100, 50)), Image.new("L", (40, 40))], ["a", "b"], height=100)
    assert sheet.mode == "RGB" and sheet.width == 200 + 8 + 100 and sheet.height > 100
    untitled = tutorial.side_by_side([Image.new("RGB", (10, 10))], height=20)
    assert untitled.size == (20, 20)
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        tutorial.side_by_side([Image.new("RGB", (8, 8))] * 2, ["one"])


def test_device_options():
    options = tutorial.device_options()
    assert "CPU" in options and options[-1] == "AUTO"
    assert tutorial.device_options("AUTO:CPU")[-1] == "AUTO:CPU"
    assert tutorial.device_options("CPU").count("CPU") == 1


def test_free_port_skips_a_busy_one():
    port = tutorial.free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        other = tutorial.free_port(start=port)
        assert other != port
    with pytest.raises(OSError, match="no free port"):
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen()
            tutorial.free_port(start=held.getsockname()[1], tries=1)


def test_under_ci(monkeypatch):
    for value, expected in (("1", True), ("true", True), ("", False), ("0", False)):
        monkeypatch.setenv("CI", value)
        assert tutorial.under_ci() is expected
    monkeypatch.delenv("CI")
    assert tutorial.under_ci() is False


def test_notebook_logging_shows_ov_sdxl_once(monkeypatch, capsys):
    logger = logging.getLogger("ov_sdxl")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logger.level)
    monkeypatch.setattr(logging.getLogger("optimum"), "level", logging.NOTSET)
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    monkeypatch.delenv("DIFFUSERS_VERBOSITY", raising=False)
    tutorial.notebook_logging()
    tutorial.notebook_logging()
    assert len(logger.handlers) == 1
    logging.getLogger("ov_sdxl.runtime.pipelines").info("shaping base unet")
    assert capsys.readouterr().out == "ov_sdxl.runtime.pipelines: shaping base unet\n"
    assert logging.getLogger("optimum").level == logging.ERROR
    import os

    assert os.environ["TRANSFORMERS_VERBOSITY"] == os.environ["DIFFUSERS_VERBOSITY"] == "error"


def test_settings_fit_the_api():
    """Every size, step count and strength in the settings is one GenerationParams accepts, in every mode."""
    from ov_sdxl.config import GenerationParams

    for settings in (tutorial.REAL_SETTINGS, tutorial.TINY_SETTINGS):
        size = {"width": settings["width"], "height": settings["height"]}
        GenerationParams("p", **size, steps=settings["steps"], seed=settings["seed"])
        GenerationParams("p", mode="base+refiner", **size, steps=settings["steps"], keep_base_images=True)
        GenerationParams("p", steps=settings["fast_steps"], scheduler=settings["fast_scheduler"])
        width, height = settings["other_size"]
        GenerationParams("p", width=width, height=height)
        image = Image.new("RGB", (settings["width"], settings["height"]))
        for strength in (*settings["strengths"], settings["refine_strength"]):
            GenerationParams("p", mode="img2img", image=image, strength=strength, steps=settings["steps"])
    assert json.dumps(tutorial.TINY_SETTINGS)  # plain values, printable in a notebook

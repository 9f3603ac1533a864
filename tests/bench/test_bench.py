"""``ov-sdxl bench`` on the tiny model: every contender in its own process, JSON, chart and table; choices and errors.

The full run reuses the session's tiny model and sources (``tiny_model``, ``tiny_sources``) by placing them where
``bench --tiny`` keeps its cached tiny model, so that the model is not built and converted twice in a test run.
"""

from __future__ import annotations

import json
import math
import re

import pytest

from ov_sdxl.bench.contenders import CONTENDERS, resolve_contenders
from ov_sdxl.cli import main
from ov_sdxl.errors import ConfigError

FIGURES = ("unet_base_s_per_step", "unet_refiner_s_per_step", "text_encoders_s", "vae_decode_s", "image_s")
FIGURES += ("first_image_s", "load_s", "peak_rss_bytes")
STEPS, TORCH_STEPS = 6, 5


def _tiny_cache(tmp_path, tiny_model, tiny_sources, hybrid=None):
    """A bench cache folder that already holds the tiny model (and its hybrid-int8 conversion) and its sources."""
    cache = tmp_path / "cache"
    (cache / "tiny" / "sources").mkdir(parents=True)
    (cache / "tiny" / "model").symlink_to(tiny_model, target_is_directory=True)
    if hybrid is not None:
        (cache / "tiny" / "model-hybrid-int8").symlink_to(hybrid, target_is_directory=True)
    for stage, folder in zip(("base", "refiner"), tiny_sources, strict=True):
        (cache / "tiny" / "sources" / stage).symlink_to(folder, target_is_directory=True)
    (cache / "tiny" / "sources" / "taesdxl").symlink_to(tiny_sources[0].parent / "taesdxl", target_is_directory=True)
    return cache


@pytest.mark.slow
def test_bench_tiny_quick_every_contender(tmp_path, tiny_model, tiny_sources, tiny_hybrid_model, capsys):
    from PIL import Image

    cache = _tiny_cache(tmp_path, tiny_model, tiny_sources, tiny_hybrid_model[0])
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    argv = ["bench", "--tiny", "--quick", "--mode", "base+refiner", "--steps", str(STEPS), "--torch-steps"]
    argv += [str(TORCH_STEPS), "--cache", str(cache), "--json", str(out_json), "--chart", str(out_png)]
    argv += ["--width", "128", "--height", "128"]  # PyTorch is slow even on the tiny model: keep the test short
    assert main(argv) == 0
    table = capsys.readouterr().out

    results = json.loads(out_json.read_text(encoding="utf-8"))
    assert results["settings"]["width"] == results["settings"]["height"] == 128
    assert results["settings"]["steps"] == STEPS and results["model"]["label"] == "tiny random SDXL"
    assert list(results["contenders"]) == list(CONTENDERS)
    for name, result in results["contenders"].items():
        figures = result["figures"]
        for key in FIGURES:
            assert figures[key] > 0, (name, key, figures[key])
        assert figures["other_s"] >= 0  # the whole image holds every timed sub-model call
        assert figures["first_image_s"] > figures["load_s"]
        # the same scheduler rule everywhere: 4 base and 2 refiner UNet calls out of 6 steps at hand-off 0.8
        assert result["unet_calls"] == {"base": 4, "refiner": 2}
        torch = name.startswith("diffusers")
        assert result["extrapolated"] is torch
        assert result["steps_run"] == (TORCH_STEPS if torch else STEPS)
        assert sum(result["unet_calls_run"].values()) == result["steps_run"]
        assert result["runtime"] == "long-lived"  # as a server or the demo runs: both UNets compiled
        # drift from quality's image, for every contender that ran the full steps
        assert ("mad_vs_quality" in figures) is not torch, name
    drift = {name: r["figures"].get("mad_vs_quality") for name, r in results["contenders"].items()}
    assert drift["ov-sdxl:quality"] == 0 and 0 < drift["ov-sdxl:balanced"] < drift["ov-sdxl:fast"] < 60, drift
    assert "MAD vs quality" in table and "measures drift, not beauty" in table
    presets = [name for name in CONTENDERS if name.startswith("ov-sdxl:")]
    assert presets == ["ov-sdxl:quality", "ov-sdxl:balanced", "ov-sdxl:fast", "ov-sdxl:fast+taesdxl"]
    assert list(results["ratios"]) == presets
    for preset in presets:
        reference = results["contenders"][preset]["figures"]
        assert set(results["ratios"][preset]) == set(CONTENDERS) - set(presets)
        for name, ratios in results["ratios"][preset].items():
            assert set(ratios) == set(FIGURES) - {"load_s"}
            for key, ratio in ratios.items():
                assert math.isclose(ratio, results["contenders"][name]["figures"][key] / reference[key], rel_tol=1e-9)
    # each preset ran the conversion made for it, built once in the cache from the same sources
    assert (cache / "tiny" / "model-int8").is_dir() and (cache / "tiny" / "model-hybrid-int8").is_dir()

    floor = results["floor"]
    assert floor["tflops"] > 0 and floor["precision"] in ("bf16", "f32")
    for stage in ("base", "refiner"):
        flops = floor["unet_flops_per_step"][stage]
        assert flops > 1e8  # the tiny UNet at 128x128, batch 2
        assert math.isclose(floor["floor_s_per_step"][stage], flops / (floor["tflops"] * 1e12))
    machine = results["machine"]
    assert machine["cpu"] and machine["logical_cores"] >= 1 and machine["ram_bytes"] > 0
    assert "FP32" in machine["optimization_capabilities"]
    assert results["versions"]["openvino"] and any("extrapolated" in note for note in results["notes"])

    for preset in presets:  # each filled a compiled-model cache of its own in a priming run, deleted once measured
        primed = results["contenders"][preset]
        assert primed["cold_first_image_s"] > 0 and primed["compiled_bytes"] > 1e6
    assert (
        "optimum-default" in results["contenders"]
        and "cold_first_image_s" not in results["contenders"]["optimum-default"]
    )
    assert not (cache / "compiled").exists() and not list(tmp_path.glob("**/*.blob"))
    with Image.open(out_png) as chart:
        chart.load()
        assert chart.size[0] > 600 and chart.size[1] > 200
    for text in (*CONTENDERS, "ratios peer / ov-sdxl:fast", "matmul floor", "diffusers-fp32*", "refiner s/step"):
        assert text in table, text
    # bf16 full-batch steps are compared with the floor; fast's int8, partly unguided steps are not
    assert re.search(r"ov-sdxl:quality: \S+ s/step = \S+x the floor", table)
    assert re.search(r"ov-sdxl:fast: \S+ s/step \(int8 and half-batch steps: not compared with it\)", table)


def test_contender_selection():
    chosen = resolve_contenders(["ov-sdxl:fast", "optimum-default"])
    assert [s.name for s in chosen] == ["ov-sdxl:fast", "optimum-default"] and chosen[0].weights == "hybrid-int8"
    assert {s.kind for s in resolve_contenders(list(CONTENDERS))} == {"torch", "optimum", "ov-sdxl"}
    with pytest.raises(ConfigError, match=r"unknown contender 'ov-sdxl:turbo'; choose from: diffusers-fp32, "):
        resolve_contenders(["ov-sdxl:turbo"])
    with pytest.raises(ConfigError, match="given more than once"):
        resolve_contenders(["ov-sdxl:quality", "ov-sdxl:quality"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--contenders", "pytorch"], "unknown contender 'pytorch'; choose from: diffusers-fp32, diffusers-bf16"),
        (["--chart", "bench.jpg"], "--chart bench.jpg must end in .png"),
        (["--mode", "base+refiner", "--torch-steps", "1"], "--torch-steps 1: steps 1 with high_noise_frac 0.8"),
        (["--steps", "0"], "steps 0 must be a whole number >= 1"),
        (["--width", "500"], "width 500 must be a whole number of pixels, at least 64 and a multiple of 8"),
        (["--model", "{tmp}/model", "--tiny"], "--tiny and --model both choose the weights"),
        (["--model", "{tmp}/nowhere"], "model folder {tmp}/nowhere does not exist"),
        (["--model", "{tmp}"], "is not a converted ov-sdxl model"),
        (["--torch-source", "{tmp}"], "--torch-source is for --model"),
        (["--model", "{tmp}", "--torch-source", "{tmp}"], "--torch-source {tmp} is not a diffusers pipeline folder"),
        (["--model", "{tmp}", "--torch-source", "{tmp}", "--mode", "base+refiner"], "needs the refiner's diffusers"),
    ],
)
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, extra, message):
    argv = ["bench", "--cache", str(tmp_path / "cache")] + [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.replace("{tmp}", str(tmp_path)) in err
    assert not (tmp_path / "cache").exists()  # nothing was built


def test_base_only_model_in_two_stage_mode_is_refused(tiny_model, tmp_path, capsys):
    # a model's base folder is a plain optimum-intel export: a base-only model
    assert main(["bench", "--model", str(tiny_model / "base"), "--mode", "base+refiner"]) == 2
    assert "base+refiner needs a refiner" in capsys.readouterr().err


def test_torch_contenders_without_sources_are_skipped_with_a_note(tiny_model, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--model", str(tiny_model), "--quick", "--contenders", "diffusers-bf16", "--json", str(out)]
    assert main(argv + ["--cache", str(tmp_path / "cache")]) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert list(results["contenders"]) == ["diffusers-bf16"]
    assert "--torch-source BASE_DIR [REFINER_DIR]" in results["contenders"]["diffusers-bf16"]["skipped"]
    assert results["ratios"] == {}
    assert "diffusers-bf16: skipped, needs --torch-source" in capsys.readouterr().out


def test_presets_the_model_was_not_converted_for_are_skipped(tiny_model, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--model", str(tiny_model), "--quick", "--steps", "2", "--width", "128", "--height", "128"]
    argv += ["--contenders", "ov-sdxl:balanced", "ov-sdxl:quality", "--json", str(out)]
    assert main(argv + ["--cache", str(tmp_path / "cache")]) == 0
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["contenders"]["ov-sdxl:balanced"]["skipped"] == "needs a model converted with --weights int8"
    assert "figures" in results["contenders"]["ov-sdxl:quality"]  # the tiny model's fp32 weights are quality's

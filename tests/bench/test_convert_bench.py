"""`ov-sdxl bench-convert` on the tiny model: both contenders run, the table and the JSON carry every figure."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_bench_convert_on_tiny(tiny_sources, tmp_path):
    base, _ = tiny_sources
    argv = ["bench-convert", "--base", str(base), "--weights", "fp16", "--json", str(tmp_path / "bench.json")]
    argv += ["--work", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "ov_sdxl.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "bench.json").read_text())
    fp16 = results["formats"]["fp16"]
    assert set(fp16) == {"optimum-cli", "ov-sdxl"}
    assert [row["what"] for row in fp16["optimum-cli"]["rows"]] == ["base"]
    groups = [row["what"] for row in fp16["ov-sdxl"]["rows"]]
    assert groups == ["base: unet", "base: text_encoder, text_encoder_2, vae_decoder, vae_encoder"]
    for contender in fp16.values():
        assert contender["seconds"] > 0 and contender["peak_rss"] > 100e6
        assert all(row["seconds"] > 0 and row["peak_rss"] > 100e6 for row in contender["rows"])
    assert "ratios: time ov-sdxl/optimum-cli" in done.stdout and "TOTAL (base + refiner)" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # the converted models are removed


def test_bench_convert_hybrid_against_int8_on_tiny(tiny_sources, tmp_path):
    """ov-sdxl's hybrid-int8 beside its int8 in one run: the ratios and the calibration renders apart; optimum-cli,
    a default contender, is left out of hybrid-int8 with a note."""
    base, refiner = tiny_sources
    argv = ["bench-convert", "--base", str(base), "--refiner", str(refiner), "--weights", "int8", "hybrid-int8"]
    argv += ["--calibration-samples", "3", "--json", str(tmp_path / "bench.json"), "--work", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "ov_sdxl.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "bench.json").read_text())
    assert set(results["formats"]["int8"]) == {"optimum-cli", "ov-sdxl"}
    assert set(results["formats"]["hybrid-int8"]) == {"ov-sdxl"}
    rows = results["formats"]["hybrid-int8"]["ov-sdxl"]["rows"]
    renders = {row["what"].split(":")[0]: row["calibration"] for row in rows if "calibration" in row}
    assert set(renders) == {"base", "refiner"}
    assert renders["base"]["unet_calls"] >= 3 and renders["refiner"]["unet_calls"] > 3  # the base renders its inputs
    assert all(0 < r["render_seconds"] for r in renders.values())
    ratio = results["hybrid_vs_int8"]
    hybrid, int8 = results["formats"]["hybrid-int8"]["ov-sdxl"], results["formats"]["int8"]["ov-sdxl"]
    assert ratio["time"] == pytest.approx(hybrid["seconds"] / int8["seconds"])
    assert ratio["unet_calls"] == sum(r["unet_calls"] for r in renders.values())
    assert ratio["time_without_renders"] < ratio["time"]
    assert "of which calibration renders" in done.stdout and "ov-sdxl hybrid-int8/int8: time" in done.stdout
    assert "note: optimum-cli not run in hybrid-int8" in done.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--weights", "hybrid-int8", "--contenders", "optimum-cli"], "calibrates on a caption dataset it downloads"),
        (["--weights", "int8", "--calibration-samples", "4"], "--calibration-samples is only used by"),
    ],
)
def test_bench_convert_refuses_what_it_cannot_measure(argv, message, tmp_path, capsys):
    from ov_sdxl.cli import main

    synthetic = tmp_path / "synthetic"
    assert main(["bench-convert", "--synthetic", str(synthetic), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not synthetic.exists()  # refused before the synthetic sources are built

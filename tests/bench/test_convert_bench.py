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

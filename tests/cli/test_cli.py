"""The command line end to end on the tiny model: outputs, metadata, and every error's exit code and message."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ov_sdxl.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def generate_args(model, output, *extra):
    return [
        "generate",
        "--model",
        model,
        "--prompt",
        "a lighthouse at dusk",
        "--steps",
        "5",
        "--width",
        "128",
        "--height",
        "96",
        "--output",
        output,
        *extra,
    ]


def test_generate_base_refiner_writes_exactly_the_output(tiny_model, tmp_path, capsys):
    output = tmp_path / "lighthouse.png"
    code, out, err = run(
        capsys,
        *generate_args(tiny_model, output, "--mode", "base+refiner", "--seed", "42", "--negative-prompt", "blurry"),
    )
    assert code == 0, err
    assert [p.name for p in tmp_path.iterdir()] == ["lighthouse.png"]
    assert str(output) in out and "seed 42, 128x96" in out
    image = Image.open(output)
    assert image.size == (128, 96)
    meta = image.text
    assert meta["prompt"] == "a lighthouse at dusk" and meta["negative_prompt"] == "blurry"
    assert (meta["seed"], meta["steps"], meta["guidance"], meta["mode"]) == ("42", "5", "5.0", "base+refiner")
    assert (meta["width"], meta["height"], meta["high_noise_frac"]) == ("128", "96", "0.8")
    assert meta["scheduler"] == "model default" and meta["model"] == str(tiny_model)
    assert "refiner" in err  # the progress bar names each stage


def test_generate_several_images_and_img2img(tiny_model, tmp_path, capsys):
    code, out, err = run(
        capsys,
        *generate_args(tiny_model, tmp_path / "cat.png", "--num-images", "2", "--seed", "1", "--scheduler", "euler-a"),
    )
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat-1.png", "cat-2.png"]
    code, out, err = run(
        capsys,
        "generate",
        "--model",
        tiny_model,
        "--prompt",
        "a cat",
        "--mode",
        "img2img",
        "--image",
        tmp_path / "cat-1.png",
        "--steps",
        "4",
        "--output",
        tmp_path / "edit.png",
    )
    assert code == 0, err
    assert Image.open(tmp_path / "edit.png").text["strength"] == "0.6"


@pytest.fixture(scope="module")
def broken_models(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    no_refiner = root / "no-refiner"
    shutil.copytree(tiny_model, no_refiner)
    shutil.rmtree(no_refiner / "refiner")
    bad_ir = root / "bad-ir"
    shutil.copytree(tiny_model, bad_ir)
    (bad_ir / "base" / "unet" / "openvino_model.bin").write_bytes(b"\0" * 10)
    return {"no-refiner": no_refiner, "bad-ir": bad_ir}


INPUT_ERRORS = [
    (["--width", "1004"], "width 1004 must be a whole number of pixels, at least 64 and a multiple of 8"),
    (["--steps", "0"], "steps 0 must be a whole number >= 1"),
    (["--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
    (["--mode", "img2img", "--image", "{image}", "--strength", "2"], "strength 2.0 is outside (0, 1]"),
    (["--mode", "base+refiner", "--high-noise-frac", "1.5"], "high_noise_frac 1.5 is outside (0, 1)"),
    (["--mode", "img2img", "--image", "{tmp}/missing.png"], "missing.png does not exist"),
    (["--mode", "refine", "--image", "{text}"], "is not an image PIL can read"),
    (["--mode", "refine"], "mode refine needs an input image (--image FILE)"),
    (["--scheduler", "nope"], "scheduler 'nope' is unknown; choose one of: euler"),
    (["--device", "GPU"], "device GPU is not available; this machine has: CPU"),
    (["--mode", "paint"], "argument --mode: invalid choice: 'paint'"),
    (["--model", "{tmp}/nowhere"], "nowhere does not exist; convert one with: python convert.py"),
    (["--model", "{no-refiner}"], "refiner is missing; reconvert with --overwrite"),
    (["--model", "{bad-ir}"], "openvino_model.bin is 10 bytes, the manifest says"),
    (["--output", "{tmp}/out.jpg"], "out.jpg must end in .png"),
]


@pytest.mark.parametrize(("extra", "message"), INPUT_ERRORS)
def test_input_errors_exit_2_with_one_error_line(tiny_model, broken_models, tmp_path, capsys, extra, message):
    image = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(image)
    (tmp_path / "notes.txt").write_text("hello")
    values = {"image": image, "tmp": tmp_path, "text": tmp_path / "notes.txt", **broken_models}
    extra = [e.format(**{k: str(v) for k, v in values.items()}) for e in extra]
    argv = generate_args(tiny_model, tmp_path / "out.png")
    if "--model" in extra:  # replace the default model
        i = argv.index("--model")
        del argv[i : i + 2]
    code, out, err = run(capsys, *argv, *extra)
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(error_lines) == 1 and message in error_lines[0], err
    assert "Traceback" not in err and not (tmp_path / "out.png").exists()


def test_failure_exits_1(tiny_model, tmp_path, capsys):
    (tmp_path / "out.png").mkdir()  # the output path is taken by a folder: writing fails
    code, out, err = run(capsys, *generate_args(tiny_model, tmp_path / "out.png", "--steps", "2"))
    assert code == 1 and err.splitlines()[-1].startswith("error: cannot write"), err
    assert "Traceback" not in err


def test_convert_errors_and_entry_points(tmp_path):
    """`python convert.py` and the `ov-sdxl` console script are the same command."""
    script = subprocess.run(
        [sys.executable, str(ROOT / "convert.py"), "--base", str(tmp_path / "nope"), "--output", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert script.returncode == 2
    assert script.stderr.strip().splitlines()[-1].startswith("error: --base ") and "neither an existing folder" in (
        script.stderr
    )
    console = shutil.which("ov-sdxl", path=str(Path(sys.executable).parent))
    listed = subprocess.run([console, "schedulers"], capture_output=True, text=True)
    assert listed.returncode == 0 and "dpm++2m-karras" in listed.stdout
    missing = subprocess.run([console, "convert", "--output", str(tmp_path / "m")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ov-sdxl convert: the following arguments")


def test_verify(tiny_model, broken_models, capsys):
    code, out, err = run(capsys, "verify", "--model", tiny_model)
    assert code == 0 and out.startswith("ok: ") and "files match" in out
    code, out, err = run(capsys, "verify", "--model", broken_models["bad-ir"])
    assert code == 2 and "the manifest says" in err


def test_compare_writes_one_labelled_grid(tiny_model, tmp_path, capsys):
    code, out, err = run(
        capsys,
        "compare",
        "--models",
        tiny_model,
        tiny_model,
        "--seeds",
        "1",
        "2",
        "3",
        "--prompt",
        "a fox",
        "--steps",
        "2",
        "--width",
        "64",
        "--height",
        "64",
        "--output",
        tmp_path / "grid.png",
    )
    assert code == 0, err
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (96 + 2 * 64, 28 + 3 * 64) and grid.text["seeds"] == "1 2 3"
    assert out.strip() == str(tmp_path / "grid.png")


def test_pixel_cap_is_configurable(tiny_model, tmp_path, capsys):
    code, out, err = run(capsys, *generate_args(tiny_model, tmp_path / "o.png", "--max-pixels", "10000"))
    assert code == 2 and "128x96 is 12288 pixels, over the limit of 10000" in err

"""The command line end to end on the tiny model: outputs, metadata, and every error's exit code and message."""

import shlex
import shutil
from pathlib import Path

import pytest
from conftest import mean_abs_diff
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
    assert meta["scheduler"] == "euler" and meta["model"] == str(tiny_model)  # the model's own, named
    assert "refiner" in err  # the progress bar names each stage
    details = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]
    assert details == [], err  # nothing but the progress bars: what loads and compiles is for --verbose


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


def test_inpaint_and_outpaint_from_the_command_line(tiny_model, tmp_path, capsys):
    """A mask file, a "masked only" repair and an outpaint: each PNG records its mode and how it was made, and its
    regenerate command makes the same image again."""
    Image.effect_noise((128, 96), 60).convert("RGB").save(tmp_path / "photo.png")
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (16, 16, 40, 40))
    mask.save(tmp_path / "mask.png")  # half the image's size: resized, with a note
    given = ["generate", "--model", tiny_model, "--prompt", "a wide view", "--image", tmp_path / "photo.png"]
    given += ["--steps", "3", "--seed", "5"]
    repair = ["--mode", "inpaint", "--mask", tmp_path / "mask.png", "--inpaint-area", "masked"]
    repair += ["--width", "64", "--height", "64", "--output", tmp_path / "fixed.png"]
    code, out, err = run(capsys, *given, *repair)
    assert code == 0, err
    fixed = Image.open(tmp_path / "fixed.png")
    meta = fixed.text
    assert (meta["mode"], meta["inpaint_area"], meta["masked_padding"], meta["generated_at"]) == (
        "inpaint",
        "masked",
        "32",
        "64x64",
    )
    assert fixed.size == (128, 96) and len(meta["mask_sha256"]) == 16
    wider = ["--mode", "outpaint", "--expand", "8,0,8,16", "--fill", "blur", "--output", tmp_path / "wide.png"]
    code, out, err = run(capsys, *given, *wider)
    assert code == 0, err
    wide = Image.open(tmp_path / "wide.png")
    assert wide.size == (144, 112) and wide.text["expand"] == "8,0,8,16" and wide.text["fill"] == "blur"
    regenerate = shlex.split(wide.text["regenerate"])
    assert regenerate[regenerate.index("--expand") + 1] == "8,0,8,16"
    code, out, err = run(capsys, *regenerate[1:], "--output", tmp_path / "again.png")
    assert code == 0, err
    assert mean_abs_diff(Image.open(tmp_path / "again.png"), wide) == 0


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
    (["--model", "{image}"], "in.png is a file, not a model folder"),
    (["--mode", "img2img", "--image", "{odd}"], "give a size to resize it to: --width and --height"),
    (["--steps", "201"], "steps 201, over the limit of 200; raise it with --max-steps"),
    (["--mode", "inpaint", "--image", "{image}"], "mode inpaint needs a mask (--mask FILE"),
    (["--mode", "inpaint", "--image", "{image}", "--mask", "{black}"], "the mask is empty"),
    (["--mode", "outpaint", "--image", "{image}", "--expand", "8,8"], "argument --expand: '8,8': four whole numbers"),
    (["--mode", "outpaint", "--image", "{image}", "--expand", "4,0,0,0"], "each side a multiple of 8 pixels"),
    (["--mode", "img2img", "--image", "{image}", "--mask", "{black}"], "mask is not used by mode img2img"),
]


@pytest.mark.parametrize(("extra", "message"), INPUT_ERRORS)
def test_input_errors_exit_2_with_one_error_line(tiny_model, broken_models, tmp_path, capsys, extra, message):
    image = tmp_path / "in.png"
    Image.new("RGB", (64, 64)).save(image)
    (tmp_path / "notes.txt").write_text("hello")
    Image.new("RGB", (100, 100)).save(tmp_path / "odd.png")
    Image.new("L", (64, 64)).save(tmp_path / "black.png")
    values = {"image": image, "odd": tmp_path / "odd.png", "tmp": tmp_path, "text": tmp_path / "notes.txt"}
    values["black"] = tmp_path / "black.png"
    values.update(broken_models)
    extra = [e.format(**{k: str(v) for k, v in values.items()}) for e in extra]
    argv = generate_args(tiny_model, tmp_path / "out.png")
    if str(values["odd"]) in extra:  # the input image's own size, 100x100
        argv = argv[: argv.index("--width")] + argv[argv.index("--height") + 2 :]
    if "--model" in extra:  # replace the default model
        i = argv.index("--model")
        del argv[i : i + 2]
    code, out, err = run(capsys, *argv, *extra)
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(error_lines) == 1 and message in error_lines[0], err
    assert "Traceback" not in err and not (tmp_path / "out.png").exists()


def test_failure_exits_1(tiny_model, tmp_path, capsys, monkeypatch):
    """A disk that fills up while the PNG is written: a failure (exit 1), one line, no partial file left."""
    import os

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    code, out, err = run(capsys, *generate_args(tiny_model, tmp_path / "out.png", "--steps", "2"))
    assert code == 1 and err.splitlines()[-1].startswith("error: cannot write"), err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("{tmp}/fox.png/x.png", "fox.png is a file, not a folder"),
        ("/proc/x.png", "output /proc/x.png: cannot write in folder /proc"),
        ("{tmp}/nonexistent/dir/x.png", "folder {tmp}/nonexistent/dir does not exist; create it, or add --make-dirs"),
    ],
)
def test_the_output_is_checked_before_any_model_loads(tmp_path, capsys, output, message):
    """A model folder that could not load: the output's error comes first, so nothing was loaded or generated."""
    (tmp_path / "fox.png").write_bytes(b"an image")
    output, message = output.format(tmp=tmp_path), message.format(tmp=tmp_path)
    code, out, err = run(capsys, *generate_args(tmp_path / "no-model", output))
    assert code == 2 and err.startswith(f"error: output {output}") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fox.png"]


def test_existing_images_are_kept_and_batches_reproduce_image_by_image(tiny_model, tmp_path, capsys):
    import shlex

    args = generate_args(tiny_model, tmp_path / "new" / "out.png", "--steps", "3", "--seed", "5", "--make-dirs")
    for _ in range(2):
        code, out, err = run(capsys, *args)
        assert code == 0, err
    assert out.splitlines()[0] == str(tmp_path / "new" / "out-2.png")  # the first is kept, the path printed
    code, out, err = run(capsys, *args, "--overwrite")
    assert code == 0 and sorted(p.name for p in (tmp_path / "new").iterdir()) == ["out-2.png", "out.png"]

    code, out, err = run(capsys, *generate_args(tiny_model, tmp_path / "b.png", "--num-images", "2", "--seed", "9"))
    assert code == 0, err
    assert out.splitlines()[:2] == [f"{tmp_path / 'b-1.png'}  (seed 9)", f"{tmp_path / 'b-2.png'}  (seed 10)"]
    second = Image.open(tmp_path / "b-2.png").text
    assert second["seed"] == "10" and second["batch"] == "image 2 of 2, batch seed 9; alone: seed 10"
    command = shlex.split(second["regenerate"])
    assert command[:2] == ["ov-sdxl", "generate"] and "--num-images" not in command and "--output" not in command
    code, out, err = run(capsys, *command[1:], "--output", tmp_path / "alone.png")
    assert code == 0, err
    assert mean_abs_diff(Image.open(tmp_path / "alone.png"), Image.open(tmp_path / "b-2.png")) < 0.5


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

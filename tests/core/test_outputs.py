"""Output paths: checked before any work, existing images never replaced unless asked."""

import os

import pytest
from PIL import Image

from ov_sdxl.errors import OutputPathError
from ov_sdxl.images import save_images
from ov_sdxl.outputs import OutputPlan


def _image() -> Image.Image:
    return Image.new("RGB", (8, 8), (10, 20, 30))


def test_an_existing_image_is_never_replaced(tmp_path):
    first = save_images([_image()], tmp_path / "out.png", {"n": "1"})
    second = save_images([_image()], tmp_path / "out.png", {"n": "2"})
    third = save_images([_image()], tmp_path / "out.png", {"n": "3"})
    assert (first, second, third) == ([tmp_path / "out.png"], [tmp_path / "out-2.png"], [tmp_path / "out-3.png"])
    assert Image.open(tmp_path / "out.png").text["n"] == "1"


def test_a_batch_takes_the_next_free_numbers(tmp_path):
    save_images([_image()] * 2, tmp_path / "out.png", {})
    plan = OutputPlan.check(tmp_path / "out.png", count=2)
    assert plan.paths() == [tmp_path / "out-3.png", tmp_path / "out-4.png"]
    assert save_images([_image()] * 2, plan, {}) == [tmp_path / "out-3.png", tmp_path / "out-4.png"]
    assert sorted(os.listdir(tmp_path)) == [f"out-{i}.png" for i in range(1, 5)]


def test_overwrite_replaces(tmp_path):
    save_images([_image()], tmp_path / "out.png", {"n": "1"})
    assert save_images([_image()], tmp_path / "out.png", {"n": "2"}, overwrite=True) == [tmp_path / "out.png"]
    assert Image.open(tmp_path / "out.png").text["n"] == "2" and os.listdir(tmp_path) == ["out.png"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("fox.png/x.png", "fox.png is a file, not a folder"),
        ("missing/deeper/x.png", "folder {tmp}/missing/deeper does not exist; create it, or add --make-dirs"),
        ("x.jpg", "must end in .png"),
        ("folder.png", "is a folder; give a file name in it"),
    ],
)
def test_bad_outputs_are_refused_and_nothing_is_created(tmp_path, name, message):
    (tmp_path / "fox.png").write_bytes(b"not a folder")
    (tmp_path / "folder.png").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(OutputPathError, match=message.format(tmp=tmp_path).replace(".", r"\.")):
        OutputPlan.check(tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_virtual_file_system_is_refused():
    with pytest.raises(OutputPathError, match=r"/proc/x.png: cannot write in folder /proc"):
        OutputPlan.check("/proc/x.png")


def test_make_dirs_creates_the_folder(tmp_path):
    plan = OutputPlan.check(tmp_path / "a" / "b" / "x.png", make_dirs=True)
    assert (tmp_path / "a" / "b").is_dir() and plan.paths() == [tmp_path / "a" / "b" / "x.png"]

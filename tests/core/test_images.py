"""Reading input images safely and writing PNGs that carry their parameters."""

import pytest
from PIL import Image

from ov_sdxl import ImageError
from ov_sdxl.images import load_image, save_images, to_rgb


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "I;16", "CMYK", "1"])
def test_every_mode_becomes_rgb(mode):
    image = Image.new("RGB", (16, 8), (200, 100, 50)).convert(mode)
    converted = to_rgb(image)
    assert converted.mode == "RGB" and converted.size == (16, 8)


def test_transparency_goes_over_white_and_16_bit_grey_scales_down():
    clear = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)
    grey16 = Image.new("I;16", (4, 4), 65535)
    assert to_rgb(grey16).getpixel((0, 0)) == (255, 255, 255)


def test_load_image_errors(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="is not an image PIL can read"):
        load_image(text)
    good = tmp_path / "good.png"
    Image.new("RGB", (256, 256), (1, 2, 3)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:80])
    with pytest.raises(ImageError, match="cannot be decoded"):
        load_image(truncated)
    with pytest.raises(ImageError, match="over the limit of 1000"):
        load_image(good, max_pixels=1000)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb, optimize=True)  # ~50 kB on disk, 400 Mpixel decoded
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImageError, match="too large to decode safely: Image size \\(400000000 pixels\\)"):
        load_image(bomb)


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_png_metadata_and_numbering(tmp_path):
    images = [Image.new("RGB", (8, 8)) for _ in range(2)]
    paths = save_images(images, tmp_path / "out.png", {"prompt": "a cat", "seed": "7"})
    assert paths == [tmp_path / "out-1.png", tmp_path / "out-2.png"]
    text = Image.open(paths[1]).text
    assert text["prompt"] == "a cat" and text["seed"] == "7" and text["parameters"].startswith("a cat\n")
    per_image = save_images(images, tmp_path / "each.png", [{"seed": "7"}, {"seed": "8"}])
    assert [Image.open(p).text["seed"] for p in per_image] == ["7", "8"]


def test_disk_full_while_saving_leaves_no_file(tmp_path):
    """A file-size limit makes the write fail as a full disk would: a clear error and no partial PNG."""
    import subprocess
    import sys

    script = """
import resource, signal, sys
import numpy as np
from PIL import Image
from ov_sdxl.errors import OutputError
from ov_sdxl.images import save_images
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))
try:
    save_images([noise], sys.argv[1], {"prompt": "x"})
except OutputError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.png")], capture_output=True, text=True)
    assert done.stdout.startswith(f"cannot write {tmp_path / 'out.png'}: [Errno 27] File too large"), done
    assert list(tmp_path.iterdir()) == []

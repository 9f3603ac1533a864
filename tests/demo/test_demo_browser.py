"""The demo page in a real headless browser (Debian's chromium, driven by Playwright): type a prompt, press
Generate, see the image; two-stage mode shows base and refined side by side; Stop ends a long run.

Screenshots go to /tmp/ov-sdxl-demo-screenshots/ (printed; replaced by each run), the first also to
/tmp/ov-sdxl-demo-screenshot.png.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(tempfile.gettempdir()) / "ov-sdxl-demo-screenshots"
SCREENSHOT_COPY = Path(tempfile.gettempdir()) / "ov-sdxl-demo-screenshot.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def url(runtime, tmp_path_factory):
    from ov_sdxl.demo import build_demo, launch_demo
    from ov_sdxl.demo.inputs import DemoLimits

    limits = DemoLimits(max_steps=200)
    demo = build_demo(runtime, limits=limits, output_dir=tmp_path_factory.mktemp("browser-out"))
    yield launch_demo(demo, port=free_port(), limits=limits)
    demo.close()


@pytest.fixture(scope="module")
def page(url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.get_by_label("Prompt", exact=True).wait_for()
        yield page
        browser.close()


def set_form(page, *, size: int, steps: int) -> None:
    """A custom size and the number of steps, typed as a user would."""
    size_box = page.get_by_label("Size")
    size_box.click()
    size_box.fill("Custom")
    page.get_by_role("option", name="Custom").click()
    for label in ("Width", "Height"):
        page.get_by_label(label, exact=True).fill(str(size))
    steps_box = page.get_by_label("number input for Steps")
    steps_box.fill(str(steps))
    steps_box.press("Enter")


def status(page):
    return page.locator("#status")


def gallery_images(page):
    return page.locator("#gallery img")


def test_generate_then_two_stage_then_stop(page):
    from playwright.sync_api import expect

    shots = SCREENSHOTS
    shots.mkdir(exist_ok=True)
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk, oil painting")
    set_form(page, size=128, steps=3)
    page.get_by_role("button", name="Generate").click()
    expect(status(page)).to_contain_text("Done: seed", timeout=120_000)
    expect(gallery_images(page)).to_have_count(1)
    assert "model" in page.locator("#model-info").inner_text()
    page.screenshot(path=shots / "text2img.png", full_page=True)
    shutil.copy(shots / "text2img.png", SCREENSHOT_COPY)
    print(f"\nscreenshots: {shots} (text2img also at {SCREENSHOT_COPY})")

    page.get_by_label("Text to image + refiner").check()
    expect(page.get_by_label("Hand-off to the refiner", exact=False).first).to_be_visible()
    set_form(page, size=128, steps=4)
    page.get_by_role("button", name="Generate").click()
    expect(status(page)).to_contain_text("refiner", timeout=120_000)
    expect(gallery_images(page)).to_have_count(2)
    page.screenshot(path=shots / "base-refiner.png", full_page=True)

    page.get_by_label("Text to image", exact=True).check()
    set_form(page, size=256, steps=200)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gallery").get_by_text("base: step")).to_be_visible(timeout=120_000)
    page.get_by_role("button", name="Stop").click()
    expect(status(page)).to_contain_text("Stopped (base step", timeout=30_000)
    assert "of 200" in status(page).inner_text()
    page.screenshot(path=shots / "stopped.png", full_page=True)

    page.get_by_label("Image to image").check()  # the upload appears where the mode needs one
    expect(page.locator("[data-testid='image']").first).to_be_visible()
    expect(page.get_by_label("Size")).to_have_value("Input image size")


def test_stop_works_under_load(page, url):
    """A long run in the browser, ten API requests queued behind it: Stop still ends the run within a step, and
    every queued request then gets its image (or the busy answer); none hangs."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client
    from gradio_client.utils import QueueError
    from playwright.sync_api import expect

    def one_request(_: int) -> str:
        try:
            job = Client(url, verbose=False).submit(prompt="a fox", width=64, height=64, steps=2, api_name="/text2img")
            gallery, _, _ = job.result(timeout=180)
        except QueueError:
            return "busy"
        return "image" if gallery else "empty"

    page.get_by_label("Text to image", exact=True).check()
    set_form(page, size=256, steps=200)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gallery").get_by_text("base: step")).to_be_visible(timeout=120_000)
    with ThreadPoolExecutor(10) as pool:
        queued = [pool.submit(one_request, i) for i in range(10)]
        page.wait_for_timeout(2_000)  # the requests are in the queue behind the long run
        assert not any(future.done() for future in queued)
        page.get_by_role("button", name="Stop").click()
        expect(status(page)).to_contain_text("Stopped (base step", timeout=30_000)
        outcomes = [future.result(timeout=240) for future in queued]
    assert outcomes.count("image") + outcomes.count("busy") == 10 and outcomes.count("image") >= 1, outcomes


def test_inpaint_a_painted_stroke(page, tmp_path):
    """The Inpaint tab: upload into the image editor, paint a stroke with the brush, Generate: the repaired image
    appears, at the upload's size, and says it was inpainted."""
    from PIL import Image
    from playwright.sync_api import expect

    Image.effect_noise((128, 96), 80).convert("RGB").save(tmp_path / "photo.png")
    page.get_by_label("Prompt", exact=True).fill("a red scarf")
    page.get_by_label("Inpaint", exact=True).check()
    editor = page.locator("#inpaint-editor")
    expect(editor).to_be_visible()
    editor.locator("input[type='file']").first.set_input_files(str(tmp_path / "photo.png"))
    canvas = editor.locator("canvas").first
    expect(canvas).to_be_visible()
    page.wait_for_timeout(1000)  # the upload drawn on the canvas
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.55, steps=12)
    page.mouse.up()
    steps_box = page.get_by_label("number input for Steps")
    steps_box.fill("3")
    steps_box.press("Enter")
    page.get_by_role("button", name="Generate").click()
    page.screenshot(path=SCREENSHOTS / "inpaint-painted.png", full_page=True)
    expect(status(page)).to_contain_text("Done: seed", timeout=120_000)
    assert "128×96" in status(page).inner_text()
    expect(gallery_images(page)).to_have_count(1)
    page.screenshot(path=SCREENSHOTS / "inpaint.png", full_page=True)

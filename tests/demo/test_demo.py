"""The Gradio demo on the tiny model: its handlers called directly, a live server driven with gradio_client, the
``ov-sdxl demo`` command, and load (several clients at once) on a server in its own process."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import pytest
from conftest import mean_abs_diff
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from ov_sdxl.config import GenerationParams, Mode
from ov_sdxl.demo.handlers import DemoHandlers
from ov_sdxl.demo.inputs import INPUT_SIZE, DemoLimits, parse_seed, whole
from ov_sdxl.demo.labels import STAGES
from ov_sdxl.demo.repaint import NO_MASK
from ov_sdxl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "a lighthouse at dusk"
SMALL = {"size": "Custom", "width": 128.0, "height": 96.0, "steps": 3.0}  # the form's floats, as a browser sends
# The commands of docs/demo.md; test_cli_demo_commands runs each of them.
README_COMMANDS = ["ov-sdxl demo", "ov-sdxl demo --model models/sdxl"]
README_API_EXAMPLE = """\
from gradio_client import Client, handle_file

client = Client("http://127.0.0.1:7860/")
images, status, parameters = client.predict(prompt="a lighthouse at dusk", api_name="/text2img")
print(status, parameters["seed"])  # every other parameter has the page's default: 30 steps, native size...
first = images[0]["image"]  # a PNG file that carries its parameters
refined, _, _ = client.predict(prompt="a lighthouse at dusk", image=handle_file(first), steps=10, api_name="/refine")
"""


def demo_page() -> str:
    """docs/demo.md, the demo's page."""
    return (ROOT / "docs" / "demo.md").read_text(encoding="utf-8")


class Progress:
    """Stands in for gr.Progress when a handler is called directly: records what the page would show."""

    def __init__(self, on_step=None):
        self.calls, self.on_step = [], on_step

    def __call__(self, progress, desc=None, total=None, unit="steps"):
        self.calls.append((progress, desc))
        if self.on_step is not None and isinstance(progress, tuple):
            self.on_step(*progress)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def handlers(runtime, tmp_path_factory):
    return DemoHandlers(runtime, DemoLimits(max_upload_pixels=512 * 512), tmp_path_factory.mktemp("demo-out"))


def generate(handlers, *args, **kwargs):
    """The Generate button's last output (the PNGs), after checking what it streamed before: previews only."""
    *previews, final = handlers.generate(*args, **kwargs)
    for gallery, status, parameters, seed in previews:
        assert all(isinstance(image, Image.Image) and caption.startswith("preview: ") for image, caption in gallery)
        assert "a preview; the finished image follows" in status and parameters == seed == gr.skip()
    generate.previews = previews
    return final


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(gr.Error) as info:
        call(*args, **kwargs)
    message = info.value.message
    assert "Traceback" not in message and 'File "' not in message
    return message


# -- the handlers, called directly --------------------------------------------------------------------------------
def test_text2img_writes_pngs_that_carry_their_parameters(handlers):
    progress = Progress()
    gallery, status, parameters, seed = generate(
        handlers, "Text to image", PROMPT, "blurry", seed="7", num_images=2.0, progress=progress, **SMALL
    )
    assert seed == "7" and status.startswith("Done: seed 7, 128×96")
    assert [caption for _, caption in gallery] == ["1: seed 7", "2: seed 8"]  # each image its own seed
    for (path, _), own_seed in zip(gallery, ("7", "8"), strict=True):
        image = Image.open(path)
        assert image.size == (128, 96) and image.format == "PNG"
        meta = image.text
        assert (meta["prompt"], meta["negative_prompt"], meta["steps"]) == (PROMPT, "blurry", "3")
        assert meta["seed"] == own_seed
        assert meta["mode"] == "text2img" and meta["model"] == str(handlers.runtime.layout.root)
    assert parameters["seed"] == "7" and parameters["width"] == "128"
    assert progress.calls[0][1].startswith("Preparing the model")
    assert progress.calls[1:] == [((step, 3), f"base: step {step} of 3") for step in (1, 2, 3)]
    assert generate.previews, "the picture forming should show before the PNGs"
    first_preview = generate.previews[0][0]
    assert len(first_preview) == 2 and first_preview[0][0].size == (128 // 8, 96 // 8)  # the latents' size


def test_same_seed_same_image_and_random_seed_is_returned(handlers):
    first = generate(handlers, "Text to image", PROMPT, seed="123", progress=Progress(), **SMALL)
    again = generate(handlers, "Text to image", PROMPT, seed=123, progress=Progress(), **SMALL)
    assert Image.open(first[0][0][0]).tobytes() == Image.open(again[0][0][0]).tobytes()
    drawn = generate(handlers, "Text to image", PROMPT, seed="random", progress=Progress(), **SMALL)[3]
    assert (
        drawn.isdigit()
        and f"seed {drawn},"
        in generate(handlers, "Text to image", PROMPT, seed=drawn, progress=Progress(), **SMALL)[1]
    )


def test_base_and_refined_side_by_side(handlers):
    progress = Progress()
    gallery, status, parameters, _ = generate(
        handlers,
        "Text to image + refiner",
        PROMPT,
        seed="5",
        high_noise_frac=0.5,
        progress=progress,
        **{**SMALL, "steps": 4.0},
    )
    assert [caption for _, caption in gallery] == ["1: base, handed off at 0.5", "1: refined"]
    base, refined = (Image.open(path) for path, _ in gallery)
    assert base.size == refined.size == (128, 96) and base.tobytes() != refined.tobytes()
    assert base.text["stage"] == "base" and "stage" not in refined.text
    assert refined.text["mode"] == "base+refiner" and refined.text["high_noise_frac"] == "0.5"
    stages = [desc.split(":")[0] for _, desc in progress.calls[1:]]
    assert stages == ["base", "base", "refiner", "refiner"]


def test_image_modes_take_the_upload_as_rgb_at_its_size(handlers, tmp_path):
    upload = tmp_path / "rgba.png"
    Image.new("RGBA", (128, 96), (200, 30, 30, 0)).save(upload)
    for mode, strength in (("Image to image", 0.6), ("Refine an image", 0.3)):
        gallery, status, parameters, _ = generate(
            handlers,
            mode,
            PROMPT,
            image=str(upload),
            size="Input image size",
            steps=4.0,
            strength=strength,
            progress=Progress(),
        )
        assert Image.open(gallery[0][0]).size == (128, 96) and parameters["strength"] == str(strength)
    resized = handlers.img2img(PROMPT, image=str(upload), width=64, height=64, steps=4, progress=Progress())
    assert Image.open(resized[0][0][0]).size == (64, 64)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"size": "Custom", "width": 100.0, "height": 96.0},
            "width 100 must be a whole number of pixels, at least 64 and a multiple of 8",
        ),
        ({"size": "Custom", "width": 64.5, "height": 96.0}, "width 64.5 must be a whole number"),
        ({"steps": 101.0}, "steps 101 is over this demo's limit of 100"),
        ({"num_images": 5.0}, "num_images 5 is over this demo's limit of 4"),
        ({"seed": "seven"}, "seed 'seven' must be a whole number from 0 to 2**64-1, or 'random'"),
        ({"scheduler": "fastest"}, "scheduler 'fastest' is unknown; choose one of: euler, euler-a"),
        ({"mode": "Image to image"}, "this mode needs an input image: upload one"),
        ({"mode": "Sketch"}, "mode 'Sketch' is not one of: Text to image, Text to image + refiner"),
        ({"guidance": -1.0}, "guidance -1.0 must be a number >= 0"),
        ({"size": "999×999"}, "size '999×999' is not one of the presets"),
    ],
)
def test_bad_input_is_one_readable_message(handlers, form, message):
    form = {"mode": "Text to image", "prompt": PROMPT, "size": "Custom", "width": 64.0, "height": 64.0, **form}
    assert message in error_of(functools.partial(generate, handlers), progress=Progress(), **form)


def test_bad_uploads_are_named_not_our_paths(handlers, tmp_path):
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (128, 128), "white").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    message = error_of(handlers.img2img, PROMPT, image=str(truncated), steps=4, progress=Progress())
    assert message.startswith("the uploaded image (cut.png) cannot be decoded") and str(tmp_path) not in message
    big = tmp_path / "big.png"
    Image.new("RGB", (1024, 1024), "white").save(big)
    message = error_of(handlers.refine, PROMPT, image=str(big), steps=4, progress=Progress())
    assert message == "the uploaded image (big.png) is 1024x1024 (1048576 pixels), over the limit of 262144"
    odd = tmp_path / "odd.png"
    Image.new("RGB", (100, 64), "white").save(odd)
    message = error_of(handlers.img2img, PROMPT, image=str(odd), steps=4, progress=Progress())
    assert "the input image is 100×64" in message and "Choose a size to resize it to" in message


def test_stop_ends_the_run_within_one_step(handlers):
    seen = []

    def on_step(step, total):
        seen.append(step)
        if step == 3:
            assert handlers.stop(wait_s=0) == "Stopping at the end of the current step…"

    gallery, status, parameters, seed = handlers.text2img(
        PROMPT, width=64, height=64, steps=50, progress=Progress(on_step)
    ) + (None,)
    assert (gallery, parameters) == ([], {}) and status == "Stopped (base step 3 of 50); nothing was kept."
    assert seen == [1, 2, 3]
    assert handlers.stop(wait_s=0) == "Nothing was running."


def test_stop_from_another_thread_reports_where_it_stopped(runtime, tmp_path):
    handlers = DemoHandlers(runtime, DemoLimits(max_steps=200), tmp_path)
    started = threading.Event()
    result = {}

    def run():
        try:
            result["out"] = handlers.text2img(
                PROMPT, width=256, height=256, steps=200, progress=Progress(lambda step, total: started.set())
            )
        except Exception as exc:  # shown by the assertion below
            result["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(60), result
    message = handlers.stop(wait_s=30)
    worker.join(30)
    assert not worker.is_alive()
    assert re.fullmatch(r"Stopped \(base step \d+ of 200\); nothing was kept\.", message)
    assert result["out"][1] == message


def test_model_without_refiner_says_so(tiny_model, tmp_path):
    from ov_sdxl import SDXLRuntime
    from ov_sdxl.demo import build_demo

    copy = tmp_path / "base-only"
    shutil.copytree(tiny_model / "base", copy)
    runtime = SDXLRuntime.from_dir(copy, precision="f32", use_cache=False)
    handlers = DemoHandlers(runtime, DemoLimits(), tmp_path / "out")
    for mode in ("Text to image + refiner", "Refine an image"):
        message = error_of(
            functools.partial(generate, handlers), mode, PROMPT, image=None, progress=Progress(), **SMALL
        )
        assert (
            "this model has no refiner" in message and "--refiner stabilityai/stable-diffusion-xl-refiner" in message
        )
    config = build_demo(runtime, output_dir=tmp_path / "out2").get_config_file()
    texts = [c["props"].get("value") for c in config["components"] if c["type"] == "markdown"]
    assert any("base only (no refiner)" in (t or "") for t in texts)
    assert any("This model has no refiner" in (t or "") for t in texts)


def test_taesdxl_decodes_and_previews_at_half_size(tiny_model, ov_cache, tmp_path):
    from ov_sdxl import SDXLRuntime
    from ov_sdxl.demo import build_demo

    runtime = SDXLRuntime.from_dir(tiny_model, precision="f32", cache_dir=ov_cache, vae="taesdxl")
    handlers = DemoHandlers(runtime, DemoLimits(), tmp_path / "out")
    gallery, _, parameters, _ = generate(handlers, "Text to image", PROMPT, progress=Progress(), **SMALL)
    assert parameters["vae"] == "taesdxl" and len(gallery) == 1
    sizes = {image.size for previews, *_ in generate.previews for image, _ in previews}
    assert sizes == {(64, 48)}  # TAESDXL's previews: half the image's side
    config = build_demo(runtime, output_dir=tmp_path / "out2").get_config_file()
    texts = [c["props"].get("value") or "" for c in config["components"] if c["type"] == "markdown"]
    assert any("decoded by **TAESDXL**" in text for text in texts)


def test_old_outputs_are_pruned(runtime, tmp_path):
    handlers = DemoHandlers(runtime, DemoLimits(output_ttl_s=60, max_kept_runs=3), tmp_path)
    for i in range(5):
        (tmp_path / f"run-{i}").mkdir()
        os.utime(tmp_path / f"run-{i}", (time.time() - 10 + i, time.time() - 10 + i))
    os.utime(tmp_path / "run-4", (time.time() - 120, time.time() - 120))  # older than its time to live
    handlers.prune()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-2", "run-3"]  # room for the next run


def test_form_checks():
    assert parse_seed("random") is None and parse_seed(" 42 ") == 42 and parse_seed(-1) is None
    assert parse_seed(str(2**64 - 1)) == 2**64 - 1  # text: no float rounding of large seeds
    assert whole("steps", 30.0) == 30
    with pytest.raises(ConfigError, match="demo limit max_queue 0 must be a whole number >= 1"):
        DemoLimits(max_queue=0)


def test_empty_prompt_is_refused_and_the_box_shows_a_hint(handlers, runtime, tmp_path):
    """An empty prompt is refused before anything runs (the page, and the API); the empty box shows a hint that
    reads as one, not a prompt that looks typed in."""
    from ov_sdxl.demo import build_demo

    empty = "the prompt is empty: describe the picture you want (the negative prompt may stay empty)"
    for prompt in ("", "   \n"):
        progress = Progress()
        assert error_of(functools.partial(generate, handlers), "Text to image", prompt, progress=progress) == empty
        assert progress.calls == []  # refused before the model was touched
        assert error_of(handlers.refine, prompt, image=None, steps=2, progress=progress) == empty
    config = build_demo(runtime, output_dir=tmp_path).get_config_file()
    boxes = {c["props"]["label"]: c["props"] for c in config["components"] if c["type"] == "textbox"}
    prompt, negative = boxes["Prompt"], boxes["Negative prompt"]
    assert not prompt.get("value") and prompt["placeholder"].startswith("Describe the picture you want, e.g. ")
    assert not negative.get("value") and negative["placeholder"].startswith("Optional: what to keep out of it")


def test_one_progress_bar(runtime, tmp_path):
    """Gradio draws the progress bar on every output of an event unless told where: the gallery only, for the
    Generate button and for each API endpoint."""
    from ov_sdxl.demo import build_demo

    config = build_demo(runtime, output_dir=tmp_path).get_config_file()
    (gallery,) = [c["id"] for c in config["components"] if c["props"].get("elem_id") == "gallery"]
    generating = [d for d in config["dependencies"] if d["api_name"] in ("generate", "text2img", "img2img")]
    generating += [d for d in config["dependencies"] if d["api_name"] in ("base_refiner", "refine")]
    assert len(generating) == 5
    for dependency in generating:
        assert len(dependency["outputs"]) >= 3 and dependency["show_progress_on"] == [gallery], dependency["api_name"]


def test_stages_in_the_users_words(runtime, handlers, start_image):
    """Every stage the runtime reports steps of and every part it times, in every mode, has words on the page; the
    status line and the progress bar show those words, never a key such as base_decode."""
    stages, timed = set(), set()
    repaint = {Mode.INPAINT: {"mask": start_image, "refine_strength": 0.5}}  # the refiner's pass: its stages too
    repaint[Mode.OUTPAINT] = {"expand": (8, 0, 0, 0), "inpaint_area": "masked"}
    for mode in Mode:
        image, keep = (start_image if mode.needs_image else None), mode is Mode.BASE_REFINER
        extra = {"keep_base_images": keep, **repaint.get(mode, {})}
        params = GenerationParams(PROMPT, mode, image=image, width=64, height=64, steps=4, **extra)
        timed |= set(runtime.generate(params, progress=lambda stage, step, total: stages.add(stage)).timings)
    keys = stages | timed
    assert {"base", "refiner", "base_decode", "decode", "total"} <= keys <= set(STAGES)
    progress = Progress()
    _, status, _, _ = generate(
        handlers,
        "Text to image + refiner",
        PROMPT,
        seed="3",
        high_noise_frac=0.5,
        progress=progress,
        **{**SMALL, "steps": 4.0},
    )
    assert re.fullmatch(
        r"Done: seed 3, 128×96 \(base [\d.]+ s, decoding the base's image [\d.]+ s, refiner [\d.]+ s, "
        r"decoding [\d.]+ s, in all [\d.]+ s\)\. The PNGs carry their parameters\.",
        status,
    ), status
    assert [desc for _, desc in progress.calls[1:]] == [
        "base: step 1 of 2",
        "base: step 2 of 2",
        "refiner: step 1 of 2",
        "refiner: step 2 of 2",
    ]


# -- a live server on 127.0.0.1, driven with gradio_client -----------------------------------------------------
@pytest.fixture(scope="module")
def server(runtime, tmp_path_factory):
    from ov_sdxl.demo import build_demo, launch_demo

    limits = DemoLimits(max_queue=1, max_file_size=8_000_000, max_upload_pixels=1024 * 1024, max_steps=200)
    demo = build_demo(runtime, limits=limits, output_dir=tmp_path_factory.mktemp("demo-served"))
    url = launch_demo(demo, port=free_port(), limits=limits)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False, httpx_kwargs={"timeout": 60})


def predict(client, **kwargs):
    return client.submit(**kwargs).result(timeout=120)


@pytest.mark.slow
def test_documented_api_example_with_every_default(server):
    """docs/demo.md's gradio_client example, as written (only the URL is this server's): /text2img with nothing but
    the prompt runs 30 steps at the model's native size (512×512 for the tiny model)."""
    assert re.findall(r"```python\n(.*?)```", demo_page(), flags=re.S) == [README_API_EXAMPLE]
    namespace = {}
    exec(README_API_EXAMPLE.replace("http://127.0.0.1:7860/", server), namespace)  # noqa: S102 - our own text
    image = Image.open(namespace["images"][0]["image"])
    assert image.size == (512, 512) and image.text["steps"] == "30" and image.text["guidance"] == "5.0"
    assert image.text["scheduler"] == "euler" and namespace["status"].startswith("Done")
    refined = Image.open(namespace["refined"][0]["image"])
    assert refined.size == (512, 512) and refined.text["mode"] == "refine" and refined.text["strength"] == "0.3"


def test_every_endpoint_over_http(client, tmp_path):
    gallery, status, parameters = predict(
        client, prompt=PROMPT, width=128, height=96, steps=3, seed=9, api_name="/text2img"
    )
    downloaded = Image.open(gallery[0]["image"])  # what a browser download gets: the PNG with its parameters
    assert downloaded.size == (128, 96) and downloaded.text["seed"] == "9" and downloaded.text["prompt"] == PROMPT
    source = tmp_path / "source.png"
    downloaded.save(source)
    gallery, _, parameters = predict(client, prompt=PROMPT, width=128, height=96, steps=4, api_name="/base_refiner")
    assert [item["caption"] for item in gallery] == ["1: base, handed off at 0.8", "1: refined"]
    assert Image.open(gallery[1]["image"]).text["mode"] == "base+refiner"
    for name, strength in (("/img2img", "0.6"), ("/refine", "0.3")):
        gallery, _, parameters = predict(client, prompt=PROMPT, image=handle_file(str(source)), steps=4, api_name=name)
        assert Image.open(gallery[0]["image"]).size == (128, 96) and parameters["strength"] == strength


def test_errors_over_http_are_one_readable_line(client, tmp_path):
    with pytest.raises(AppError, match="width 100 must be a whole number of pixels, at least 64 and a multiple of 8"):
        predict(client, prompt=PROMPT, width=100, height=96, steps=2, api_name="/text2img")
    with pytest.raises(AppError, match="this mode needs an input image: upload one"):
        predict(client, prompt=PROMPT, steps=2, api_name="/img2img")
    not_png = tmp_path / "notes.png"
    not_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)  # a PNG signature and nothing readable after it
    with pytest.raises(AppError, match=r"the uploaded image \(notes.png\) cannot be decoded|is not an image PIL"):
        predict(client, prompt=PROMPT, image=handle_file(str(not_png)), steps=2, api_name="/refine")


def test_uploads_over_the_byte_limit_are_refused(server, client, tmp_path):
    import httpx

    noisy = tmp_path / "noisy.png"
    Image.frombytes("RGB", (2000, 2000), os.urandom(2000 * 2000 * 3)).save(noisy)  # ~12 MB, over the 8 MB limit
    with pytest.raises(ValueError, match="exceeds the maximum file size of 8000000 bytes"):  # the client checks
        predict(client, prompt=PROMPT, image=handle_file(str(noisy)), steps=2, api_name="/img2img")
    with noisy.open("rb") as file:  # and so does the server, for anyone who does not ask first
        response = httpx.post(f"{server}gradio_api/upload", files={"files": file}, timeout=60)
    assert response.status_code == 413, response.text


def test_only_the_apps_own_files_are_served(server):
    import httpx

    for path in ("/etc/passwd", str(ROOT / "README.md"), str(ROOT / "ov_sdxl" / "demo" / "app.py")):
        response = httpx.get(f"{server}gradio_api/file={path}", timeout=10)
        assert response.status_code in (403, 404), (path, response.status_code)
    evil = httpx.get(f"{server}gradio_api/info", headers={"Origin": "http://evil.example"}, timeout=10)
    assert evil.headers.get("access-control-allow-origin") not in ("*", "http://evil.example")


@pytest.mark.slow
def test_full_queue_answers_busy(client, server):
    from gradio_client.utils import QueueError, Status

    long = client.submit(prompt=PROMPT, width=256, height=256, steps=200, api_name="/text2img")
    deadline = time.monotonic() + 60
    while long.status().code != Status.PROGRESS and time.monotonic() < deadline:  # its steps have begun
        time.sleep(0.05)
    waiting = Client(server, verbose=False).submit(prompt=PROMPT, width=64, height=64, steps=2, api_name="/text2img")
    while waiting.status().code != Status.IN_QUEUE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not long.done(), "the long run ended before the queue filled; raise its steps"
    with pytest.raises(QueueError, match="Queue is full"):
        Client(server, verbose=False).predict(prompt=PROMPT, width=64, height=64, steps=2, api_name="/text2img")
    assert long.result(timeout=120)[1].startswith("Done") and waiting.result(timeout=120)[1].startswith("Done")


def test_run_demo_puts_everything_back(runtime, tmp_path, monkeypatch):
    """In this process: SIGTERM ends ``run_demo`` as Ctrl-C does, while a SIGHUP the process ignores (nohup) stays
    ignored; afterwards the demo's folder is gone, and GRADIO_TEMP_DIR and the signal handlers are as they were."""
    import tempfile

    from ov_sdxl.demo import run_demo

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp puts the demo's folder
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "yours"))
    received = []

    def ours(
        signum, frame
    ):  # the handler from before run_demo: should it get SIGTERM, run_demo ends, and the test fails
        received.append(signum)
        raise RuntimeError("SIGTERM reached the handler from before run_demo")

    before = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, ours),
        signal.SIGHUP: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    }
    lines, seen = [], {}

    def announce(line):
        lines.append(line)
        if line.startswith("demo running on"):
            (folder,) = tmp_path.glob("ov-sdxl-demo-*")
            seen.update(folder=folder, gradio=os.environ["GRADIO_TEMP_DIR"], made=list(folder.iterdir()))
            os.kill(os.getpid(), signal.SIGHUP)  # ignored
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        run_demo(runtime, port=free_port(), announce=announce)
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == (ours, signal.SIG_IGN)
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
    assert lines[-1] == "demo stopped (SIGTERM); its images and uploads are deleted" and received == []
    assert seen["gradio"] == str(seen["folder"] / "gradio") and seen["folder"] / "images" in seen["made"]
    assert list(tmp_path.iterdir()) == [] and os.environ["GRADIO_TEMP_DIR"] == str(tmp_path / "yours")


# -- the command ---------------------------------------------------------------------------------------------------
def as_from_a_terminal() -> None:
    """Ctrl-C and SIGHUP as a terminal gives them: a suite started in the background without job control (or under
    nohup) passes them on ignored, and the demo rightly leaves an ignored signal ignored (test_interrupts.start)."""
    for stop in (signal.SIGINT, signal.SIGHUP):
        signal.signal(stop, signal.SIG_DFL)


def start_cli(args: list[str], env: dict, cwd: Path) -> tuple[subprocess.Popen, str]:
    """Run ``ov-sdxl <args>`` and return the process and the URL it prints (waits at most 5 minutes)."""
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "ov-sdxl"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    lines, deadline = [], time.monotonic() + 300
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        found = re.search(r"demo running on (http://\S+)", line)
        if found:
            return process, found.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError("no URL printed:\n" + "".join(lines))


def stop_cli(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.fixture
def cli_env(tmp_path):
    (tmp_path / "tmp").mkdir()
    return {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path / "tmp"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }


@pytest.mark.slow
def test_cli_demo_commands(tiny_model, tmp_path, cli_env):
    """The README's demo commands: without --model the tiny model (built on first use, here already in the cache
    folder as the same builder leaves it) with its notice; a missing model folder is refused; the generated files
    are gone once the demo stops."""
    assert set(re.findall(r"^(ov-sdxl demo.*)$", demo_page(), flags=re.M)) == set(README_COMMANDS)
    shutil.copytree(tiny_model, tmp_path / "home" / ".cache" / "ov-sdxl" / "tiny")
    port = free_port()
    process, url = start_cli([*README_COMMANDS[0].split()[1:], "--port", str(port)], cli_env, tmp_path)
    try:
        assert url == f"http://127.0.0.1:{port}/"
        client = Client(url, verbose=False)
        notice = [c["props"].get("value") or "" for c in client.config["components"] if c["type"] == "markdown"]
        assert any("tiny offline test model" in text and "python convert.py --base" in text for text in notice)
        gallery, status, _ = client.submit(prompt=PROMPT, width=64, height=64, steps=2, api_name="/text2img").result(
            timeout=120
        )
        assert Image.open(gallery[0]["image"]).size == (64, 64)
        assert list((tmp_path / "tmp").glob("ov-sdxl-demo-*/images/*/*.png"))  # the run's own folder
        assert list((tmp_path / "tmp").glob("ov-sdxl-demo-*/gradio/*/*.png"))  # Gradio's copy, in the demo's folder
        busy_port = subprocess.run(
            [str(Path(sys.executable).parent / "ov-sdxl"), "demo", "--port", str(port)],
            cwd=tmp_path,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert busy_port.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy_port.stderr
    finally:
        stop_cli(process)
    assert not list((tmp_path / "tmp").glob("ov-sdxl-demo-*")) and not (tmp_path / "tmp" / "gradio").exists()
    (tmp_path / "models").mkdir()
    missing = subprocess.run(
        README_COMMANDS[1].split(),
        cwd=tmp_path,
        env={**cli_env, "PATH": f"{Path(sys.executable).parent}:" + os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "models/sdxl does not exist; convert one with" in missing.stderr


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_cli_demo_stopped_by_a_signal_leaves_no_file(tiny_model, tmp_path, cli_env, stop):
    """`kill` (SIGTERM) and a closed terminal (SIGHUP) stop the demo as Ctrl-C does, a run in flight included: exit
    0, and nothing left in the temporary folder, neither the PNGs nor Gradio's copies of them and of the upload."""
    tmp = tmp_path / "tmp"
    upload = tmp_path / "upload.png"
    Image.new("RGB", (64, 64), (20, 120, 200)).save(upload)
    process, url = start_cli(["demo", "--model", str(tiny_model), "--port", str(free_port())], cli_env, tmp_path)
    try:
        client = Client(url, verbose=False, httpx_kwargs={"timeout": 60})
        sent = handle_file(str(upload))
        gallery, status, _ = predict(client, prompt=PROMPT, image=sent, steps=2, api_name="/img2img")
        assert status.startswith("Done") and Image.open(gallery[0]["image"]).size == (64, 64)
        (folder,) = tmp.glob("ov-sdxl-demo-*")
        assert list(folder.glob("images/*/image.png")) and list(folder.glob("gradio/*/image.png"))
        assert list(folder.glob("gradio/*/upload.png")) and not (tmp / "gradio").exists()
        running = client.submit(prompt=PROMPT, width=256, height=256, steps=100, api_name="/text2img")
        deadline = time.monotonic() + 120
        while running.status().code.name != "PROGRESS" and time.monotonic() < deadline:  # its steps have begun
            time.sleep(0.05)
        assert not running.done()
        process.send_signal(stop)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out
    assert out.strip().splitlines()[-1] == f"demo stopped ({stop.name}); its images and uploads are deleted", out
    assert not folder.exists() and not (tmp / "gradio").exists(), sorted(map(str, tmp.rglob("*")))


# -- load: clients at once, against the command's server in its own process ------------------------------------
@pytest.fixture(scope="module")
def load_server(tiny_model, tmp_path_factory):
    import psutil

    home = tmp_path_factory.mktemp("load")
    env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    process, url = start_cli(
        ["demo", "--model", str(tiny_model), "--port", str(free_port()), "--max-queue", "4"], env, home
    )
    yield url, psutil.Process(process.pid)
    stop_cli(process)


def one_request(url: str) -> tuple[str, float]:
    """'image' or 'busy', and the seconds it took; any other outcome fails the test."""
    from gradio_client.utils import QueueError

    started = time.monotonic()
    try:
        gallery, _, _ = (
            Client(url, verbose=False)
            .submit(prompt=PROMPT, width=64, height=64, steps=2, api_name="/text2img")
            .result(timeout=120)
        )
    except QueueError as exc:
        assert "Queue is full" in str(exc)
        return "busy", time.monotonic() - started
    assert Image.open(gallery[0]["image"]).size == (64, 64)
    return "image", time.monotonic() - started


def load_run(url: str, clients: int, requests: int) -> dict:
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(lambda _: one_request(url), range(requests), timeout=600))
    kinds = [kind for kind, _ in outcomes]
    return {
        "requests": requests,
        "clients": clients,
        "images": kinds.count("image"),
        "busy": kinds.count("busy"),
        "max_latency_s": round(max(seconds for _, seconds in outcomes), 2),
        "wall_s": round(time.monotonic() - started, 2),
    }


@pytest.mark.slow
def test_load_8_clients_at_once(load_server):
    url, server = load_server
    assert one_request(url)[0] == "image"
    figures = load_run(url, clients=8, requests=8)
    print("load, 8 clients:", figures)
    assert figures["images"] + figures["busy"] == 8 and figures["images"] >= 1
    assert server.is_running() and one_request(url)[0] == "image"


@pytest.mark.slow
def test_load_10_clients_50_requests_memory_stays_flat(load_server):
    url, server = load_server
    assert one_request(url)[0] == "image"
    rss_first = server.memory_info().rss
    figures = load_run(url, clients=10, requests=50)
    rss_after = server.memory_info().rss
    figures.update(rss_first_mb=rss_first // 2**20, rss_after_mb=rss_after // 2**20)
    print("load, 10 clients, 50 requests:", figures)
    (Path(os.environ.get("OV_SDXL_LOAD_REPORT", "/tmp/ov-sdxl-demo-load.txt"))).write_text(f"{figures}\n")
    assert figures["images"] + figures["busy"] == 50 and figures["images"] >= 5
    assert figures["wall_s"] < 600 and server.is_running() and one_request(url)[0] == "image"
    assert rss_after <= 1.1 * rss_first, figures


# -- inpaint and outpaint -------------------------------------------------------------------------------------------
def test_inpaint_tab_uses_the_painted_strokes_as_the_mask(handlers, tmp_path, start_image):
    """The image editor's value: the upload as background, the brush strokes on a transparent layer (any colour):
    the same image as the runtime's inpaint with a white mask over the strokes."""
    start_image.save(tmp_path / "photo.png")
    layer = Image.new("RGBA", (128, 96), (0, 0, 0, 0))
    layer.paste((255, 51, 102, 255), (40, 24, 88, 72))  # a stroke of the brush's colour
    layer.save(tmp_path / "layer.png")
    editor = {"background": str(tmp_path / "photo.png"), "layers": [str(tmp_path / "layer.png")], "composite": None}
    gallery, status, parameters, _ = generate(
        handlers, "Inpaint", PROMPT, editor=editor, size=INPUT_SIZE, steps=3.0, seed="4", mask_blur=2.0
    )
    mask = Image.new("L", (128, 96), 0)
    mask.paste(255, (40, 24, 88, 72))
    expected = handlers.runtime.inpaint(PROMPT, image=start_image, mask=mask, steps=3, seed=4, mask_blur=2)
    painted = Image.open(gallery[0][0])
    assert painted.size == (128, 96) and painted.text["mode"] == "inpaint" and parameters["mask_blur"] == "2"
    assert mean_abs_diff(painted, expected.images[0]) == 0
    message = error_of(lambda: list(handlers.generate("Inpaint", PROMPT, editor={**editor, "layers": []})))
    assert message == NO_MASK


def test_inpaint_and_outpaint_endpoints(client, tmp_path, start_image):
    start_image.save(tmp_path / "photo.png")
    mask = Image.new("RGBA", (128, 96), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (40, 24, 88, 72))  # OpenAI's convention: transparent = repaint
    mask.save(tmp_path / "mask.png")
    photo, alpha = handle_file(str(tmp_path / "photo.png")), handle_file(str(tmp_path / "mask.png"))
    masked = {"inpaint_area": "masked", "width": 64, "height": 64}
    gallery, _, parameters = predict(
        client, prompt=PROMPT, image=photo, mask=alpha, steps=3, api_name="/inpaint", **masked
    )
    repaired = Image.open(gallery[0]["image"])
    assert repaired.size == (128, 96) and parameters["inpaint_area"] == "masked" and parameters["strength"] == "0.99"
    wider = {"expand_left": 16, "expand_bottom": 8, "fill": "noise"}
    gallery, _, parameters = predict(client, prompt=PROMPT, image=photo, steps=3, api_name="/outpaint", **wider)
    assert Image.open(gallery[0]["image"]).size == (144, 104) and parameters["fill"] == "noise"
    gallery, status, parameters = predict(
        client, prompt=PROMPT, image=photo, mask=alpha, steps=4, refiner_frac=0.5, api_name="/inpaint"
    )
    assert parameters["refiner_frac"] == "0.5" and "refiner" in status  # the refiner finished the inpainting
    with pytest.raises(AppError, match="each side a multiple of 8 pixels"):
        predict(client, prompt=PROMPT, image=photo, expand_left=12, steps=2, api_name="/outpaint")

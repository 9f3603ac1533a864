"""The Gradio demo: one page and six API endpoints on one ``SDXLRuntime``; launching is kept separate.

    from ov_sdxl import SDXLRuntime
    from ov_sdxl.demo import build_demo, launch_demo
    demo = build_demo(SDXLRuntime.from_dir("models/sdxl", device="CPU"))
    url = launch_demo(demo, host="127.0.0.1", port=7860)     # returns at once; demo.block_thread() to wait

    from gradio_client import Client
    Client(url).predict(prompt="a lighthouse at dusk", api_name="/text2img")   # also /base_refiner, /img2img, /refine,
                                                                                 # /inpaint, /outpaint

Serving: every generate event shares one queue slot (pipelines are not thread-safe); the queue holds at most
``limits.max_queue`` requests and answers the rest "busy, try again"; uploads are limited in bytes and pixels;
generated files are deleted after ``limits.output_ttl_s``; only Gradio's own cache is served (no allowed_paths),
and Gradio's host and CORS checks stay on. ``ov-sdxl demo`` is the command line for all this.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from ov_sdxl.config import DEFAULT_HIGH_NOISE_FRAC, DEFAULT_STRENGTH, Mode
from ov_sdxl.demo.handlers import DemoHandlers
from ov_sdxl.demo.inputs import (
    CONVERT_COMMAND,
    CUSTOM_SIZE,
    INPUT_SIZE,
    MODEL_SCHEDULER,
    MODES,
    NEGATIVE_HINT,
    PROMPT_HINT,
    RANDOM_SEED,
    SIZE_PRESETS,
    DemoLimits,
    size_label,
)
from ov_sdxl.demo.repaint import EXPAND, REFINER
from ov_sdxl.repaint import DEFAULT_MASK_BLUR, DEFAULT_MASKED_PADDING, InpaintArea, OutpaintFill
from ov_sdxl.schedulers import SCHEDULERS

log = logging.getLogger(__name__)

QUEUE = "generate"  # the one concurrency group of every event that runs the pipelines
EXAMPLES = [
    "a lighthouse at dusk, oil painting",
    "a red fox in fresh snow, morning light, photograph",
    "an astronaut riding a horse on the moon, detailed illustration",
    "a bowl of ramen on a wooden table, studio photo",
]


def _size_choices(mode: Mode, native: tuple[int, int]) -> list[str]:
    presets = [size_label(*p) for p in SIZE_PRESETS]
    if size_label(*native) not in presets:
        presets.insert(0, size_label(*native))
    return [INPUT_SIZE, *presets, CUSTOM_SIZE] if mode.needs_image else [*presets, CUSTOM_SIZE]


def build_demo(
    runtime: Any,
    *,
    notice: str | None = None,
    limits: DemoLimits | None = None,
    output_dir: str | Path | None = None,
    handlers: DemoHandlers | None = None,
) -> gr.Blocks:
    """The page and the API of ``runtime``; ``notice`` is shown above everything (e.g. the tiny model's).

    The images go to ``output_dir`` (default: a new temporary folder), or ``handlers`` (on the same runtime and
    limits) answer the events, so that whoever passes them can stop their runs (session.py)."""
    limits = limits or DemoLimits()
    if handlers is None:
        output_dir = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="ov-sdxl-demo-"))
        handlers = DemoHandlers(runtime, limits, output_dir)
    native, has_refiner, defaults = runtime.native_size, runtime.has_refiner, runtime.defaults
    sweep = (min(600, limits.output_ttl_s), limits.output_ttl_s)
    with gr.Blocks(title="ov-sdxl", analytics_enabled=False, delete_cache=sweep) as demo:
        if notice:
            gr.Markdown(notice, elem_id="notice")
        refiner = "base + refiner" if has_refiner else "base only (no refiner)"
        gr.Markdown(
            f"## Stable Diffusion XL on OpenVINO\nModel `{runtime.layout.root}` ({refiner}) on device "
            f"**{runtime.config.device}**, native size {size_label(*native)}, preset **{runtime.preset.preset.value}**"
            f"{_guidance_note(runtime.preset)}." + _few_step_line(runtime.model_info),
            elem_id="model-info",
        )
        if runtime.embeddings or runtime.config.watermark or runtime.tiny_decoder is not None:
            gr.Markdown(_extras_text(runtime), elem_id="extras")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=3, placeholder=PROMPT_HINT)
                negative = gr.Textbox(label="Negative prompt", placeholder=NEGATIVE_HINT)
                mode = gr.Radio(list(MODES), value="Text to image", label="Mode")
                no_refiner = gr.Markdown(
                    f"**This model has no refiner**, so this mode is not available. Convert one with it:  \n"
                    f"`{CONVERT_COMMAND}`",
                    visible=False,
                    elem_id="no-refiner",
                )
                image = gr.Image(label="Input image", type="filepath", sources=["upload", "clipboard"], visible=False)
                editor = gr.ImageEditor(
                    label="Input image: paint over the part to repaint",
                    type="filepath",
                    sources=["upload", "clipboard"],
                    brush=gr.Brush(colors=["#ff3366"], color_mode="fixed", default_size=24),
                    layers=False,
                    transforms=(),
                    format="png",
                    visible=False,
                    elem_id="inpaint-editor",
                )
                repaint = _repaint_options(has_refiner)
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
                size = gr.Dropdown(_size_choices(Mode.TEXT2IMG, native), value=size_label(*native), label="Size")
                with gr.Row(visible=False) as custom:
                    width = gr.Number(native[0], label="Width", step=8, minimum=64, maximum=limits.max_side)
                    height = gr.Number(native[1], label="Height", step=8, minimum=64, maximum=limits.max_side)
                steps = gr.Slider(1, limits.max_steps, value=defaults["steps"], step=1, label="Steps")
                guidance = gr.Slider(0, 20, value=defaults["guidance"], step=0.5, label="Guidance")
                strength = gr.Slider(0.05, 1, value=0.6, step=0.05, label="Strength", visible=False)
                fraction = gr.Slider(
                    0.05,
                    0.95,
                    value=DEFAULT_HIGH_NOISE_FRAC,
                    step=0.05,
                    label="Hand-off to the refiner",
                    info="the fraction of the steps the base runs",
                    visible=False,
                )
                with gr.Row():
                    seed = gr.Textbox(RANDOM_SEED, label="Seed", info="a whole number, or 'random'", scale=2)
                    random_seed = gr.Button("Random", scale=1)
                    reuse_seed = gr.Button("Reuse last", scale=1)
                scheduler = gr.Dropdown([MODEL_SCHEDULER, *SCHEDULERS], value=MODEL_SCHEDULER, label="Scheduler")
                num_images = gr.Slider(1, limits.max_num_images, value=1, step=1, label="Number of images")
                reuse = gr.Slider(
                    1,
                    10,
                    value=runtime.preset.cache_interval,
                    step=1,
                    label="Feature reuse",
                    info="the whole UNet every N steps, its outer layers between (DeepCache); 1: off, the exact path",
                )
                gr.Examples([[e] for e in EXAMPLES], inputs=[prompt], label="Example prompts")
            with gr.Column():
                gallery = gr.Gallery(label="Images", columns=2, format="png", height="auto", elem_id="gallery")
                status = gr.Markdown(label="status", elem_id="status")
                parameters = gr.JSON(label="parameters")
        last_seed = gr.State(None)

        def on_mode(label: str) -> tuple:
            chosen = MODES[label]
            return (
                gr.update(visible=chosen.needs_image and chosen is not Mode.INPAINT),
                gr.update(visible=chosen is Mode.INPAINT),
                gr.update(visible=chosen is Mode.INPAINT),
                gr.update(visible=chosen.repaints),
                gr.update(visible=chosen is Mode.OUTPAINT),
                gr.update(visible=chosen.needs_image, value=DEFAULT_STRENGTH.get(chosen, 0.6)),
                gr.update(visible=chosen is Mode.BASE_REFINER),
                gr.update(visible=chosen.needs_refiner and not has_refiner),
                gr.update(
                    choices=_size_choices(chosen, native),
                    value=INPUT_SIZE if chosen.needs_image else size_label(*native),
                ),
            )

        ui = {"queue": False, "api_visibility": "private"}
        shown = [image, editor, repaint["mask"], repaint["box"], repaint["outpaint"]]
        mode.change(on_mode, mode, [*shown, strength, fraction, no_refiner, size], **ui)
        size.change(lambda choice: gr.update(visible=choice == CUSTOM_SIZE), size, custom, **ui)
        random_seed.click(lambda: RANDOM_SEED, None, seed, **ui)
        reuse_seed.click(lambda last: last if last is not None else RANDOM_SEED, last_seed, seed, **ui)
        form = [mode, prompt, negative, image, size, width, height, steps, guidance, strength, fraction, seed]
        run = gr.on(
            [generate.click, prompt.submit],
            handlers.generate,
            [*form, scheduler, num_images, reuse, editor, *(repaint[name] for name in REPAINT_INPUTS)],
            [gallery, status, parameters, last_seed],
            concurrency_id=QUEUE,
            concurrency_limit=1,
            api_visibility="private",
            show_progress_on=gallery,  # one progress bar: Gradio would draw it on every output
        )
        stop.click(handlers.stop, None, status, cancels=[run], **ui)
        _api_endpoints(handlers, native, defaults, [gallery, status, parameters])
    demo.queue(max_size=limits.max_queue, default_concurrency_limit=1, api_open=False)
    return demo


REPAINT_INPUTS = ("mask", "mask_blur", "inpaint_area", "masked_padding", *EXPAND, "fill", *REFINER)  # generate()'s


def _repaint_options(has_refiner: bool) -> dict[str, Any]:
    """The Inpaint and Outpaint options, hidden until their mode is chosen: an uploaded mask, the mask's blur, the
    area generated, the refiner's part (when the model has one), and the four expand sliders with the fill."""
    found: dict[str, Any] = {}
    found["mask"] = gr.Image(
        label="Mask (optional, instead of painting): white = repaint",
        type="filepath",
        sources=["upload"],
        image_mode=None,  # the file's own, so that an alpha mask keeps its alpha
        visible=False,
    )
    with gr.Group(visible=False) as found["box"]:
        found["mask_blur"] = gr.Slider(0, 64, value=DEFAULT_MASK_BLUR, step=1, label="Mask blur (pixels)")
        found["inpaint_area"] = gr.Radio(
            [area.value for area in InpaintArea],
            value=InpaintArea.WHOLE.value,
            label="Area generated",
            info="masked: only the mask's surroundings, at the size chosen below (Input image size: the model's), "
            "pasted back",
        )
        found["masked_padding"] = gr.Slider(
            0, 256, value=DEFAULT_MASKED_PADDING, step=8, label="Pixels kept around the mask (area: masked)"
        )
        with gr.Row(visible=has_refiner):
            found["refiner_frac"] = gr.Slider(
                0, 0.95, value=0, step=0.05, label="Refiner finishes from", info="0: the base alone"
            )
            found["refine_strength"] = gr.Slider(
                0, 1, value=0, step=0.05, label="Then refine the repainted part", info="strength; 0: no"
            )
    with gr.Group(visible=False) as found["outpaint"]:
        with gr.Row():
            for name in EXPAND:
                found[name] = gr.Slider(0, 1024, value=0, step=8, label=f"Add {name.split('_')[1]} (pixels)")
        found["fill"] = gr.Radio(
            [fill.value for fill in OutpaintFill], value=OutpaintFill.EDGE.value, label="New area starts as"
        )
    return found


def _extras_text(runtime: Any) -> str:
    """The textual-inversion tokens a prompt can use, whether images are watermarked, and the decoder."""
    lines = []
    if runtime.tiny_decoder is not None:
        lines.append(
            "Images are decoded by **TAESDXL** (fast, approximate: fine detail is softer than SDXL's VAE); "
            "the previews too, at half the image's side."
        )
    if runtime.embeddings:
        tokens = ", ".join(
            f"`{e.token}`" + (f" ({e.count} vectors)" if e.count > 1 else "") for e in runtime.embeddings
        )
        example = runtime.embeddings[0].token
        lines.append(
            f"**Embeddings** (textual inversion) for the prompts: {tokens}; weights work, e.g. `({example}:1.2)`"
        )
    if runtime.config.watermark:
        lines.append("Every image carries SDXL's **invisible watermark**.")
    return "  \n".join(lines)


def _guidance_note(preset: Any) -> str:
    if preset.guidance_until is None:
        return ""
    return f" (guidance only while the noise level is at least {preset.guidance_until:g})"


def _few_step_line(info: Any) -> str:
    """For a few-step model, what it runs with by default, e.g. "SDXL-Turbo: 4 steps, guidance 0"."""
    if info is None:
        return ""
    return (
        f"  \n**{info.describe()}** (a few-step model: the defaults below are its own, scheduler `{info.scheduler}`)"
    )


def _api_endpoints(handlers: DemoHandlers, native: tuple[int, int], defaults: dict, outputs: list) -> None:
    """/text2img, /base_refiner, /img2img, /refine: hidden inputs whose values are the API's defaults."""
    with gr.Column(visible=False):
        trigger = gr.Button("API", visible=False)
        prompt, negative = gr.Textbox("", label="prompt"), gr.Textbox("", label="negative_prompt")
        width, height = gr.Number(native[0], label="width"), gr.Number(native[1], label="height")
        input_width = gr.Number(None, label="width (default: the input image's)")
        input_height = gr.Number(None, label="height (default: the input image's)")
        steps, guidance = (
            gr.Number(defaults["steps"], label="steps"),
            gr.Number(defaults["guidance"], label="guidance"),
        )
        fraction = gr.Number(DEFAULT_HIGH_NOISE_FRAC, label="high_noise_frac")
        seed = gr.Textbox(RANDOM_SEED, label="seed")
        scheduler = gr.Dropdown([MODEL_SCHEDULER, *SCHEDULERS], value=MODEL_SCHEDULER, label="scheduler")
        num_images = gr.Number(1, label="num_images")
        reuse = gr.Number(None, label="cache_interval (default: the preset's)")
        image = gr.File(type="filepath", file_types=["image"], label="image")  # read by our checks, not PIL in Gradio
        strengths = {m: gr.Number(DEFAULT_STRENGTH[m], label="strength") for m in (Mode.IMG2IMG, Mode.REFINE)}
    common = {"outputs": outputs, "concurrency_id": QUEUE, "concurrency_limit": 1, "show_progress_on": outputs[0]}
    tail = [steps, guidance, seed, scheduler, num_images, reuse]
    trigger.click(handlers.text2img, [prompt, negative, width, height, *tail], api_name="text2img", **common)
    trigger.click(
        handlers.base_refiner,
        [prompt, negative, width, height, steps, guidance, fraction, *tail[2:]],
        api_name="base_refiner",
        **common,
    )
    for name, mode in (("img2img", Mode.IMG2IMG), ("refine", Mode.REFINE)):
        inputs = [prompt, image, negative, strengths[mode], input_width, input_height, *tail]
        trigger.click(getattr(handlers, name), inputs, api_name=name, **common)
    with gr.Column(visible=False):
        mask = gr.File(type="filepath", file_types=["image"], label="mask")
        strength = gr.Number(DEFAULT_STRENGTH[Mode.INPAINT], label="strength")
        blur, padding = gr.Number(None, label="mask_blur"), gr.Number(None, label="masked_padding")
        area, fill = gr.Textbox(InpaintArea.WHOLE.value, label="inpaint_area"), gr.Textbox(None, label="fill")
        expand = [gr.Number(0, label=name) for name in EXPAND]
        refiner = [gr.Number(None, label=name) for name in REFINER]
    inputs = [prompt, image, mask, negative, strength, blur, area, padding, input_width, input_height, *tail[:-1]]
    trigger.click(handlers.inpaint, [*inputs, *refiner], api_name="inpaint", **common)
    inputs = [prompt, image, *expand, fill, negative, strength, blur, *tail[:-1], *refiner]
    trigger.click(handlers.outpaint, inputs, api_name="outpaint", **common)


def launch_demo(
    demo: gr.Blocks,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    limits: DemoLimits | None = None,
) -> str:
    """Start serving in the background and return the local URL (a share link, only with ``share=True``, is
    ``demo.share_url``)."""
    limits = limits or DemoLimits()
    _, local_url, _ = demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=True,
        max_file_size=limits.max_file_size,
        show_error=False,  # gr.Error messages are shown; anything else is "Error", the details stay in the log
        quiet=True,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        footer_links=["api"],
    )
    return local_url

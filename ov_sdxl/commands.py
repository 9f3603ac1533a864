"""What each ``ov-sdxl`` subcommand does, once ``cli.py`` has parsed its arguments.

    from ov_sdxl.commands import COMMANDS
    exit_code = COMMANDS["generate"](args)     # args: the argparse namespace built by ov_sdxl.cli.build_parser()

Each handler turns arguments into the package's configs, calls the API, prints its own results on stdout and
returns the exit code; errors propagate to ``cli.main``, which translates them once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK = 0


def _quiet_loading_bars() -> None:
    """diffusers and transformers draw a bar per file they load or write; conversion reports its own progress."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _convert(args: argparse.Namespace) -> int:
    from ov_sdxl.config import ConvertConfig
    from ov_sdxl.convert import convert_models
    from ov_sdxl.resources import parse_size

    if args.allow_pickle:
        print("warning: --allow-pickle: a .ckpt file can run code when it is loaded; use only files you trust")
    config = ConvertConfig(
        base=args.base,
        refiner=args.refiner,
        output=args.output,
        weights=args.weights,
        overwrite=args.overwrite,
        few_step=args.few_step,
        loras=tuple(args.lora),
        allow_pickle=args.allow_pickle,
        single_file_config=args.single_file_config,
        max_memory=parse_size(args.max_memory) if args.max_memory else None,
        calibration_prompts=args.calibration_prompts,
        calibration_samples=args.calibration_samples,
        taesdxl=args.taesdxl,
    )
    result = convert_models(config)  # the export runs in child processes, which keep their own output quiet
    print(f"{'already converted' if result.skipped else 'converted'}: {result.output}")
    if config.few_step is not None:
        print(f"few-step model, run by default with {config.few_step.describe()} ({config.few_step.scheduler})")
    return EXIT_OK


def _generate(args: argparse.Namespace) -> int:
    from ov_sdxl.config import GenerationParams, RuntimeConfig
    from ov_sdxl.images import load_image, save_images
    from ov_sdxl.outputs import OutputPlan
    from ov_sdxl.parsers import command_line
    from ov_sdxl.runtime import SDXLRuntime

    plan = OutputPlan.check(args.output, args.num_images, overwrite=args.overwrite, make_dirs=args.make_dirs)
    image = load_image(args.image, keep_alpha=True) if args.image is not None else None  # alpha: inpaint masks
    mask = load_image(args.mask, keep_alpha=True) if args.mask is not None else None
    params = GenerationParams.from_options(args, image=image, mask=mask)
    runtime = SDXLRuntime(
        RuntimeConfig(
            max_pixels=args.max_pixels,
            max_steps=args.max_steps,
            max_images=args.max_images,
            model_dir=args.model,
            device=args.device,
            precision=args.precision,
            static_shapes=not args.dynamic_shapes,
            embeddings=tuple(args.embedding),
            watermark=args.watermark,
            preset=args.preset,
            vae=args.vae,
            one_shot=True,  # one request per process: base and refiner never compiled at once
        )
    )
    with _ProgressBar() as bar:
        result = runtime.generate(params, progress=bar.update)
    alone = dict(num_images=None, output=None, overwrite=None, make_dirs=None)  # what makes image i on its own
    metadata = [
        {**result.metadata(i), "regenerate": command_line(args, seed=seed, **alone)}
        for i, seed in enumerate(result.seeds)
    ]
    paths = save_images(result.images, plan, metadata)
    for path, seed in zip(paths, result.seeds, strict=True):
        print(path if len(paths) == 1 else f"{path}  (seed {seed})")
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    used = result.params  # what ran: the model's defaults where nothing was given
    reuse = f", features reused (whole UNet every {used.cache_interval} steps)" if used.cache_interval > 1 else ""
    reuse += ", decoded by TAESDXL" if runtime.tiny_decoder is not None else ""
    print(
        f"seed {result.seed}, {result.width}x{result.height}, {used.steps} steps, guidance {used.guidance:g}, "
        f"preset {runtime.preset.preset.value}{reuse}, {timing}"
    )
    return EXIT_OK


class _ProgressBar:
    """One tqdm bar per denoising stage on stderr."""

    def __enter__(self) -> _ProgressBar:
        self.bar, self.stage = None, None
        return self

    def update(self, stage: str, step: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.bar, self.stage = tqdm(total=total, desc=stage, unit="step", file=sys.stderr), stage
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


def tiny_model_dir() -> Path:
    """Where ``ov-sdxl demo`` without --model keeps the tiny model it builds on first use."""
    return Path.home() / ".cache" / "ov-sdxl" / "tiny"


def _demo(args: argparse.Namespace) -> int:
    from ov_sdxl.config import RuntimeConfig
    from ov_sdxl.demo import DemoLimits
    from ov_sdxl.runtime import SDXLRuntime

    limits = DemoLimits(max_queue=args.max_queue)
    model, notice = args.model, None
    if model is None:
        from ov_sdxl.demo import TINY_NOTICE
        from ov_sdxl.testing import build_tiny_model

        model, notice = tiny_model_dir(), TINY_NOTICE
        print(f"no --model: using the tiny offline test model (random weights) in {model}")
        if not args.debug:
            _quiet_loading_bars()
        build_tiny_model(model)  # about a minute the first time, then nothing
    runtime = SDXLRuntime(
        RuntimeConfig(
            model_dir=model,
            device=args.device,
            embeddings=tuple(args.embedding),
            watermark=args.watermark,
            preset=args.preset,
            vae=args.vae,
        )
    )
    from ov_sdxl.demo import run_demo  # imports Gradio: only this command needs it

    run_demo(
        runtime,
        notice=notice,
        limits=limits,
        host=args.host,
        port=args.port,
        share=args.share,
        announce=lambda line: print(line, flush=True),
    )
    return EXIT_OK


def _tiny(args: argparse.Namespace) -> int:
    from ov_sdxl.testing import build_tiny_model

    if not args.debug:
        _quiet_loading_bars()
    print(f"tiny model ready: {build_tiny_model(args.output, weights=args.weights, overwrite=args.overwrite)}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from ov_sdxl.errors import CorruptModelError
    from ov_sdxl.layout import ModelLayout

    layout = ModelLayout.open(args.model)
    bad = layout.verify()
    if bad:
        raise CorruptModelError(f"{len(bad)} file(s) differ from the manifest: {', '.join(bad)}; reconvert")
    print(f"ok: {len(layout.manifest['files'])} files match {args.model / 'ov_sdxl.json'}")
    return EXIT_OK


def _devices(args: argparse.Namespace) -> int:
    import openvino as ov

    core = ov.Core()
    for device in core.available_devices:
        print(f"{device}\t{core.get_property(device, 'FULL_DEVICE_NAME')}")
    return EXIT_OK


def _schedulers(args: argparse.Namespace) -> int:
    from ov_sdxl.schedulers import SCHEDULERS

    for name, (class_name, settings) in SCHEDULERS.items():
        extra = " ".join(f"{k}={v}" for k, v in settings.items())
        print(f"{name:20} {class_name} {extra}".rstrip())
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    from ov_sdxl.config import GenerationParams
    from ov_sdxl.images import save_images
    from ov_sdxl.outputs import OutputPlan
    from ov_sdxl.runtime import compare_models

    plan = OutputPlan.check(args.output, overwrite=args.overwrite, make_dirs=args.make_dirs)
    params = GenerationParams.from_options(args)
    options = ("device", "precision", "max_pixels", "max_steps", "max_images")
    grid = compare_models(
        args.models, params, args.seeds, runtime_options={name: getattr(args, name) for name in options}
    )
    metadata = {
        **params.to_metadata(),
        "models": " ".join(map(str, args.models)),
        "seeds": " ".join(map(str, args.seeds)),
    }
    (path,) = save_images([grid], plan, metadata)
    print(path)
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from ov_sdxl.bench import generation_command

    return generation_command(args)


def _bench_convert(args: argparse.Namespace) -> int:
    from ov_sdxl.bench import conversion_command

    return conversion_command(args)


COMMANDS = {
    "bench": _bench,
    "bench-convert": _bench_convert,
    "convert": _convert,
    "generate": _generate,
    "demo": _demo,
    "tiny": _tiny,
    "verify": _verify,
    "devices": _devices,
    "schedulers": _schedulers,
    "compare": _compare,
}

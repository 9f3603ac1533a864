"""``ov-sdxl bench``: generation speed and memory of ov-sdxl against its peers, in one run on the same weights.

    ov-sdxl bench --quick                                        # 512x512, 5 steps, every contender
    ov-sdxl bench --mode base+refiner --steps 20 --json bench.json --chart bench.png
    ov-sdxl bench --model models/my-sdxl --torch-source src/base src/refiner --contenders optimum-default ov-sdxl
    ov-sdxl bench --tiny --quick                                  # the tiny model: checks the harness in a minute

Without ``--model`` it builds once the synthetic full-size SDXL 1.0 (the real architectures, random weights:
``ov_sdxl.testing.synthetic``; sources kept in ``--synthetic``, shared with ``bench-convert``) and converts it to
fp16 IR in ``--cache`` (``targets``). Every contender (``contenders.CONTENDERS``) runs in a fresh process of its
own; those with a compiled-model cache run once before, to fill it. The figures, the ratios peer / ov-sdxl, the
machine and the bf16 matmul floor (``floor``) go to a table, ``--json`` and ``--chart`` (``report``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ov_sdxl.bench.contenders import CONTENDERS, ContenderSpec, resolve_contenders
from ov_sdxl.bench.targets import TORCH_SOURCE_HINT, BenchTarget, native_size, prepare_target
from ov_sdxl.config import DEFAULT_GUIDANCE, DEFAULT_HIGH_NOISE_FRAC, GenerationParams
from ov_sdxl.errors import ConfigError, GenerationError
from ov_sdxl.layout import ModelLayout, library_versions
from ov_sdxl.resources import folder_size

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path.home() / ".cache" / "ov-sdxl" / "bench"
DEFAULT_SYNTHETIC = Path.home() / ".cache" / "ov-sdxl" / "synthetic"
PROMPT = "a photo of an astronaut riding a horse on the moon, highly detailed"
STEPS, QUICK_STEPS, QUICK_SIDE, TORCH_STEPS = 20, 5, 512, 5
MODES = ("text2img", "base+refiner")


@dataclass(frozen=True)
class BenchSettings:
    """What every contender generates: the same prompt, seed, size, steps and guidance."""

    mode: str = "text2img"
    width: int = 1024
    height: int = 1024
    steps: int = STEPS
    torch_steps: int | None = TORCH_STEPS  # diffusers PyTorch runs at most this many steps (extrapolated); None: all
    high_noise_frac: float = DEFAULT_HIGH_NOISE_FRAC
    guidance: float = DEFAULT_GUIDANCE
    seed: int = 0
    repeat: int = 1  # measured warm images after the warm-up one; the median is reported
    prompt: str = PROMPT
    quick: bool = False
    cache_interval: int | None = None  # ov-sdxl's feature reuse; None: each preset's own (fast: 3, others: off)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"bench mode {self.mode!r} is not one of: {', '.join(MODES)}")
        self._params(self.steps)  # the checks every generation gets (size, steps, hand-off...)
        if self.torch_steps is not None:
            if not isinstance(self.torch_steps, int) or isinstance(self.torch_steps, bool) or self.torch_steps < 1:
                raise ConfigError(f"--torch-steps {self.torch_steps!r} must be a whole number >= 1")
            try:
                self._params(min(self.steps, self.torch_steps))
            except ConfigError as exc:
                raise ConfigError(f"--torch-steps {self.torch_steps}: {exc}") from None
        if not isinstance(self.repeat, int) or isinstance(self.repeat, bool) or self.repeat < 1:
            raise ConfigError(f"--repeat {self.repeat!r} must be a whole number >= 1")

    def _params(self, steps: int) -> GenerationParams:
        return GenerationParams.from_options(self, steps=steps)

    @property
    def two_stage(self) -> bool:
        return self.mode == "base+refiner"


def _warm_files(folders: list[Path | None]) -> None:
    """Read the weights once, so that every contender starts with them in the OS file cache."""
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder else []:
            if path.is_file():
                with open(path, "rb") as handle:
                    while handle.read(16 << 20):
                        pass


def _unfit(spec: ContenderSpec, layout: ModelLayout) -> str | None:
    """Why an ov-sdxl preset cannot run the model in ``layout`` (converted for another preset), or None."""
    from ov_sdxl.runtime import resolve_preset

    if spec.kind != "ov-sdxl" or "preset" not in spec.options:
        return None
    if spec.options.get("vae") == "taesdxl" and layout.tiny_vae is None:
        return "needs a model converted with --taesdxl"
    try:
        resolve_preset(spec.options["preset"], (layout.manifest or {}).get("weights"))
    except ConfigError as exc:
        return f"cannot run this model: {exc}"
    return None


def run_contender(spec: ContenderSpec, job: dict[str, Any], work: Path, prime: bool = False) -> dict[str, Any]:
    """Run ``spec`` in a new process; return its report (the child measures its own peak memory: sampling it from
    here, /proc's PSS of a 15 GB process ten times a second, took 40% of a core from the contender)."""
    tag = f"{spec.name.replace(':', '-')}{'-prime' if prime else ''}"
    job = {**job, "contender": asdict(spec), "prime": prime, "report": str(work / f"{tag}.json")}
    (work / f"{tag}-job.json").write_text(json.dumps(job), encoding="utf-8")
    command = [sys.executable, "-m", "ov_sdxl.bench.contenders", str(work / f"{tag}-job.json")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(work / f"{tag}.log", "wb") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            child.wait()
        except BaseException:
            child.kill()
            child.wait()
            raise
    if child.returncode != 0:
        lines = (work / f"{tag}.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        raise GenerationError(f"exit {child.returncode}: {' | '.join(lines[-3:]) or 'no output'}")
    return json.loads((work / f"{tag}.json").read_text(encoding="utf-8"))


def run_bench(settings: BenchSettings, target: BenchTarget, contenders: list[ContenderSpec]) -> dict:
    """Measure every contender on ``target``; return everything the table, JSON and chart show.

    This process imports no PyTorch or OpenVINO until every contender has finished (the floor comes last), so it
    takes almost no memory from them."""
    from ov_sdxl.bench.floor import floor_report, machine_info
    from ov_sdxl.bench.report import add_drift, ratios, references_of

    job = {
        "settings": asdict(settings),
        "model": str(target.model),
        "base": str(target.base),
        "refiner": str(target.refiner) if target.refiner else None,
        "torch_source": [str(p) for p in target.torch_source] if target.torch_source else None,
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ov-sdxl-bench-") as folder:
        for spec in contenders:
            if spec.kind == "torch" and target.torch_source is None:
                results[spec.name] = {"skipped": f"needs {TORCH_SOURCE_HINT}"}
                log.info("%s: skipped, it needs %s", spec.name, TORCH_SOURCE_HINT)
                continue
            used = 2 if settings.two_stage else 1
            model = target.models.get(spec.weights) if spec.weights else target.model
            layout = ModelLayout.open(model) if model is not None else None
            reason = _unfit(spec, layout) if layout else f"needs a model converted with --weights {spec.weights}"
            if reason:
                results[spec.name] = {"skipped": reason}
                log.info("%s: skipped, it %s", spec.name, reason)
                continue
            # a compiled-model cache of its own, filled by the priming run and deleted once measured (about the
            # size of the weights again: 11 GB for quality at one size)
            compiled = Path(folder) / f"compiled-{spec.name.replace(':', '-')}"
            own = {**job, "model": str(model), "cache_dir": str(compiled)}
            stages_dirs = [target.base, target.refiner] if spec.kind == "optimum" else [layout.base, layout.refiner]
            _warm_files(list(target.torch_source or ())[:used] if spec.kind == "torch" else stages_dirs[:used])
            try:
                cold = {}
                if spec.compiled_cache:
                    log.info("%s: priming its compiled-model cache (a process of its own)", spec.name)
                    primed = run_contender(spec, own, Path(folder), prime=True)
                    cold = {"cold_first_image_s": primed["first_image_s"], "compiled_bytes": folder_size(compiled)}
                log.info("%s: measuring in a new process", spec.name)
                measured = run_contender(spec, own, Path(folder))
                results[spec.name] = {"description": spec.description, **cold, **measured}
            except GenerationError as exc:
                log.warning("%s failed: %s", spec.name, exc)
                results[spec.name] = {"error": str(exc)}
            finally:
                shutil.rmtree(compiled, ignore_errors=True)
        add_drift(results)  # before the folder with the contenders' images goes
    log.info("bf16 matmul floor and UNet FLOPs")
    stages = {"base": target.base, **({"refiner": target.refiner} if settings.two_stage else {})}
    batch = 2 if settings.guidance > 1 else 1
    floor = floor_report(stages, settings.width, settings.height, batch, quick=settings.quick)
    references = references_of(results)
    return {
        "ov_sdxl_bench": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "versions": library_versions(),
        "model": {"label": target.label, "path": str(target.model), "torch_source": job["torch_source"]},
        "settings": asdict(settings),
        "notes": _notes(settings, contenders, results),
        "floor": floor,
        "contenders": results,
        "ratios": ratios(results, references),
    }


def _notes(settings: BenchSettings, contenders: list[ContenderSpec], results: dict[str, Any]) -> list[str]:
    notes = [
        "each contender ran in a new process: first image = process start (imports, load, compile) to the first "
        "image; the warm image follows one warm-up image; peak RSS is the process's high-water mark (ru_maxrss)",
        "every contender read its weights once before starting (warm OS file cache); no invisible watermark",
    ]
    primed = [spec.name for spec in contenders if spec.compiled_cache and spec.name in results]
    if primed:
        notes.append(
            f"{', '.join(primed)}: run once before the measured process, to fill a compiled-model cache of its own "
            "(that first run's time is cold_first_image_s in the JSON; the cache is deleted once measured)"
        )
    if any(spec.kind == "optimum" for spec in contenders):
        notes.append(
            "optimum-intel's default keeps no compiled-model cache on CPU (it sets CACHE_DIR only on GPU): "
            "it compiles in every new process, as its users see"
        )
    extrapolated = [name for name, r in results.items() if r.get("extrapolated")]
    if extrapolated:
        notes.append(
            f"{', '.join(extrapolated)}: measured on {min(settings.steps, settings.torch_steps or settings.steps)} "
            f"of {settings.steps} steps; seconds per UNet step measured, whole-image and first-image times "
            "extrapolated to the full step count"
        )
    return notes


def _settings(args: Any, native: tuple[int, int]) -> BenchSettings:
    """Explicit flags win; --quick sets 512x512 and a few steps; otherwise the model's native size."""
    width, height = (QUICK_SIDE, QUICK_SIDE) if args.quick else native

    def given(value: Any, default: Any) -> Any:
        return default if value is None else value

    return BenchSettings(
        mode=args.mode,
        width=given(args.width, width),
        height=given(args.height, height),
        steps=given(args.steps, QUICK_STEPS if args.quick else STEPS),
        torch_steps=given(args.torch_steps, TORCH_STEPS),
        high_noise_frac=args.high_noise_frac,
        seed=args.seed,
        repeat=args.repeat,
        quick=args.quick,
        cache_interval=args.cache_interval,
    )


def generation_command(args: Any) -> int:
    """``ov-sdxl bench``: parsed arguments in, table (and JSON, chart) out."""
    from ov_sdxl.bench.report import check_chart_output, format_table, write_chart

    contenders = resolve_contenders(list(args.contenders or CONTENDERS))
    for path in (args.json, args.chart):
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise ConfigError(f"{path}: its folder does not exist")
    if args.chart is not None:
        check_chart_output(args.chart)
    _settings(args, (1024, 1024))  # every check that does not need the model, before anything is built
    two_stage = args.mode == "base+refiner"
    weights = tuple(dict.fromkeys(spec.weights for spec in contenders if spec.weights))
    target = prepare_target(args.model, args.torch_source, args.tiny, args.cache, args.synthetic, two_stage, weights)
    settings = _settings(args, native_size(target))
    results = run_bench(settings, target, contenders)
    print(format_table(results))
    if args.json is not None:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(f"written: {args.json}")
    if args.chart is not None:
        write_chart(results, args.chart)
        print(f"written: {args.chart}")
    failed = {name: r["error"] for name, r in results["contenders"].items() if "error" in r}
    if failed:
        raise GenerationError("; ".join(f"{name} failed ({error})" for name, error in failed.items()))
    return 0

"""Measure conversion: ov-sdxl's converter against ``optimum-cli export openvino`` on the same weights.

    ov-sdxl bench-convert --weights fp16 int8 --json convert-bench.json
    ov-sdxl bench-convert --base my/base --refiner my/refiner --weights int4 --contenders ov-sdxl
    ov-sdxl bench-convert --weights int8 hybrid-int8 --contenders ov-sdxl

Without ``--base`` it builds (once, cached) the synthetic full-size SDXL 1.0 base and refiner: the real
architectures with random weights, fp16 safetensors (``ov_sdxl.testing.synthetic``). Each contender runs as its own
command; the resident memory of its whole process tree is sampled every 0.25 s. optimum-cli converts the base and
the refiner one after the other (two commands, as its users do); ov-sdxl converts both in one command and reports
every sub-model group's own time and peak. Prints a table with the ratios and writes JSON.

hybrid-int8 is measured against int8 (ov-sdxl only: optimum-cli's hybrid mode calibrates on a caption dataset it
downloads), with the calibration renders' UNet calls and seconds apart, since they are the part no quantizer saves.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ov_sdxl.errors import ConfigError
from ov_sdxl.formats import WeightFormat
from ov_sdxl.resources import gb, run_watched

log = logging.getLogger(__name__)

CONVERSION_CONTENDERS = ("optimum-cli", "ov-sdxl")
CONVERSION_WEIGHTS = tuple(f.value for f in WeightFormat)
HYBRID = WeightFormat.HYBRID_INT8.value
NO_OPTIMUM_HYBRID = "optimum-cli's hybrid-int8 calibrates on a caption dataset it downloads (--dataset), not offline"
TASKS = {"base": "text-to-image", "refiner": "image-to-image"}
OURS = """
import json, logging, sys
from ov_sdxl import ConvertConfig, convert_models
logging.basicConfig(level=logging.INFO, format="%(message)s")
args = json.loads(sys.argv[1])
result = convert_models(ConvertConfig(**args["config"]))
open(args["report"], "w").write(json.dumps({"seconds": result.seconds, "parts": list(result.parts)}))
"""


def synthetic_sources(folder: Path) -> dict[str, Path]:
    from ov_sdxl.testing import build_synthetic_sources

    base, refiner = build_synthetic_sources(folder)
    return {"base": base, "refiner": refiner}


def _optimum_cli(sources: dict[str, Path], weights: str, work: Path) -> list[dict[str, Any]]:
    executable = Path(sys.executable).with_name("optimum-cli")
    rows = []
    for stage, source in sources.items():
        out = work / f"optimum-{stage}"
        command = [str(executable), "export", "openvino", "--model", str(source), "--task", TASKS[stage]]
        command += ["--weight-format", weights, str(out)]
        if weights == "int4":  # as ov-sdxl: layers narrower than a group (SDXL's 320-wide time embedding) adjust it;
            command[-1:-1] = ["--group-size-fallback", "adjust"]  # optimum-cli's default refuses them with an error
        log.info("optimum-cli: %s", " ".join(command))
        watched = run_watched(command)
        if watched.returncode != 0:
            raise RuntimeError(f"optimum-cli failed on the {stage} (exit {watched.returncode})")
        rows.append({"what": stage, "seconds": watched.seconds, "peak_rss": watched.peak_rss})
        shutil.rmtree(out, ignore_errors=True)
    return rows


def _ov_sdxl(
    sources: dict[str, Path], weights: str, work: Path, samples: int | None
) -> tuple[list[dict[str, Any]], float, int]:
    report = work / "ov-sdxl-report.json"
    config = {"base": str(sources["base"]), "output": str(work / "ov-sdxl"), "weights": weights}
    if weights == HYBRID and samples is not None:
        config["calibration_samples"] = samples
    if "refiner" in sources:
        config["refiner"] = str(sources["refiner"])
    watched = run_watched([sys.executable, "-c", OURS, json.dumps({"config": config, "report": str(report)})])
    if watched.returncode != 0:
        raise RuntimeError(f"ov-sdxl's conversion failed (exit {watched.returncode})")
    parts = json.loads(report.read_text(encoding="utf-8"))["parts"]
    rows = []
    for part in parts:
        row = {"what": f"{part['stage']}: {', '.join(part['parts'])}"}
        rows.append(row | {k: part[k] for k in ("seconds", "peak_rss", "calibration") if k in part})
    shutil.rmtree(work / "ov-sdxl", ignore_errors=True)
    return rows, watched.seconds, watched.peak_rss


def run_bench(
    sources: dict[str, Path],
    weights: list[str],
    contenders: list[str],
    work: Path | None = None,
    samples: int | None = None,
) -> dict[str, Any]:
    """Convert ``sources`` in every format with every contender (optimum-cli not in hybrid-int8); return the
    measurements. ``samples``: hybrid-int8's calibration samples (None: the converter's default)."""
    results: dict[str, Any] = {"sources": {k: str(v) for k, v in sources.items()}, "formats": {}, "notes": []}
    with tempfile.TemporaryDirectory(prefix="ov-sdxl-bench-", dir=work) as folder:
        for fmt in weights:
            entry: dict[str, Any] = {}
            if "optimum-cli" in contenders and fmt == HYBRID:
                results["notes"].append(f"optimum-cli not run in {HYBRID}: {NO_OPTIMUM_HYBRID}")
            elif "optimum-cli" in contenders:
                rows = _optimum_cli(sources, fmt, Path(folder))
                entry["optimum-cli"] = {
                    "rows": rows,
                    "seconds": sum(r["seconds"] for r in rows),
                    "peak_rss": max(r["peak_rss"] for r in rows),
                }
            if "ov-sdxl" in contenders:
                rows, seconds, peak = _ov_sdxl(sources, fmt, Path(folder), samples)
                entry["ov-sdxl"] = {"rows": rows, "seconds": seconds, "peak_rss": peak}
            results["formats"][fmt] = entry
    hybrid_vs_int8 = _hybrid_vs_int8(results["formats"])
    if hybrid_vs_int8:
        results["hybrid_vs_int8"] = hybrid_vs_int8
    return results


def _hybrid_vs_int8(formats: dict[str, Any]) -> dict[str, Any] | None:
    """ov-sdxl's hybrid-int8 conversion against its int8 one, measured in the same run: time and peak ratios, and the
    calibration renders' UNet calls and seconds, the part no quantizer can save."""
    hybrid, int8 = formats.get(HYBRID, {}).get("ov-sdxl"), formats.get("int8", {}).get("ov-sdxl")
    if hybrid is None or int8 is None:
        return None
    renders = [row["calibration"] for row in hybrid["rows"] if "calibration" in row]
    render_seconds = sum(r["render_seconds"] for r in renders)
    return {
        "time": hybrid["seconds"] / int8["seconds"],
        "peak_rss": hybrid["peak_rss"] / int8["peak_rss"],
        "unet_calls": sum(r["unet_calls"] for r in renders),
        "render_seconds": render_seconds,
        "time_without_renders": (hybrid["seconds"] - render_seconds) / int8["seconds"],
    }


def format_table(results: dict[str, Any]) -> str:
    lines = [f"{'format':11} {'contender':12} {'what':58} {'time':>8} {'peak RSS (tree)':>16}"]
    for fmt, entry in results["formats"].items():
        for contender, data in entry.items():
            for row in data["rows"]:
                line = f"{fmt:11} {contender:12} {row['what']:58} {row['seconds']:7.0f}s {gb(row['peak_rss']):>16}"
                lines.append(line)
                if "calibration" in row:
                    renders = row["calibration"]
                    what = f"  of which calibration renders ({renders['unet_calls']} UNet calls)"
                    lines.append(f"{fmt:11} {contender:12} {what:58} {renders['render_seconds']:7.0f}s")
            total = f"{fmt:11} {contender:12} {'TOTAL (base + refiner)':58} {data['seconds']:7.0f}s"
            lines.append(f"{total} {gb(data['peak_rss']):>16}")
        if len(entry) == 2:
            theirs, ours = entry["optimum-cli"], entry["ov-sdxl"]
            lines.append(
                f"{fmt:11} ratios: time ov-sdxl/optimum-cli {ours['seconds'] / theirs['seconds']:.2f}x, "
                f"peak RSS optimum-cli/ov-sdxl {theirs['peak_rss'] / ours['peak_rss']:.2f}x"
            )
    if "hybrid_vs_int8" in results:
        ratio = results["hybrid_vs_int8"]
        lines.append(
            f"ov-sdxl {HYBRID}/int8: time {ratio['time']:.2f}x, peak RSS {ratio['peak_rss']:.2f}x; "
            f"calibration renders {ratio['render_seconds']:.0f} s ({ratio['unet_calls']} UNet calls), "
            f"time without them {ratio['time_without_renders']:.2f}x"
        )
    lines += [f"note: {note}" for note in results["notes"]]
    return "\n".join(lines)


def conversion_command(args: Any) -> int:
    """``ov-sdxl bench-convert``: parsed arguments in, table out."""
    contenders = list(args.contenders or CONVERSION_CONTENDERS)
    if HYBRID in args.weights and args.contenders and "optimum-cli" in args.contenders:
        raise ConfigError(f"--contenders optimum-cli with --weights {HYBRID}: {NO_OPTIMUM_HYBRID}")
    if args.calibration_samples is not None and HYBRID not in args.weights:
        raise ConfigError(f"--calibration-samples is only used by --weights {HYBRID}")
    if args.base:
        sources = {"base": Path(args.base)}
        if args.refiner:
            sources["refiner"] = Path(args.refiner)
    else:
        print(f"synthetic full-size SDXL in {args.synthetic} (built once, about 12 GB of fp16 safetensors)")
        sources = synthetic_sources(args.synthetic)
    started = time.monotonic()
    results = run_bench(sources, list(args.weights), contenders, work=args.work, samples=args.calibration_samples)
    results["seconds"] = time.monotonic() - started
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(f"written: {args.json}")
    return 0

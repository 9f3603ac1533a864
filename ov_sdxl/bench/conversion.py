"""Measure conversion: ov-sdxl's converter against ``optimum-cli export openvino`` on the same weights.

    ov-sdxl bench-convert --weights fp16 int8 --json convert-bench.json
    ov-sdxl bench-convert --base my/base --refiner my/refiner --weights int4 --contenders ov-sdxl

Without ``--base`` it builds (once, cached) the synthetic full-size SDXL 1.0 base and refiner: the real
architectures with random weights, fp16 safetensors (``ov_sdxl.testing.synthetic``). Each contender runs as its own
command; the resident memory of its whole process tree is sampled every 0.25 s. optimum-cli converts the base and
the refiner one after the other (two commands, as its users do); ov-sdxl converts both in one command and reports
every sub-model group's own time and peak. Prints a table with the ratios and writes JSON.
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

from ov_sdxl.formats import WeightFormat
from ov_sdxl.resources import gb, run_watched

log = logging.getLogger(__name__)

CONVERSION_CONTENDERS = ("optimum-cli", "ov-sdxl")
# the formats it measures: hybrid-int8 calibrates as well as exports, and is not measured against optimum-cli yet
CONVERSION_WEIGHTS = tuple(f.value for f in WeightFormat if f is not WeightFormat.HYBRID_INT8)
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


def _ov_sdxl(sources: dict[str, Path], weights: str, work: Path) -> tuple[list[dict[str, Any]], float, int]:
    report = work / "ov-sdxl-report.json"
    config = {"base": str(sources["base"]), "output": str(work / "ov-sdxl"), "weights": weights}
    if "refiner" in sources:
        config["refiner"] = str(sources["refiner"])
    watched = run_watched([sys.executable, "-c", OURS, json.dumps({"config": config, "report": str(report)})])
    if watched.returncode != 0:
        raise RuntimeError(f"ov-sdxl's conversion failed (exit {watched.returncode})")
    parts = json.loads(report.read_text(encoding="utf-8"))["parts"]
    rows = [
        {"what": f"{p['stage']}: {', '.join(p['parts'])}", "seconds": p["seconds"], "peak_rss": p["peak_rss"]}
        for p in parts
    ]
    shutil.rmtree(work / "ov-sdxl", ignore_errors=True)
    return rows, watched.seconds, watched.peak_rss


def run_bench(
    sources: dict[str, Path], weights: list[str], contenders: list[str], work: Path | None = None
) -> dict[str, Any]:
    """Convert ``sources`` in every format with every contender; return the measurements."""
    results: dict[str, Any] = {"sources": {k: str(v) for k, v in sources.items()}, "formats": {}}
    with tempfile.TemporaryDirectory(prefix="ov-sdxl-bench-", dir=work) as folder:
        for fmt in weights:
            entry: dict[str, Any] = {}
            if "optimum-cli" in contenders:
                rows = _optimum_cli(sources, fmt, Path(folder))
                entry["optimum-cli"] = {
                    "rows": rows,
                    "seconds": sum(r["seconds"] for r in rows),
                    "peak_rss": max(r["peak_rss"] for r in rows),
                }
            if "ov-sdxl" in contenders:
                rows, seconds, peak = _ov_sdxl(sources, fmt, Path(folder))
                entry["ov-sdxl"] = {"rows": rows, "seconds": seconds, "peak_rss": peak}
            results["formats"][fmt] = entry
    return results


def format_table(results: dict[str, Any]) -> str:
    lines = [f"{'format':7} {'contender':12} {'what':58} {'time':>8} {'peak RSS (tree)':>16}"]
    for fmt, entry in results["formats"].items():
        for contender, data in entry.items():
            for row in data["rows"]:
                line = f"{fmt:7} {contender:12} {row['what']:58} {row['seconds']:7.0f}s {gb(row['peak_rss']):>16}"
                lines.append(line)
            total = f"{fmt:7} {contender:12} {'TOTAL (base + refiner)':58} {data['seconds']:7.0f}s"
            lines.append(f"{total} {gb(data['peak_rss']):>16}")
        if len(entry) == 2:
            theirs, ours = entry["optimum-cli"], entry["ov-sdxl"]
            lines.append(
                f"{fmt:7} ratios: time ov-sdxl/optimum-cli {ours['seconds'] / theirs['seconds']:.2f}x, "
                f"peak RSS optimum-cli/ov-sdxl {theirs['peak_rss'] / ours['peak_rss']:.2f}x"
            )
    return "\n".join(lines)


def conversion_command(args: Any) -> int:
    """``ov-sdxl bench-convert``: parsed arguments in, table out."""
    if args.base:
        sources = {"base": Path(args.base)}
        if args.refiner:
            sources["refiner"] = Path(args.refiner)
    else:
        print(f"synthetic full-size SDXL in {args.synthetic} (built once, about 12 GB of fp16 safetensors)")
        sources = synthetic_sources(args.synthetic)
    started = time.monotonic()
    results = run_bench(sources, list(args.weights), list(args.contenders), work=args.work)
    results["seconds"] = time.monotonic() - started
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
        print(f"written: {args.json}")
    return 0

"""What ``ov-sdxl bench`` shows: the ratios peer / ov-sdxl, the terminal table and the PNG chart.

    from ov_sdxl.bench.report import format_table, write_chart
    print(format_table(results))          # results: what ov_sdxl.bench.run_bench returns (also the JSON)
    write_chart(results, "bench.png")     # needs matplotlib: pip install 'ov-sdxl[notebooks]'

Ratios are taken against each ov-sdxl preset measured; a ratio above 1 means that preset is faster (or
smaller) than that peer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ov_sdxl.bench.contenders import CONTENDERS
from ov_sdxl.errors import ConfigError

# (key in a contender's figures, column title, format)
FIGURES = (
    ("unet_base_s_per_step", "base s/step", "{:.3g}"),
    ("unet_refiner_s_per_step", "refiner s/step", "{:.3g}"),
    ("text_encoders_s", "text enc. s", "{:.3g}"),
    ("vae_decode_s", "VAE dec. s", "{:.3g}"),
    ("image_s", "image s", "{:.3g}"),
    ("first_image_s", "1st image s", "{:.3g}"),
    ("peak_rss_bytes", "peak RSS", "{:.1f} GB"),
)
OURS = "ov-sdxl"
QUALITY = "ov-sdxl:quality"  # the image every other one's drift is measured from
DRIFT = ("mad_vs_quality", "MAD vs quality", "{:.2f}")  # mean |pixel difference| in 0..255; not a ratio


def add_drift(contenders: dict[str, Any]) -> None:
    """Each contender's mean absolute pixel difference from ``ov-sdxl:quality``'s last image (same seed, source
    weights and steps), from the PNG each contender wrote (its ``image``, taken out of the results here); none when
    quality was not measured or a contender ran fewer steps."""
    import numpy as np
    from PIL import Image

    images = {name: result.pop("image") for name, result in contenders.items() if "image" in result}
    if QUALITY not in images:
        return

    def pixels(name: str) -> Any:
        return np.asarray(Image.open(images[name]).convert("RGB"), dtype=np.float32)

    reference = pixels(QUALITY)
    for name, result in contenders.items():
        if name in images and not result.get("extrapolated"):
            result["figures"][DRIFT[0]] = float(np.abs(pixels(name) - reference).mean())


def references_of(contenders: dict[str, Any]) -> list[str]:
    """The contenders the ratios are taken against: every measured ov-sdxl preset (and a plain ``ov-sdxl``)."""
    return [
        name
        for name, result in contenders.items()
        if "figures" in result and (name == OURS or name.startswith(OURS + ":"))
    ]


def ratios(contenders: dict[str, Any], references: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """For each reference (an ov-sdxl preset): peer figure / reference figure, for every measured peer (the
    contenders that are not ov-sdxl) and every figure both have."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for reference in references:
        ours = contenders[reference]["figures"]
        out[reference] = {}
        for name, result in contenders.items():
            if name in references or "figures" not in result:
                continue
            theirs = result["figures"]
            out[reference][name] = {
                key: theirs[key] / ours[key] for key, _, _ in FIGURES if theirs.get(key) is not None and ours.get(key)
            }
    return out


def _cell(key: str, fmt: str, figures: dict[str, Any]) -> str:
    value = figures.get(key)
    if value is None:
        return "-"
    return fmt.format(value / 1e9 if key == "peak_rss_bytes" else value)


def _columns(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    two_stage = results["settings"]["mode"] == "base+refiner"
    return [f for f in FIGURES if two_stage or f[0] != "unet_refiner_s_per_step"]


def _drift_note(results: dict[str, Any]) -> list[str]:
    if not any(DRIFT[0] in r.get("figures", {}) for r in results["contenders"].values()):
        return []
    return [
        f"{DRIFT[1]}: mean absolute pixel difference (0..255) from {QUALITY}'s image, same seed and source weights; "
        "on random weights it measures drift, not beauty"
    ]


def _rows(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    return lines


def _floor_lines(results: dict[str, Any]) -> list[str]:
    floor = results["floor"]
    lines = [
        f"{floor['precision']} matmul floor: {floor['tflops']:.3g} TFLOP/s (a chain of {floor['layers']} "
        f"{floor['size']}x{floor['size']} MatMuls in OpenVINO on CPU)"
    ]
    s = results["settings"]
    for stage, flops in floor["unet_flops_per_step"].items():
        if not flops:
            lines.append(f"  {stage} UNet: FLOPs not counted (not an SDXL UNet configuration)")
            continue
        floor_s = floor["floor_s_per_step"][stage]
        line = (
            f"  {stage} UNet: {flops / 1e12:.3g} TFLOP per step at {s['width']}x{s['height']} -> floor "
            f"{floor_s:.3g} s/step"
        )
        lines.append(line)
        for reference in results["ratios"]:
            ours = results["contenders"][reference]["figures"].get(f"unet_{stage}_s_per_step")
            if not ours:
                continue
            spec = CONTENDERS.get(reference)
            if results["settings"].get("cache_interval") not in (None, 1):
                lines.append(f"    {reference}: {ours:.3g} s/step (the mean of whole and reused steps: not compared)")
            elif spec is None or spec.floor_steps:
                lines.append(f"    {reference}: {ours:.3g} s/step = {ours / floor_s:.2f}x the floor")
            else:
                lines.append(f"    {reference}: {ours:.3g} s/step (int8 and half-batch steps: not compared with it)")
    return lines


def format_table(results: dict[str, Any]) -> str:
    """The figures per contender, the ratios peer / ov-sdxl, the floor and the notes, as text."""
    s, machine = results["settings"], results["machine"]
    handoff = f", hand-off {s['high_noise_frac']}" if s["mode"] == "base+refiner" else ""
    lines = [
        f"ov-sdxl bench: {results['model']['label']}, {s['mode']}, {s['width']}x{s['height']}, {s['steps']} steps, "
        f"guidance {s['guidance']:g}{handoff}",
        f"machine: {machine['cpu']}, {machine['logical_cores']} logical cores, {machine['ram_bytes'] / 1e9:.0f} GB "
        f"RAM; OpenVINO CPU capabilities: {', '.join(machine['optimization_capabilities'])}",
        "",
    ]
    columns = _columns(results)
    drift = [DRIFT] if _drift_note(results) else []
    header = ["contender", *[title for _, title, _ in columns]]
    rows, others = [], []
    for name, result in results["contenders"].items():
        if "figures" in result:
            mark = "*" if result.get("extrapolated") else ""
            rows.append([name + mark, *[_cell(key, fmt, result["figures"]) for key, _, fmt in [*columns, *drift]]])
        else:
            others.append(f"{name}: {'skipped, ' + result['skipped'] if 'skipped' in result else result['error']}")
    lines += _rows(header + [title for _, title, _ in drift], rows)
    for reference, peers in results["ratios"].items():
        if not peers:
            continue
        lines += ["", f"ratios peer / {reference} (above 1: {reference} is faster or smaller)"]
        ratio_rows = [
            [name, *[f"{r[key]:.2f}x" if key in r else "-" for key, _, _ in columns]] for name, r in peers.items()
        ]
        lines += _rows(["peer", *header[1:]], ratio_rows)
    notes = [*results["notes"], *_drift_note(results)]
    lines += ["", *others, *_floor_lines(results), *[f"note: {note}" for note in notes]]
    if any(r.get("extrapolated") for r in results["contenders"].values()):
        lines.append("* extrapolated from fewer steps (see the note above)")
    return "\n".join(line.rstrip() for line in lines)


def check_chart_output(path: str | Path) -> None:
    """Refuse at once a chart path that is not a .png, or a missing matplotlib (before any measuring)."""
    if Path(path).suffix.lower() != ".png":
        raise ConfigError(f"--chart {path} must end in .png")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--chart needs matplotlib, which comes with the notebooks extra: pip install 'ov-sdxl[notebooks]'"
        ) from None


def write_chart(results: dict[str, Any], path: str | Path) -> None:
    """Three bar panels: seconds per UNet step (with the floor), image times, peak memory."""
    from matplotlib.figure import Figure

    measured = {name: r["figures"] for name, r in results["contenders"].items() if "figures" in r}
    names = list(measured)
    figure = Figure(figsize=(15, 1.6 + 0.55 * max(len(names), 1)), layout="constrained")
    step_axis, image_axis, memory_axis = figure.subplots(1, 3, sharey=True)
    positions = range(len(names))
    stages = ["base", "refiner"] if results["settings"]["mode"] == "base+refiner" else ["base"]
    height = 0.8 / len(stages)
    for i, stage in enumerate(stages):
        values = [measured[n].get(f"unet_{stage}_s_per_step") or 0 for n in names]
        bars = step_axis.barh([p + i * height for p in positions], values, height=height, label=f"{stage} UNet")
        step_axis.bar_label(bars, fmt="%.3g", fontsize="x-small", padding=2)
        floor = results["floor"]["floor_s_per_step"].get(stage)
        if floor:
            step_axis.axvline(
                floor, linestyle="--", color=f"C{i}", label=f"{stage} {results['floor']['precision']} floor"
            )
    step_axis.set_title("seconds per UNet step")
    for i, (key, label) in enumerate((("image_s", "warm image"), ("first_image_s", "first image, new process"))):
        bars = image_axis.barh(
            [p + i * 0.4 for p in positions], [measured[n][key] for n in names], height=0.4, label=label
        )
        image_axis.bar_label(bars, fmt="%.3g", fontsize="x-small", padding=2)
    image_axis.set_title("seconds per image")
    bars = memory_axis.barh(list(positions), [measured[n]["peak_rss_bytes"] / 1e9 for n in names], color="C3")
    memory_axis.bar_label(bars, fmt="%.2f", fontsize="x-small", padding=2)
    memory_axis.set_title("peak RSS, GB")
    labels = [n + ("*" if results["contenders"][n].get("extrapolated") else "") for n in names]
    step_axis.set_yticks([p + 0.2 for p in positions], labels)
    step_axis.invert_yaxis()
    for axis in (step_axis, image_axis):
        axis.legend(fontsize="small")
    s = results["settings"]
    figure.suptitle(
        f"ov-sdxl bench: {results['model']['label']}, {s['mode']}, {s['width']}x{s['height']}, {s['steps']} steps "
        f"({results['machine']['cpu']}; * extrapolated from fewer steps)"
    )
    figure.savefig(path, dpi=100)

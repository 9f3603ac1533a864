"""What the machine is and what it can do at best: CPU facts, a bf16 matmul floor, the UNet's FLOPs per step.

    from ov_sdxl.bench.floor import machine_info, matmul_floor, unet_flops
    machine_info()                          # {"cpu": "Intel(R) Xeon(R) ...", "cores": 2, "ram_bytes": ..., ...}
    matmul_floor(size=2048, layers=8)       # {"tflops": 1.9, "precision": "bf16", ...}
    unet_flops(Path("models/sdxl/base"), width=1024, height=1024, batch=2)   # 1.35e13

The floor is a chain of large square MatMuls built with ``openvino.opset13``, compiled on the CPU with
``INFERENCE_PRECISION_HINT=bf16`` (f32 where the CPU has no bf16: the compiled precision is recorded): the best
sustained rate OpenVINO reaches here on the operation that dominates the UNet. The UNet's FLOPs per step are
counted once with ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass of a UNet built from the
model's own ``unet/config.json`` on PyTorch's ``meta`` device (no weights are allocated): matmuls, convolutions and
attention, at the benchmarked size, batch 2 with classifier-free guidance. floor seconds per step = FLOPs / rate.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FLOPS_METHOD = (
    "torch.utils.flop_counter over one UNet forward on the meta device, built from the model's unet/config.json "
    "(matmuls, convolutions, attention), batch 2 with guidance"
)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """The CPU model (/proc/cpuinfo), cores, RAM, and OpenVINO's view of the CPU."""
    import openvino as ov
    import psutil

    core = ov.Core()
    return {
        "cpu": _cpu_name(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_bytes": int(psutil.virtual_memory().total),
        "openvino_cpu": core.get_property("CPU", "FULL_DEVICE_NAME"),
        "optimization_capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def matmul_floor(size: int = 2048, layers: int = 8, repeats: int = 5) -> dict[str, Any]:
    """Best TFLOP/s of a chain of ``layers`` [size x size] MatMuls, compiled on CPU in bf16 (where it exists)."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([size, size], ov.Type.f32, name="x")
    y = x
    for _ in range(layers):
        weight = (rng.standard_normal((size, size), dtype=np.float32) / np.sqrt(size)).astype(np.float32)
        y = ops.matmul(y, ops.constant(weight), False, False)
    config = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(ov.Model([y], [x], "matmul_chain"), "CPU", config)
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # bf16, or f32 without it
    request = compiled.create_infer_request()
    data = rng.standard_normal((size, size), dtype=np.float32)
    request.infer({0: data})  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        request.infer({0: data})
        seconds.append(time.perf_counter() - started)
    flops = layers * 2.0 * size**3
    best = min(seconds)
    return {"tflops": flops / best / 1e12, "precision": precision, "size": size, "layers": layers, "seconds": best}


def _aesthetic(stage_dir: Path) -> bool:
    index = stage_dir / "model_index.json"
    return index.is_file() and bool(json.loads(index.read_text(encoding="utf-8")).get("requires_aesthetics_score"))


def unet_flops(stage_dir: Path, width: int, height: int, batch: int, tokens: int = 77) -> float | None:
    """FLOPs of one forward of ``stage_dir``'s UNet (an optimum-intel or diffusers pipeline folder) at this size;
    None when its configuration is not an SDXL UNet (a note says so)."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    path = stage_dir / "unet" / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("addition_embed_type") != "text_time":
        log.warning("%s is not an SDXL UNet (no text_time embedding): FLOPs not counted", path)
        return None
    time_ids = 5 if _aesthetic(stage_dir) else 6  # the refiner conditions on an aesthetic score, not a crop
    text_dim = config["projection_class_embeddings_input_dim"] - config["addition_time_embed_dim"] * time_ids
    scale = 8  # SDXL's VAE
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
        inputs = dict(
            sample=torch.empty(batch, config["in_channels"], height // scale, width // scale),
            timestep=torch.tensor(999),
            encoder_hidden_states=torch.empty(batch, tokens, config["cross_attention_dim"]),
            added_cond_kwargs={"text_embeds": torch.empty(batch, text_dim), "time_ids": torch.empty(batch, time_ids)},
        )
        if config.get("time_cond_proj_dim"):
            inputs["timestep_cond"] = torch.empty(batch, config["time_cond_proj_dim"])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(**inputs)
    return float(counter.get_total_flops())


def floor_report(stages: dict[str, Path], width: int, height: int, batch: int, quick: bool = False) -> dict[str, Any]:
    """The matmul floor and, per stage, the UNet's FLOPs per step and the floor seconds per step they imply."""
    floor = matmul_floor(size=1024, layers=8, repeats=3) if quick else matmul_floor()
    flops = {stage: unet_flops(folder, width, height, batch) for stage, folder in stages.items()}
    return {
        **floor,
        "flops_method": FLOPS_METHOD,
        "unet_flops_per_step": flops,
        "floor_s_per_step": {
            stage: (value / (floor["tflops"] * 1e12) if value else None) for stage, value in flops.items()
        },
    }

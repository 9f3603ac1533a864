"""The page's words for the runtime's keys, in one place: each stage of a run as the user reads it.

    from ov_sdxl.demo.labels import stage_label, step_line, timing_line
    step_line("refiner", 3, 6)                                # "refiner: step 3 of 6"
    timing_line({"base": 2.04, "base_decode": 0.4, "total": 2.5})
    # "base 2.0 s, decoding the base's image 0.4 s, in all 2.5 s"

The keys are the runtime's: the stages it reports steps of (``progress(stage, step, total)``: base, refiner) and
the parts it times (``GenerationResult.timings``: those, decode, base_decode and total). A key missing here would
show with spaces for its underscores; tests/demo/test_demo.py runs every mode and fails on one.
"""

from __future__ import annotations

STAGES = {
    "base": "base",
    "refiner": "refiner",
    "base_decode": "decoding the base's image",
    "decode": "decoding",
    "total": "in all",
}


def stage_label(key: str) -> str:
    return STAGES.get(key, key.replace("_", " "))


def step_line(stage: str, step: int, total: int) -> str:
    """The progress bar's text after a step."""
    return f"{stage_label(stage)}: step {step} of {total}"


def timing_line(timings: dict[str, float]) -> str:
    """How long each part of a run took, in the order they ran."""
    return ", ".join(f"{stage_label(key)} {seconds:.1f} s" for key, seconds in timings.items())

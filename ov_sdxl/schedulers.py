"""Schedulers by name: each the diffusers scheduler of that name, built from the model's own scheduler config.

    from ov_sdxl.schedulers import SCHEDULERS, make_scheduler
    pipe.scheduler = make_scheduler("dpm++2m-karras", original_scheduler)

``None`` keeps the model's own scheduler (a fresh instance of it). Because the new scheduler is built from the
model's config with only the named variant's settings changed, the same seed gives the same image as diffusers
with ``<Class>.from_config(pipe.scheduler.config, **settings)``.
"""

from __future__ import annotations

from typing import Any

from ov_sdxl.errors import ConfigError

# name -> (diffusers class, settings on top of the model's config)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    # few-step models (see model_info.py): SDXL-Lightning and SDXL-Turbo sample with "trailing" timesteps
    "euler-trailing": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "euler-a-trailing": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++2m-karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpm++2m-sde-karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}


def check_scheduler_name(name: str | None) -> None:
    if name is not None and name not in SCHEDULERS:
        raise ConfigError(f"scheduler {name!r} is unknown; choose one of: {', '.join(SCHEDULERS)}")


def make_scheduler(name: str | None, original: Any) -> Any:
    """A fresh scheduler: the named one from ``original``'s config, or a new copy of ``original`` for None."""
    import diffusers

    check_scheduler_name(name)
    if name is None:
        return original.__class__.from_config(original.config)
    class_name, settings = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(original.config, **settings)


def scheduler_name(scheduler: Any) -> str:
    """The ov-sdxl name of a diffusers scheduler (the one whose class and settings it has, the most specific
    first), or its class name when no name fits: what PNG metadata records for "the model's own"."""
    class_name, config = type(scheduler).__name__, scheduler.config
    fitting = [
        (len(settings), name)
        for name, (cls, settings) in SCHEDULERS.items()
        if cls == class_name and all(config.get(key) == value for key, value in settings.items())
    ]
    return max(fitting)[1] if fitting else class_name

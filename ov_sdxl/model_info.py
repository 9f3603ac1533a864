"""Few-step SDXL models (SDXL-Turbo, SDXL-Lightning, LCM): the scheduler, steps and guidance they are made for.

    from ov_sdxl.model_info import ModelInfo, manifest_entry, parse_few_step
    info = parse_few_step("lightning:4")   # from `ov-sdxl convert --few-step lightning:4`
    info.steps, info.guidance, info.scheduler     # 4, 0.0, "euler-trailing"
    manifest["model_info"] = info.manifest_entry()   # the same as manifest_entry("lightning", steps=4)
    ModelInfo.from_manifest(manifest)        # None for an ordinary SDXL model
    info.check(steps=20, guidance=5.0)       # notes on what the model was not made for (the values are kept)

What each kind is made for, from its model card and diffusers' guides:

| kind | steps | guidance | scheduler |
|---|---|---|---|
| ``turbo`` (SDXL-Turbo) | 1-4 (default 4) | 0 | Euler ancestral, ``timestep_spacing="trailing"``; native 512x512 |
| ``lightning:N`` (SDXL-Lightning) | its N: 1, 2, 4 or 8 | 0 | Euler, ``"trailing"``; N=1 predicts ``"sample"`` |
| ``lcm`` (LCM-SDXL, LCM-LoRA) | 2-8 (default 4) | 1 (LCM-LoRA: 1-2) | LCM |

The Lightning variant is the user's to say: it is never guessed from file names. The scheduler is built from the
model's own scheduler config (its betas) with the kind's settings on top, as the model cards do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ov_sdxl.errors import ConfigError, CorruptModelError
from ov_sdxl.schedulers import SCHEDULERS

LIGHTNING_STEPS = (1, 2, 4, 8)
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
USAGE = "give it as KIND or KIND:STEPS, e.g. turbo, lightning:4 or lcm"


class FewStepKind(str, Enum):
    """A family of few-step SDXL models."""

    TURBO = "turbo"
    LIGHTNING = "lightning"
    LCM = "lcm"

    @property
    def title(self) -> str:
        return {"turbo": "SDXL-Turbo", "lightning": "SDXL-Lightning", "lcm": "LCM"}[self.value]


@dataclass(frozen=True)
class _Recipe:
    steps: tuple[int, ...]  # the step counts the kind is made for (its default is one of them)
    default_steps: int | None  # None: the user must give the variant (Lightning)
    guidance: float
    max_guidance: float  # above this the model card warns (artifacts, over-saturation)
    scheduler: str
    native_size: tuple[int, int] | None = None


RECIPES = {
    FewStepKind.TURBO: _Recipe((1, 2, 3, 4), 4, 0.0, 1.0, "euler-a-trailing", native_size=(512, 512)),
    FewStepKind.LIGHTNING: _Recipe(LIGHTNING_STEPS, None, 0.0, 1.0, "euler-trailing"),
    FewStepKind.LCM: _Recipe(tuple(range(1, 9)), 4, 1.0, 2.0, "lcm"),
}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ModelInfo:
    """What a few-step model runs with when the user does not say: steps, guidance, scheduler (a name in
    ``ov_sdxl.schedulers.SCHEDULERS``), its native size when it differs from the UNet's config, and the
    UNet's prediction type when it differs from the scheduler config's."""

    kind: FewStepKind
    steps: int
    guidance: float
    scheduler: str
    native_size: tuple[int, int] | None = None
    prediction_type: str | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", FewStepKind(self.kind))
        except ValueError:
            raise ConfigError(
                f"few-step kind {self.kind!r} is not one of: {', '.join(k.value for k in FewStepKind)}"
            ) from None
        if not _whole(self.steps) or self.steps < 1:
            raise ConfigError(f"few-step steps {self.steps!r} must be a whole number >= 1")
        ok = isinstance(self.guidance, (int, float)) and not isinstance(self.guidance, bool)
        if not ok or not math.isfinite(self.guidance) or self.guidance < 0:
            raise ConfigError(f"few-step guidance {self.guidance!r} must be a number >= 0")
        if self.scheduler not in SCHEDULERS:
            choices = ", ".join(SCHEDULERS)
            raise ConfigError(f"few-step scheduler {self.scheduler!r} is unknown; choose one of: {choices}")
        if self.native_size is not None:
            size = tuple(self.native_size)
            if len(size) != 2 or not all(_whole(side) and side >= 64 and side % 8 == 0 for side in size):
                raise ConfigError(f"native size {self.native_size!r} must be two multiples of 8, at least 64")
            object.__setattr__(self, "native_size", size)
        if self.prediction_type is not None and self.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"prediction type {self.prediction_type!r} is not one of: {', '.join(PREDICTION_TYPES)}")

    @classmethod
    def for_kind(cls, kind: FewStepKind | str, steps: int | None = None) -> ModelInfo:
        """The recipe of ``kind``; ``steps`` picks the variant (Lightning needs it; Turbo and LCM have a default)."""
        try:
            kind = FewStepKind(kind)
        except ValueError:
            raise ConfigError(
                f"--few-step kind {kind!r} is not one of: {', '.join(k.value for k in FewStepKind)}; {USAGE}"
            ) from None
        recipe = RECIPES[kind]
        if steps is None and recipe.default_steps is None:
            raise ConfigError(
                f"--few-step {kind.value} needs the step count of the checkpoint you convert "
                f"({', '.join(map(str, recipe.steps))}), e.g. --few-step {kind.value}:4; it is never guessed "
                "from file names"
            )
        if steps is not None and (not _whole(steps) or steps not in recipe.steps):
            raise ConfigError(
                f"--few-step {kind.value}:{steps} is not a step count {kind.title} is made for; "
                f"choose one of {', '.join(map(str, recipe.steps))}"
            )
        steps = recipe.default_steps if steps is None else steps
        # SDXL-Lightning's 1-step UNet predicts the denoised sample, not the noise (its model card)
        prediction = "sample" if kind is FewStepKind.LIGHTNING and steps == 1 else None
        return cls(kind, steps, recipe.guidance, recipe.scheduler, recipe.native_size, prediction)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any] | None) -> ModelInfo | None:
        """The model info recorded by the conversion, or None for an ordinary SDXL model."""
        entry = (manifest or {}).get("model_info")
        if entry is None:
            return None
        try:
            return cls(**entry)
        except (TypeError, ConfigError) as exc:
            raise CorruptModelError(
                f"the manifest's model_info {entry!r} is not valid ({exc}); reconvert with --overwrite"
            ) from None

    def manifest_entry(self) -> dict[str, Any]:
        """The JSON-ready record for the manifest's ``model_info``."""
        entry: dict[str, Any] = {
            "kind": self.kind.value,
            "steps": self.steps,
            "guidance": self.guidance,
            "scheduler": self.scheduler,
        }
        if self.native_size is not None:
            entry["native_size"] = list(self.native_size)
        if self.prediction_type is not None:
            entry["prediction_type"] = self.prediction_type
        return entry

    @property
    def name(self) -> str:
        """The model's name for people: "SDXL-Turbo", "SDXL-Lightning (4-step)", "LCM"."""
        return self.kind.title + (f" ({self.steps}-step)" if self.kind is FewStepKind.LIGHTNING else "")

    def describe(self) -> str:
        """One line for people, e.g. "SDXL-Turbo: 4 steps, guidance 0"."""
        return f"{self.name}: {self.steps} steps, guidance {self.guidance:g}"

    def check(self, steps: int, guidance: float, embedded_guidance: bool = False) -> list[str]:
        """Notes on a request this model was not made for. The values are used as given; these only say so.

        ``embedded_guidance``: the UNet takes guidance as an input (a full LCM UNet, trained for 3-13).
        """
        recipe, name, notes = RECIPES[self.kind], self.name, []
        if self.kind is FewStepKind.LIGHTNING and steps != self.steps:
            notes.append(
                f"{name} is made for exactly {self.steps} steps (its card: use the checkpoint that matches the "
                f"steps); running {steps} as asked"
            )
        elif steps > max(recipe.steps):
            notes.append(f"{name} is made for {min(recipe.steps)}-{max(recipe.steps)} steps; running {steps} as asked")
        if guidance > recipe.max_guidance and not embedded_guidance:
            made_for = (
                "to run without guidance (0)"
                if recipe.guidance == 0
                else f"for guidance {recipe.guidance:g} to {recipe.max_guidance:g}"
            )
            notes.append(
                f"{name} is made {made_for}; guidance {guidance:g} runs the UNet twice per step and tends to "
                "over-saturate; used as asked"
            )
        return notes


def parse_few_step(text: str) -> ModelInfo:
    """``--few-step`` text (``turbo``, ``turbo:2``, ``lightning:4``, ``lcm``, ``lcm:6``) -> ModelInfo."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"--few-step {text!r} is empty; {USAGE}")
    kind, sep, steps = text.strip().lower().partition(":")
    if not sep:
        return ModelInfo.for_kind(kind)
    if not steps.isdigit():
        raise ConfigError(f"--few-step {text!r}: the steps after ':' must be a whole number; {USAGE}")
    return ModelInfo.for_kind(kind, int(steps))


def manifest_entry(kind: FewStepKind | str, steps: int | None = None) -> dict[str, Any]:
    """The manifest's ``model_info`` for ``kind`` (and its step variant)."""
    return ModelInfo.for_kind(kind, steps).manifest_entry()

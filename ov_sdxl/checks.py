"""Small validators the configuration dataclasses share: enum values, whole numbers, fractions, text.

    from ov_sdxl.checks import check_fraction, enum_value
    mode = enum_value(Mode, "img2img", "mode")             # ConfigError naming the choices when it is not one
    check_fraction("strength", 0.6, low_closed=False, high_closed=True)

Each raises ``ConfigError`` naming the value and the rule; none changes a value.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

from ov_sdxl.errors import ConfigError


def enum_value(cls: type[Enum], value: Any, what: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(m.value for m in cls)
        raise ConfigError(f"{what} {value!r} is not one of: {choices}") from None


def is_whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def set_field(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def check_text(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{name} must be text, got {type(value).__name__}")


def check_fraction(name: str, value: float, low_closed: bool, high_closed: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (0 <= value if low_closed else 0 < value) and (value <= 1 if high_closed else value < 1)
    if not ok:
        interval = f"{'[' if low_closed else '('}0, 1{']' if high_closed else ')'}"
        raise ConfigError(f"{name} {value!r} is outside {interval}")

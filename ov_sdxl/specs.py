"""The extra files a user names by text: LoRAs fused at conversion, textual-inversion embeddings used at run time.

    from ov_sdxl.specs import EmbeddingSpec, LoraSpec
    LoraSpec.parse("style.safetensors:0.8")            # LoraSpec(path=Path("style.safetensors"), scale=0.8)
    EmbeddingSpec.parse("unaestheticXLv31.safetensors:<bad>").token   # "<bad>"

Both read ``.safetensors`` only: a pickled file (``PICKLE_SUFFIXES``) can run code when it is loaded. Each spec is
checked when it is built (``ConfigError`` naming the value and the form to write); the files are read by the wing
that uses them (``ov_sdxl.convert.lora``, ``ov_sdxl.runtime.embeddings``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_sdxl.errors import ConfigError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # formats that unpickle, and so can run code
_LORA_USAGE = "write --lora FILE.safetensors or --lora FILE.safetensors:SCALE, e.g. --lora style.safetensors:0.8"
_EMBEDDING_USAGE = (
    "write FILE.safetensors or FILE.safetensors:TOKEN, e.g. --embedding unaestheticXLv31.safetensors:<bad>"
)
_BAD_TOKEN = re.compile(r"[\s()\[\]:\\]")  # whitespace and the prompt-weighting syntax


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA file and the scale it is fused with (1.0: as trained; 0: no effect; negative: inverted)."""

    path: Path
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, Path)) or not str(self.path).strip():
            raise ConfigError(f"LoRA file {self.path!r} must be a path to a .safetensors file; {_LORA_USAGE}")
        path = Path(self.path)
        _set(self, "path", path)
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise ConfigError(f"LoRA scale {scale!r} for {path} must be a finite number such as 0.8; {_LORA_USAGE}")
        _set(self, "scale", float(scale))
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES:
            raise ConfigError(
                f"LoRA file {path} is a pickle ({suffix}), which can run code when loaded: ov-sdxl reads LoRAs in "
                "the .safetensors format only; use the .safetensors release of this LoRA"
            )
        if suffix != ".safetensors":
            raise ConfigError(f"LoRA file {path} must be a .safetensors file; {_LORA_USAGE}")
        if not path.is_file():
            hint = " (a scale goes after the last ':' and must be a number)" if ":" in path.name else ""
            raise ConfigError(f"LoRA file {path} does not exist{hint}; {_LORA_USAGE}")

    @classmethod
    def parse(cls, text: str) -> LoraSpec:
        """``FILE`` or ``FILE:SCALE``: only a trailing ``:number`` is a scale, so ``C:/loras/a.safetensors`` works."""
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"LoRA {text!r} is empty; {_LORA_USAGE}")
        head, sep, tail = text.rpartition(":")
        if sep and head:
            if not tail.strip():
                raise ConfigError(f"LoRA {text!r} has nothing after ':'; {_LORA_USAGE}")
            try:
                scale = float(tail)
            except ValueError:
                if head.lower().endswith(".safetensors"):
                    raise ConfigError(f"LoRA scale {tail!r} in {text!r} is not a number; {_LORA_USAGE}") from None
                # otherwise the ':' belongs to the path (a drive letter, a folder name...)
            else:
                return cls(Path(head), scale)
        return cls(Path(text))

    @property
    def name(self) -> str:
        return self.path.name

    def __str__(self) -> str:
        return f"{self.path}:{self.scale:g}"


@dataclass(frozen=True)
class EmbeddingSpec:
    """An embedding file and its token (default: the file's stem in angle brackets, ``<stem>``)."""

    path: Path
    token: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, Path)) or not str(self.path).strip():
            raise ConfigError(
                f"embedding file {self.path!r} must be a path to a .safetensors file; {_EMBEDDING_USAGE}"
            )
        path = Path(self.path)
        if path.suffix.lower() != ".safetensors":
            raise ConfigError(
                f"embedding file {path} is not a .safetensors file: ov-sdxl reads embeddings as safetensors only "
                "(pickled .pt/.bin files can run code when loaded); convert it, or use the SDXL .safetensors release"
            )
        _set(self, "path", path)
        token = f"<{path.stem}>" if self.token is None else self.token
        if not isinstance(token, str) or not token or _BAD_TOKEN.search(token):
            raise ConfigError(
                f"embedding token {token!r} for {path} must be one word without spaces, brackets, ':' or '\\' "
                f"(those are prompt-weighting syntax); {_EMBEDDING_USAGE}"
            )
        _set(self, "token", token)

    @classmethod
    def parse(cls, text: str | Path | EmbeddingSpec | tuple) -> EmbeddingSpec:
        """``"FILE.safetensors"`` or ``"FILE.safetensors:TOKEN"`` (also a Path, a (path, token) pair or a spec)."""
        if isinstance(text, EmbeddingSpec):
            return text
        if isinstance(text, tuple) and len(text) == 2:
            return cls(*text)
        if isinstance(text, Path):
            return cls(text)
        if not isinstance(text, str):
            raise ConfigError(f"embedding {text!r} must be text or a path; {_EMBEDDING_USAGE}")
        cut = text.lower().rfind(".safetensors:")
        if cut >= 0:
            return cls(text[: cut + len(".safetensors")], text[cut + len(".safetensors:") :])
        return cls(text)

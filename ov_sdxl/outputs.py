"""Where images are written: the output path checked before any work, and existing files never replaced.

    from ov_sdxl.outputs import OutputPlan
    plan = OutputPlan.check("out.png", count=2)          # before any model loads: .png, a folder, writable
    plan.paths()                                          # [out-1.png, out-2.png], or the next free numbers
    plan.claim(index)                                     # at save time: the next name still free, reserved

One image goes to ``out.png``, or to ``out-2.png``, ``out-3.png``... when that exists; several go to ``out-1.png``,
``out-2.png``... skipping names taken. ``overwrite=True`` replaces files instead. A missing folder is an error unless
``make_dirs=True``, which creates it (``--make-dirs``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ov_sdxl.errors import OutputPathError

MAX_NUMBER = 100_000  # numbered names tried before giving up on a folder full of them


@dataclass(frozen=True)
class OutputPlan:
    """A checked output path for ``count`` images; ``overwrite``: replace existing files instead of numbering."""

    output: Path
    count: int = 1
    overwrite: bool = False

    @classmethod
    def check(
        cls, output: str | Path, count: int = 1, *, overwrite: bool = False, make_dirs: bool = False
    ) -> OutputPlan:
        """Refuse, before any work, an output the images could not be written to."""
        output = Path(output)
        if output.suffix.lower() != ".png":
            raise OutputPathError(f"output {output} must end in .png (the parameters are stored as PNG text)")
        if output.is_dir():
            raise OutputPathError(f"output {output} is a folder; give a file name in it, e.g. {output / 'out.png'}")
        folder = output.parent
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            raise OutputPathError(f"output {output}: {existing} is a file, not a folder")
        if existing != folder:
            if not make_dirs:
                raise OutputPathError(
                    f"output {output}: folder {folder} does not exist; create it, or add --make-dirs "
                    "(make_dirs=True in Python)"
                )
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputPathError(f"output {output}: cannot create folder {folder} ({exc.strerror})") from None
        _check_writable(folder, output)
        return cls(output, count, overwrite)

    def _names(self) -> Iterator[Path]:
        output = self.output
        if self.count == 1:
            yield output
        start = 2 if self.count == 1 else 1
        for number in range(start, MAX_NUMBER):
            yield output.with_name(f"{output.stem}-{number}{output.suffix}")

    def paths(self) -> list[Path]:
        """The names the images would get now (the numbered ones skip existing files unless overwriting)."""
        names = self._names()
        if self.overwrite:
            return [next(names) for _ in range(self.count)]
        return [path for path, _ in zip((p for p in names if not p.exists()), range(self.count), strict=False)]

    def claim(self, after: Path | None = None) -> Path:
        """The next name to write (after ``after``, the previous image's), reserved as an empty file so that a
        concurrent run cannot take it; with ``overwrite``, the planned name whatever is there."""
        names = self._names()
        if after is not None:
            for name in names:
                if name == after:
                    break
        for name in names:
            if self.overwrite:
                return name
            try:
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                return name
            except FileExistsError:
                continue
            except OSError as exc:
                raise OutputPathError(f"cannot write {name}: {exc.strerror}") from None
        raise OutputPathError(f"every numbered name of {self.output} up to {MAX_NUMBER} is taken; give another")


def _check_writable(folder: Path, output: Path) -> None:
    """Create and delete a file in ``folder``: the one test that also catches read-only and virtual file systems
    (/proc), where permission bits say nothing."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{output.stem}-", suffix=".check"):
            pass
    except OSError as exc:
        raise OutputPathError(f"output {output}: cannot write in folder {folder} ({exc.strerror})") from None

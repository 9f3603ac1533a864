"""Memory and disk: sizes as people write them, folder sizes, checks before a long job, a child process watched.

    from ov_sdxl.resources import parse_size, check_free, run_watched
    parse_size("8GB")                                   # 8_000_000_000 (also 8G, 7.5GiB, 512MB, a plain number)
    check_free(memory=6e9, disk=9e9, folder=Path("models"), max_memory=8e9)   # raises InsufficientResourcesError
    peak = run_watched([sys.executable, "-m", "ov_sdxl.convert.export_part", "job.json"], limit=8e9)
    folder_size("models/sdxl")                          # bytes of every file below a folder

``run_watched`` samples the resident memory of the child and all of its descendants (the whole process tree,
shared pages counted once) every few tenths of a second; over ``limit`` it stops the tree and raises, so
``--max-memory`` is a real cap.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_sdxl.errors import ConfigError, InsufficientResourcesError

log = logging.getLogger(__name__)

GB = 1e9
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """Bytes from ``8GB``, ``8G``, ``7.5GiB``, ``512MB`` or a plain number of bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"size {text!r} is not a size like 8GB, 7.5GiB or 512MB")
    number, unit, binary = match.groups()
    value = float(number) * (1024 if binary else 1000) ** _POWERS[unit.lower()]
    if value <= 0:
        raise ConfigError(f"size {text!r} must be more than zero")
    return int(value)


def gb(value: float) -> str:
    return f"{value / GB:.1f} GB"


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def check_free(memory: float, disk: float, folder: Path, max_memory: float | None = None) -> None:
    """Refuse at once, naming what is needed and what is there, when memory or disk is short."""
    if max_memory is not None and memory > max_memory:
        raise InsufficientResourcesError(
            f"this conversion needs about {gb(memory)} of memory at its peak and --max-memory allows "
            f"{gb(max_memory)}; raise --max-memory or choose a lighter --weights"
        )
    free_memory = available_memory()
    if memory > free_memory:
        raise InsufficientResourcesError(
            f"this conversion needs about {gb(memory)} of free memory at its peak and {gb(free_memory)} is "
            "available; close other programs and run again"
        )
    folder = next(p for p in (folder, *folder.parents) if p.exists())
    free_disk = shutil.disk_usage(folder).free
    if disk > free_disk:
        raise InsufficientResourcesError(
            f"this conversion needs about {gb(disk)} of free disk in {folder} (output and temporary files) and "
            f"{gb(free_disk)} is free; free some space or choose another --output"
        )


def _resident(process: Any, root: bool) -> int:
    """A process's resident memory; its proportional share (PSS) where Linux gives it cheaply, so that pages a
    forked child still shares with its parent are not counted twice (RSS where nothing is shared). A descendant
    whose share cannot be read (it is exiting, or has just forked) counts 0 rather than its parent's pages again."""
    try:
        with open(f"/proc/{process.pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return process.memory_info().rss if root else 0


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (0 once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += _resident(process, root=process is root)
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class Watched:
    returncode: int
    peak_rss: int
    seconds: float


def run_watched(command: Sequence[str], limit: float | None = None, interval: float = 0.25) -> Watched:
    """Run ``command``; sample its process tree's RSS; stop it and raise InsufficientResourcesError over ``limit``.

    Ctrl-C stops the child too (it shares the terminal's process group) and propagates as KeyboardInterrupt.
    """
    started = time.monotonic()
    child = subprocess.Popen(list(command))
    peak = 0
    try:
        while child.poll() is None:
            rss = tree_rss(child.pid)
            peak = max(peak, rss)
            if limit is not None and rss > limit:
                _stop(child)
                raise InsufficientResourcesError(
                    f"the export used {gb(rss)} of memory, over --max-memory {gb(limit)}; it was stopped. "
                    "Raise --max-memory or choose a lighter --weights"
                )
            time.sleep(interval)
    except BaseException:
        _stop(child)
        raise
    return Watched(returncode=child.returncode, peak_rss=peak, seconds=time.monotonic() - started)


def _stop(child: subprocess.Popen) -> None:
    import psutil

    if child.poll() is not None:
        return
    try:
        descendants = psutil.Process(child.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for process in [*descendants]:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    child.kill()
    child.wait()


def folder_size(path: str | Path) -> int:
    """Bytes of every file below ``path`` (a single file: its size)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

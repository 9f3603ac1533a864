"""Memory and disk: sizes as people write them, checks before a long job, and a child process watched for RSS.

    from ov_sdxl.resources import parse_size, check_free, run_watched
    parse_size("8GB")                                   # 8_000_000_000 (also 8G, 7.5GiB, 512MB, a plain number)
    check_free(memory=6e9, disk=9e9, folder=Path("models"), max_memory=8e9)   # raises InsufficientResourcesError
    peak = run_watched([sys.executable, "-m", "ov_sdxl.export_part", "job.json"], limit=8e9)
    with ReleaseMappedPages([Path("unet/openvino_model.bin")]): ...   # read pages of that file given back

``run_watched`` samples the resident memory of the child and all of its descendants (the whole process tree,
shared pages counted once) every few tenths of a second; over ``limit`` it stops the tree and raises, so
``--max-memory`` is a real cap.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
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


class ReleaseMappedPages:
    """While a sub-model is read from memory-mapped files, give the pages already read back to the system.

    Weights are memory-mapped (the source's safetensors while exporting, the written IR while compressing), and
    every page read stays resident: the UNet's 5.1 GB of fp16 next to what is built from it. Every ``interval``
    seconds ``madvise(MADV_DONTNEED)`` drops the mapped pages of ``paths`` from this process; a page touched again
    is read back from the file (usually still in the page cache). Only mappings with no copy-on-write pages are
    released, so a weight changed in place (a fused LoRA) is never lost. ``folders`` releases every file mapped
    from below them: OpenVINO maps a compiled-model cache blob (named by a hash) while importing it.
    """

    def __init__(self, paths: list[Path], folders: Sequence[Path] = (), interval: float = 0.25):
        self.paths, self.stop, self.interval = {str(p.resolve()) for p in paths}, None, interval
        self.folders = tuple(str(f.resolve()) + os.sep for f in folders)

    def _released(self, path: str) -> bool:
        return path in self.paths or path.startswith(self.folders)

    def _clean_ranges(self) -> list[tuple[int, int]]:
        """The mappings of our files that hold no copy-on-write page. ``/proc/self/maps`` is cheap to read; only a
        writable mapping needs ``smaps`` (which walks the page tables: tens of ms on a big process) for that check."""
        read_only, writable = [], set()
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                head = line.split(maxsplit=5)
                if len(head) == 6 and self._released(head[5].strip()):
                    start, end = (int(address, 16) for address in head[0].split("-"))
                    if "w" in head[1]:
                        writable.add((start, end))
                    else:
                        read_only.append((start, end))
        return read_only + (self._without_anonymous(writable) if writable else [])

    @staticmethod
    def _without_anonymous(ranges: set[tuple[int, int]]) -> list[tuple[int, int]]:
        clean, current = [], None
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as smaps:
            for line in smaps:
                head = line.split(maxsplit=5)
                if "-" in head[0] and len(head) >= 5:  # a mapping's header line
                    start, end = (int(address, 16) for address in head[0].split("-"))
                    current = (start, end) if (start, end) in ranges else None
                elif current is not None and head[0] == "Anonymous:":
                    if int(head[1]) == 0:
                        clean.append(current)
                    current = None
        return clean

    def release(self) -> None:
        """Give the read pages of ``paths`` back now (Linux; elsewhere nothing)."""
        import ctypes

        if not sys.platform.startswith("linux") or not (self.paths or self.folders):
            return
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        for start, end in self._clean_ranges():
            madvise(start, end - start, 4)  # MADV_DONTNEED

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            self.release()

    def __enter__(self) -> ReleaseMappedPages:
        import threading

        if sys.platform.startswith("linux") and (self.paths or self.folders):
            self.stop = threading.Event()
            threading.Thread(target=self._loop, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stop is not None:
            self.stop.set()
            self.release()  # what was read since the last pass

"""Give back the pages of memory-mapped weight files once read, without ever losing a byte of them.

    from ov_sdxl.page_release import ReleaseMappedPages
    with ReleaseMappedPages([Path("unet/openvino_model.bin")], folders=[cache]):   # pages read are given back
        compiled = core.compile_model(xml, "CPU")

OpenVINO and torch read weights through ``mmap``, and every page read stays resident next to what is built from
it (the UNet's 5.1 GB of fp16 next to its compiled copy). ``madvise(MADV_DONTNEED)`` drops such pages; on Linux a
page touched again is read back from the file (usually still in the page cache). Some kernels that emulate Linux
have filled such pages with zeros instead, which would corrupt what a model reads: each ``ReleaseMappedPages``
first checks (once per process) on a scratch file that this system reads a released file mapping back, and
releases nothing if not.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MADV_DONTNEED = 4
PROBE_SIZE = 32 * 1024 * 1024  # spans whole huge pages, as a weight file's mapping does


@functools.cache  # a fact about this system: checked once per process and folder (about 0.2 s)
def dontneed_reads_files_back(folder: str | None = None, size: int = PROBE_SIZE) -> bool:
    """Whether ``MADV_DONTNEED`` on a file mapping, shared and private, gives the file's bytes on the next read.

    Checked on a scratch file in ``folder`` (the temporary folder by default); False off Linux, and False (with a
    warning) where the check fails or cannot be made.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        verdict = _check_on_scratch_file(folder, size)
    except OSError as exc:
        log.warning("could not check that released file pages are read back (%s)", exc)
        verdict = False
    if not verdict:
        log.warning("mapped weight pages are not given back on this system, so memory use will be higher")
    return verdict


@functools.cache
def _libc() -> Any:
    """The C library's mmap, madvise and munmap, typed once (release() calls madvise four times a second)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    return libc


def _check_on_scratch_file(folder: str | None, size: int) -> bool:
    import ctypes
    import mmap
    import tempfile

    libc = _libc()
    pattern = bytes(range(256)) * (size // 256)
    with tempfile.NamedTemporaryFile(dir=folder, prefix="ov-sdxl-probe-") as scratch:
        scratch.write(pattern)
        scratch.flush()
        for flags in (mmap.MAP_SHARED, mmap.MAP_PRIVATE):
            address = libc.mmap(None, size, mmap.PROT_READ, flags, scratch.fileno(), 0)
            if address in (None, ctypes.c_void_p(-1).value):
                return False
            try:
                if ctypes.string_at(address, size) != pattern or libc.madvise(address, size, MADV_DONTNEED) != 0:
                    return False
                if ctypes.string_at(address, size) != pattern:  # Linux reads the file back; some emulations zero it
                    return False
            finally:
                libc.munmap(address, size)
    return True


class ReleaseMappedPages:
    """While a sub-model is read from memory-mapped files, give the pages already read back to the system.

    Every ``interval`` seconds the mapped pages of ``paths`` are dropped from this process (the source's safetensors
    while exporting, the written IR while compressing or compiling). Only mappings with no copy-on-write pages are
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
        """Give the read pages of ``paths`` back now (where the check passed; elsewhere nothing)."""
        if not (self.paths or self.folders) or not dontneed_reads_files_back():
            return
        for start, end in self._clean_ranges():
            _libc().madvise(start, end - start, MADV_DONTNEED)

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

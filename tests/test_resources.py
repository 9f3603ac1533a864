"""Memory and disk helpers: mapped pages given back without losing data; the preflight names what is short."""

import mmap
import time
from pathlib import Path

import pytest

from ov_sdxl import InsufficientResourcesError
from ov_sdxl.resources import ReleaseMappedPages, check_free

SIZE = 32 * 1024 * 1024


def mapping_rss_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path``."""
    total, current = 0, False
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as smaps:
        for line in smaps:
            head = line.split()
            if "-" in head[0] and len(head) >= 5:
                current = len(head) >= 6 and head[5] == str(path.resolve())
            elif current and head[0] == "Rss:":
                total += int(head[1])
    return total


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * (SIZE // 256))
    return path


def test_read_pages_are_given_back_and_read_again(weights):
    with open(weights, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        assert sum(mapped[i + 1] for i in range(0, SIZE, 4096)) > 0  # every page read once
        assert mapping_rss_kb(weights) >= SIZE // 1024 * 0.9
        with ReleaseMappedPages([weights]):
            time.sleep(2.5)
            assert mapping_rss_kb(weights) < SIZE // 1024 * 0.1
            assert mapped[:256] == bytes(range(256)) and mapped[SIZE - 1] == 255  # read back from the file


def test_files_below_a_folder_are_given_back(weights, tmp_path_factory):
    """A compiled-model cache blob is named by a hash: every file mapped from below the folder is released."""
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "other.bin"
    elsewhere.write_bytes(weights.read_bytes())
    with open(weights, "rb") as a, open(elsewhere, "rb") as b:
        with (
            mmap.mmap(a.fileno(), 0, access=mmap.ACCESS_READ) as blob,
            mmap.mmap(b.fileno(), 0, access=mmap.ACCESS_READ) as other,
        ):
            for mapped in (blob, other):
                assert sum(mapped[i] for i in range(1, SIZE, 4096)) > 0
            ReleaseMappedPages([], [weights.parent]).release()
            assert mapping_rss_kb(weights) < SIZE // 1024 * 0.1
            assert mapping_rss_kb(elsewhere) >= SIZE // 1024 * 0.9
            assert blob[SIZE - 1] == 255


def test_pages_changed_in_place_are_kept(weights):
    """A mapping with copy-on-write pages (a weight changed in place, such as a fused LoRA) is left alone."""
    with open(weights, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        mapped[:4] = b"LoRA"
        with ReleaseMappedPages([weights]):
            time.sleep(2.5)
        assert mapped[:4] == b"LoRA"


def test_writable_mapping_only_read_is_given_back(weights):
    """A private writable mapping (as torch maps a safetensors file) with no page changed is released."""
    with open(weights, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        assert sum(mapped[i] for i in range(1, SIZE, 4096)) > 0
        assert mapping_rss_kb(weights) >= SIZE // 1024 * 0.9
        ReleaseMappedPages([weights]).release()
        assert mapping_rss_kb(weights) < SIZE // 1024 * 0.1
        assert mapped[SIZE - 1] == 255


def test_preflight_names_need_and_free(tmp_path):
    with pytest.raises(InsufficientResourcesError, match=r"needs about 1000000\.0 GB of free memory .* available"):
        check_free(memory=1e15, disk=0, folder=tmp_path)
    with pytest.raises(InsufficientResourcesError, match=r"needs about 1000000\.0 GB of free disk in .* is free"):
        check_free(memory=0, disk=1e15, folder=tmp_path / "not" / "yet")

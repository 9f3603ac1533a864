"""Memory and disk helpers: mapped pages given back without losing data; the preflight names what is short."""

import mmap
import time
from pathlib import Path

import pytest

from ov_sdxl import InsufficientResourcesError, page_release
from ov_sdxl.page_release import ReleaseMappedPages, dontneed_reads_files_back
from ov_sdxl.resources import check_free

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


@pytest.fixture
def releasing(tmp_path):
    """Tests that pages are given back run where this system reads a released file mapping back."""
    if not dontneed_reads_files_back(str(tmp_path)):
        pytest.skip("this system does not read a released file mapping back: ReleaseMappedPages releases nothing")


def test_read_pages_are_given_back_and_read_again(weights, releasing):
    with open(weights, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        assert sum(mapped[i + 1] for i in range(0, SIZE, 4096)) > 0  # every page read once
        assert mapping_rss_kb(weights) >= SIZE // 1024 * 0.9
        with ReleaseMappedPages([weights]):
            time.sleep(2.5)
            assert mapping_rss_kb(weights) < SIZE // 1024 * 0.1
            assert mapped[:256] == bytes(range(256)) and mapped[SIZE - 1] == 255  # read back from the file


def test_files_below_a_folder_are_given_back(weights, tmp_path_factory, releasing):
    """A compiled-model cache blob is named by a hash: every file mapped from below the folder is released."""
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "other.bin"
    elsewhere.write_bytes(weights.read_bytes())
    with open(weights, "rb") as a, open(elsewhere, "rb") as b:
        with (
            mmap.mmap(a.fileno(), 0, access=mmap.ACCESS_READ) as blob,
            mmap.mmap(b.fileno(), 0, access=mmap.ACCESS_READ) as other,
        ):
            content = weights.read_bytes()
            assert blob[:] == content and other[:] == content  # every page read
            ReleaseMappedPages([], [weights.parent]).release()
            assert mapping_rss_kb(weights) < SIZE // 1024 * 0.1
            assert mapping_rss_kb(elsewhere) >= SIZE // 1024 * 0.9
            assert blob[:] == content


def test_pages_changed_in_place_are_kept(weights):
    """A mapping with copy-on-write pages (a weight changed in place, such as a fused LoRA) is left alone."""
    with open(weights, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        mapped[:4] = b"LoRA"
        with ReleaseMappedPages([weights]):
            time.sleep(2.5)
        assert mapped[:4] == b"LoRA"


def test_writable_mapping_only_read_is_given_back(weights, releasing):
    """A private writable mapping (as torch maps a safetensors file) with no page changed is released."""
    with open(weights, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        assert sum(mapped[i] for i in range(1, SIZE, 4096)) > 0
        assert mapping_rss_kb(weights) >= SIZE // 1024 * 0.9
        ReleaseMappedPages([weights]).release()
        assert mapping_rss_kb(weights) < SIZE // 1024 * 0.1
        assert mapped[SIZE - 1] == 255


def test_nothing_is_released_where_files_would_not_be_read_back(weights, monkeypatch, caplog):
    """On a system whose MADV_DONTNEED would not read a file mapping back (some emulated kernels zero the pages),
    the pages stay resident and the user is told why memory use is higher."""
    monkeypatch.setattr(page_release, "_check_on_scratch_file", lambda folder, size: False)
    page_release.dontneed_reads_files_back.cache_clear()
    try:
        with open(weights, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            assert len(mapped[:]) == SIZE  # every page read
            ReleaseMappedPages([weights]).release()
            assert mapping_rss_kb(weights) >= SIZE // 1024 * 0.9
    finally:
        page_release.dontneed_reads_files_back.cache_clear()  # the real check again for later tests
    assert "pages are not given back on this system" in caplog.text


def test_a_check_that_cannot_be_made_releases_nothing(tmp_path, caplog):
    """No scratch file can be written (a folder that does not exist here): the check says no, and why."""
    assert not page_release.dontneed_reads_files_back(str(tmp_path / "missing"))
    assert "could not check" in caplog.text


def test_the_check_agrees_with_a_release_and_leaves_nothing_behind(weights, tmp_path_factory, monkeypatch):
    """The check's verdict is what a forced release of a shared mapping does to the bytes read back."""
    scratch = tmp_path_factory.mktemp("scratch")
    verdict = dontneed_reads_files_back(str(scratch))
    assert list(scratch.iterdir()) == []
    with open(weights, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        content = weights.read_bytes()
        assert len(mapped[:]) == SIZE  # every page read
        monkeypatch.setattr(page_release, "dontneed_reads_files_back", lambda: True)  # release whatever it says
        ReleaseMappedPages([weights]).release()
        assert mapping_rss_kb(weights) < SIZE // 1024 * 0.1
        assert (mapped[:] == content) == verdict


def test_preflight_names_need_and_free(tmp_path):
    with pytest.raises(InsufficientResourcesError, match=r"needs about 1000000\.0 GB of free memory .* available"):
        check_free(memory=1e15, disk=0, folder=tmp_path)
    with pytest.raises(InsufficientResourcesError, match=r"needs about 1000000\.0 GB of free disk in .* is free"):
        check_free(memory=0, disk=1e15, folder=tmp_path / "not" / "yet")

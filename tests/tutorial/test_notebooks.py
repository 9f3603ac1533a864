"""The tutorials in notebooks/ run end to end on the tiny model, and are committed without outputs.

Each notebook runs in a fresh kernel (the same interpreter as pytest) with OV_SDXL_TINY=1 and HF_HUB_OFFLINE=1,
in a temporary working folder shared by all of them, as a user's clone shares its models/ folder. That folder
starts with the tiny model and the tiny sources the rest of the suite builds anyway, so the notebooks' own
conversion cells find them done, except 01-convert's second conversion (the base in int8), which really runs.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell; the slowest, 01's int8 conversion of the tiny base, takes about a minute
IMAGES_EXPECTED = {"01": 1, "02": 2, "03": 3, "04": 3}  # at least this many inline images per notebook


def test_there_are_tutorials_in_order():
    names = [path.name for path in NOTEBOOKS]
    assert len(names) >= 4, names
    assert names[0].startswith("01-convert") and names[-1].startswith("05-demo"), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for number, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {number} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {number} has an execution count"
        assert "execution" not in cell.metadata, f"{path.name} cell {number} carries execution timing metadata"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_reads_the_environment(path):
    nb = nbformat.read(path, as_version=4)
    first = next(cell for cell in nb.cells if cell.cell_type == "code").source
    for name in ("OV_SDXL_MODEL_DIR", "OV_SDXL_DEVICE", "OV_SDXL_TINY", "tutorial.choose_model("):
        assert name in first, f"{path.name}: the first code cell should use {name}"


def _check_kernel_is_this_python() -> None:
    """nbclient's "python3" kernel must run this interpreter (jupyter_client swaps a bare "python" for it)."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    program = spec.argv[0]
    if program not in ("python", "python3") and Path(program).resolve() != Path(sys.executable).resolve():
        pytest.fail(
            f"the python3 kernel spec in {spec.resource_dir} runs {program}, not {sys.executable}; "
            "remove that kernel spec or reinstall it with: python -m ipykernel install --user"
        )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model, tiny_sources):
    """The notebooks' working folder, holding models/ as a clone's would after the tiny model was built."""
    from ov_sdxl.tutorial import choose_model

    work = tmp_path_factory.mktemp("notebooks-run")
    choice = choose_model(tiny=True, root=work / "models")
    shutil.copytree(tiny_model, choice.model_dir)  # built by build_tiny_model, as the notebooks would build it
    shutil.copytree(tiny_sources[0].parent, choice.model_dir.parent / "tiny-sources")
    return work


def _run(path: Path, work: Path, monkeypatch) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    for name in ("OV_SDXL_MODEL_DIR", "OV_SDXL_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OV_SDXL_TINY", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CI", "1")  # 05-demo closes its server
    monkeypatch.setenv("OV_SDXL_CACHE_DIR", str(work / "compiled-cache"))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("PYTHONPATH", str(ROOT), prepend=os.pathsep)  # the kernel imports this checkout's ov_sdxl
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(work)}}
    )
    client.execute()  # raises CellExecutionError naming the cell and the traceback
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_tiny_model(path, workdir, monkeypatch):
    _check_kernel_is_this_python()
    repo_before = {p.name for p in (ROOT / "notebooks").iterdir()} | {p.name for p in (ROOT / "models").iterdir()}
    nb = _run(path, workdir, monkeypatch)

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    setup_output = "".join(out.get("text", "") for out in code[0].outputs)
    assert "tiny random SDXL" in setup_output and "OV_SDXL_TINY=1" in setup_output, setup_output
    outputs = [out for cell in code for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= IMAGES_EXPECTED.get(path.name[:2], 0), f"{path.name}: {len(images)} images"
    repo_after = {p.name for p in (ROOT / "notebooks").iterdir()} | {p.name for p in (ROOT / "models").iterdir()}
    assert repo_after == repo_before, "a notebook wrote into the repository"
    if path.name.startswith("01"):
        assert (workdir / "models" / "tiny-base-int8" / "ov_sdxl.json").is_file()

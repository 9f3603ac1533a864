"""The README and docs/ stay true: their commands run here, offline, on the tiny model (hub ids fail with the
offline error); each line of a command block is either run here or named below with the test that covers it."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# README first, then the pages in the order a reader meets them; a new page must be added here to be run
PAGES = ["README.md", *(f"docs/{name}.md" for name in ("install", "convert", "generate", "demo", "notebooks"))]
PAGES += [f"docs/{name}.md" for name in ("benchmark", "errors", "architecture")]
RUN = ("ov-sdxl ", "python convert.py ")
NOT_RUN_HERE = {  # line start -> what runs it instead
    "ov-sdxl demo": "tests/demo/test_demo.py (a server)",
    "ov-sdxl bench": "tests/bench/ on the tiny model (these build a full-size SDXL)",
    "pip install": ".ci/run (the plain route; PyTorch's own index is not reachable here)",
    "python -m pytest": ".ci/run",
    "ruff ": ".ci/run",
    "jupyter lab": "tests/tutorial/test_notebooks.py (every notebook, executed)",
    "OV_SDXL_TINY=1 jupyter lab": "tests/tutorial/test_notebooks.py",
    "S=": "OpenVINO's benchmark_app, not ov-sdxl",
    "benchmark_app": "OpenVINO's benchmark_app, not ov-sdxl",
}


def text(page: str) -> str:
    return (ROOT / page).read_text(encoding="utf-8")


def blocks(language: str, page: str = "README.md") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text(page), flags=re.S)


def command_lines(page: str) -> list[str]:
    """The commands of a page's bash blocks: continuation lines (after a trailing \\) are part of the one before."""
    return [
        line for block in blocks("bash", page) for line in re.sub(r"\\\n\s*", "", block).strip().splitlines() if line
    ]


def test_every_page_is_listed():
    assert sorted(PAGES[1:]) == sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
    assert len(text("README.md").splitlines()) <= 200  # a front door; the rest is in docs/


def test_every_command_is_run_somewhere():
    unknown = [
        (page, line) for page in PAGES for line in command_lines(page) if not line.startswith((*RUN, *NOT_RUN_HERE))
    ]
    assert not unknown, unknown
    python = {page: len(blocks("python", page)) for page in PAGES if blocks("python", page)}
    assert python == {"README.md": 1, "docs/demo.md": 1, "docs/generate.md": 1}  # each run by a test named below


def test_first_lines_are_install_run_and_test():
    first = blocks("bash")[0].strip().splitlines()
    assert first[0] == 'pip install -e ".[all]"'
    assert first[1].startswith("ov-sdxl tiny --output models/tiny && ov-sdxl generate --model models/tiny")
    assert first[2] == "python -m pytest -q"
    assert first[2] in (ROOT / ".ci" / "run").read_text()  # CI runs the README's test command


@pytest.mark.slow
def test_documented_commands_run(tiny_model, tmp_path):
    """Every ov-sdxl / convert.py line of the README and docs/, in order, in a fresh folder holding models/tiny."""
    shutil.copytree(tiny_model, tmp_path / "models" / "tiny")  # built by the same function as `ov-sdxl tiny`
    mask = Image.new("L", (512, 512), 0)  # the user's own mask of docs/generate.md's inpainting: white = repaint
    mask.paste(255, (192, 256, 320, 384))
    mask.save(tmp_path / "mask.png")
    shutil.copy(ROOT / "convert.py", tmp_path)
    bindir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bindir + os.pathsep + os.environ["PATH"],
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    commands = [
        line
        for page in PAGES
        for line in command_lines(page)
        if line.startswith(RUN) and not line.startswith(tuple(NOT_RUN_HERE))
    ]
    assert len(commands) >= 20
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        if ".safetensors" in command:  # a file of the user's (a fine-tune, a LoRA): here it is missing, said at once
            missing = ("does not exist", "neither an existing folder or file")
            assert done.returncode == 2 and any(m in done.stderr for m in missing), (command, done.stderr)
        elif "stabilityai/" in command:  # needs the hub: here it must stop at once with the offline message
            assert done.returncode == 2 and "the hub is offline" in done.stderr, (command, done.stderr)
        elif "models/sdxl" in command:  # the real model that the hub command would have converted
            assert done.returncode == 2 and "does not exist; convert one with" in done.stderr, (command, done.stderr)
        else:
            assert done.returncode == 0, (command, done.stderr)
    names = ("out.png", "fox.png", "fox-watercolor.png", "fox-refined.png", "foxes-1.png", "foxes-2.png")
    names += (
        "fox-weighted.png",
        "grid.png",
        "lighthouse-marked.png",
        "fox-reuse.png",
        "fox-reuse-deeper.png",
        "fox-taesdxl.png",
        "fox-scarf.png",
        "fox-scarf-crop.png",
        "fox-wide.png",
        "fox-scarf-refined.png",
    )
    for name in names:
        assert (tmp_path / name).is_file(), name


@pytest.mark.slow
def test_readme_python_api(tiny_model, tmp_path, monkeypatch):
    shutil.copytree(tiny_model, tmp_path / "models" / "tiny")
    monkeypatch.chdir(tmp_path)
    (code,) = [block for block in blocks("python") if "SDXLRuntime" in block]  # the demo's: test_demo.py
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / "lighthouse.png").is_file()
    assert namespace["edited"].images[0].size == (512, 512)


@pytest.mark.slow
def test_generate_page_preview_example(runtime, tmp_path, monkeypatch):
    """docs/generate.md's live-preview example, on the tiny model: one small PNG per step, named by stage and step."""
    monkeypatch.chdir(tmp_path)
    (code,) = blocks("python", "docs/generate.md")
    exec(compile(code, "docs/generate.md", "exec"), {"runtime": runtime})  # noqa: S102 - our own docs
    steps = runtime.defaults["steps"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(f"base-{i}.png" for i in range(1, steps + 1))

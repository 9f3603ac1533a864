"""The README stays true: its commands run here, offline, on the tiny model (hub ids fail with the offline error)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_first_lines_are_install_run_and_test():
    first = blocks("bash")[0].strip().splitlines()
    assert first[0] == 'pip install -e ".[all]"'
    assert first[1].startswith("ov-sdxl tiny --output models/tiny && ov-sdxl generate --model models/tiny")
    assert first[2] == "python -m pytest -q"
    assert first[2] in (ROOT / ".ci" / "run").read_text()  # CI runs the README's test command


@pytest.mark.slow
def test_readme_commands_run(tiny_model, tmp_path):
    """Every ov-sdxl / convert.py line of the README, in order, in a fresh folder holding models/tiny."""
    shutil.copytree(tiny_model, tmp_path / "models" / "tiny")  # built by the same function as `ov-sdxl tiny`
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
        for block in blocks("bash")
        for line in block.strip().splitlines()
        if line.startswith(("ov-sdxl ", "python convert.py "))
        and not line.startswith(("ov-sdxl demo", "ov-sdxl bench"))
    ]  # the demo's commands start a server (tests/test_demo.py runs them); the benchmarks build a full-size SDXL
    # (tests/test_convert_bench.py and tests/test_bench.py run them on the tiny model)
    assert len(commands) >= 7
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
    for name in (*names, "fox-weighted.png", "grid.png", "lighthouse-marked.png"):
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

"""Comparison grids: rows are seeds, columns are models, every cell the model's own image for that seed."""

import shutil

import pytest
from conftest import PROMPT, mean_abs_diff

from ov_sdxl import ConfigError, GenerationParams, ModelNotFoundError
from ov_sdxl.runtime.compare import LABEL_HEIGHT, LABEL_WIDTH, compare_models


def test_grid_of_two_models_and_two_seeds(tiny_model, tmp_path, runtime):
    other = tmp_path / "copy-of-tiny"
    shutil.copytree(tiny_model, other)
    params = GenerationParams(prompt=PROMPT, steps=3, width=64, height=64)
    grid = compare_models([tiny_model, other], params, seeds=[1, 2], runtime_options={"precision": "f32"})
    assert grid.size == (LABEL_WIDTH + 2 * 64, LABEL_HEIGHT + 2 * 64)
    expected = runtime.text2img(PROMPT, steps=3, seed=2, width=64, height=64).images[0]
    cell = grid.crop((LABEL_WIDTH + 64, LABEL_HEIGHT + 64, LABEL_WIDTH + 128, LABEL_HEIGHT + 128))
    assert mean_abs_diff(cell, expected) == 0  # row "seed 2", second model (identical weights)
    first_row = grid.crop((LABEL_WIDTH, LABEL_HEIGHT, LABEL_WIDTH + 64, LABEL_HEIGHT + 64))
    assert mean_abs_diff(first_row, cell) > 5  # another seed, another image
    labels = grid.crop((0, 0, grid.width, LABEL_HEIGHT)).convert("L")
    assert min(labels.getdata()) < 128  # the column labels are drawn


def test_compare_checks_every_model_before_generating(tiny_model, tmp_path):
    params = GenerationParams(prompt=PROMPT, steps=2, width=64, height=64)
    with pytest.raises(ModelNotFoundError, match="missing-model does not exist"):
        compare_models([tiny_model, tmp_path / "missing-model"], params, seeds=[1])
    with pytest.raises(ConfigError, match="leave num_images at 1"):
        compare_models([tiny_model], GenerationParams(prompt="x", num_images=2), seeds=[1])

"""The synthetic full-size SDXL has the real models' architecture: its parameter counts match the references."""

import pytest

from ov_sdxl.convert.reference import reference
from ov_sdxl.testing import count_parameters


@pytest.mark.parametrize("stage", ["base", "refiner"])
def test_parameter_counts_match_sdxl(stage):
    counts = count_parameters(stage)
    expected = {name: float(value) for name, value in reference()[stage]["parameters"].items()}
    for name, value in expected.items():
        assert counts[name] == pytest.approx(value, rel=0.01), name
    assert set(counts) == (
        {"unet", "text_encoder", "text_encoder_2", "vae"} - ({"text_encoder"} if stage == "refiner" else set())
    )

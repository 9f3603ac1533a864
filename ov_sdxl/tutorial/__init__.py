"""The tutorial wing: what the notebooks in ``notebooks/`` call.

    from ov_sdxl import tutorial
    choice = tutorial.choose_model(None, "CPU", tiny=True)      # which model, where, with which settings
    tutorial.ensure_model(choice)
    with tutorial.measure("load") as m:
        ...                                                     # m.seconds, m.peak_mb once the block is done

- ``models``: the tutorials' model and settings; ``measurements``: sizes, time and memory, tables, images in a row;
- ``notebook``: logging, devices, ports and CI for the notebooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ov_sdxl.exports import lazy_exports

if TYPE_CHECKING:
    from ov_sdxl.tutorial.measurements import (
        Measurement,
        Table,
        human_size,
        measure,
        measurements_table,
        part_sizes,
        side_by_side,
        size_table,
    )
    from ov_sdxl.tutorial.models import (
        BASE_ID,
        REAL_SETTINGS,
        REFINER_ID,
        TINY_SETTINGS,
        ModelChoice,
        base_source,
        choose_model,
        ensure_model,
        hub_status,
        models_root,
    )
    from ov_sdxl.tutorial.notebook import device_options, free_port, import_libraries, notebook_logging, under_ci

__getattr__ = lazy_exports(
    __name__,
    {
        "BASE_ID": "ov_sdxl.tutorial.models",
        "Measurement": "ov_sdxl.tutorial.measurements",
        "ModelChoice": "ov_sdxl.tutorial.models",
        "REAL_SETTINGS": "ov_sdxl.tutorial.models",
        "REFINER_ID": "ov_sdxl.tutorial.models",
        "TINY_SETTINGS": "ov_sdxl.tutorial.models",
        "Table": "ov_sdxl.tutorial.measurements",
        "base_source": "ov_sdxl.tutorial.models",
        "choose_model": "ov_sdxl.tutorial.models",
        "device_options": "ov_sdxl.tutorial.notebook",
        "ensure_model": "ov_sdxl.tutorial.models",
        "free_port": "ov_sdxl.tutorial.notebook",
        "hub_status": "ov_sdxl.tutorial.models",
        "folder_size": "ov_sdxl.tutorial.measurements",
        "human_size": "ov_sdxl.tutorial.measurements",
        "import_libraries": "ov_sdxl.tutorial.notebook",
        "measure": "ov_sdxl.tutorial.measurements",
        "measurements_table": "ov_sdxl.tutorial.measurements",
        "models_root": "ov_sdxl.tutorial.models",
        "notebook_logging": "ov_sdxl.tutorial.notebook",
        "part_sizes": "ov_sdxl.tutorial.measurements",
        "side_by_side": "ov_sdxl.tutorial.measurements",
        "size_table": "ov_sdxl.tutorial.measurements",
        "under_ci": "ov_sdxl.tutorial.notebook",
    },
)
__all__ = [
    "REAL_SETTINGS",
    "TINY_SETTINGS",
    "BASE_ID",
    "Measurement",
    "ModelChoice",
    "REFINER_ID",
    "Table",
    "base_source",
    "choose_model",
    "folder_size",
    "device_options",
    "ensure_model",
    "free_port",
    "hub_status",
    "human_size",
    "import_libraries",
    "measure",
    "measurements_table",
    "models_root",
    "notebook_logging",
    "part_sizes",
    "side_by_side",
    "size_table",
    "under_ci",
]

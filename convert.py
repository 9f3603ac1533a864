"""Convert SDXL base (+ refiner) to OpenVINO IR: the same command as ``ov-sdxl convert``.

    python convert.py --base stabilityai/stable-diffusion-xl-base-1.0 \
        --refiner stabilityai/stable-diffusion-xl-refiner-1.0 --output models/sdxl --weights int8
"""

import sys

from ov_sdxl.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))

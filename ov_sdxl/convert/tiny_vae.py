"""TAESDXL, the tiny distilled SDXL autoencoder (diffusers' ``AutoencoderTiny``), its decoder exported to IR.

    python convert.py --base ... --output models/sdxl --taesdxl madebyollin/taesdxl   # hub id or local folder
    python -m ov_sdxl.convert.tiny_vae job.json      # the child the converter runs (a TinyVaeJob as JSON)

TAESDXL decodes SDXL's latents (the UNet's own, no scaling factor) to pixels with a small fraction of the full VAE
decoder's arithmetic (18-27 times faster on this project's CPU, docs/benchmark.md): a fast, approximate decode
(``--vae taesdxl``) and previews of the image forming (see ``ov_sdxl.runtime.tiny_decoder``). Only its decoder is
exported; img2img still encodes with the full VAE. Its weights (1.2 M parameters for the decoder) are stored in
fp16 whatever ``--weights`` says: int8 would save nothing worth its error. The result is
``<model>/taesdxl/vae_decoder/openvino_model.xml`` and the source's ``config.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from ov_sdxl.errors import ConfigError, ModelNotFoundError

log = logging.getLogger("ov_sdxl.convert.tiny_vae")

PART = "vae_decoder"  # in <model>/taesdxl/
CLASS_NAME = "AutoencoderTiny"
TRACE_LATENT = 16  # side of the latent the decoder is traced with; the IR's spatial sizes stay dynamic


@dataclass(frozen=True)
class TinyVaeJob:
    source: str  # a folder holding AutoencoderTiny's config.json and weights
    output: str  # the model's taesdxl folder (layout.TINY_VAE): the decoder goes to <output>/vae_decoder/

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> TinyVaeJob:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def resolve(source: str) -> Path:
    """The folder holding ``source``'s config and weights: a local folder, or a hub id fetched into the cache."""
    from ov_sdxl.convert.sources import HUB_ID, hub_download

    path = Path(source).expanduser()
    if path.is_file():
        raise ConfigError(f"--taesdxl {source} is a file; give the folder that holds its config.json, or a hub id")
    if not path.is_dir():
        if not HUB_ID.match(source) or source.startswith((".", "~")):
            raise ModelNotFoundError(f"--taesdxl {source} is neither an existing folder nor a hub id like owner/name")
        path = hub_download(source, ["config.json", "*.safetensors"], "--taesdxl")
    check_folder(path, source)
    return path


def check_folder(path: Path, source: str) -> None:
    """Refuse, by name, a folder that is not an SDXL-latent AutoencoderTiny with safetensors weights."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelNotFoundError(f"--taesdxl {source} has no config.json; it is not a diffusers AutoencoderTiny")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("_class_name") != CLASS_NAME:
        raise ConfigError(
            f"--taesdxl {source}: its config.json is for {config.get('_class_name')}, not {CLASS_NAME} (TAESDXL)"
        )
    if config.get("latent_channels", 4) != 4:
        raise ConfigError(
            f"--taesdxl {source} has {config['latent_channels']} latent channels; SDXL's latents have 4 "
            "(is it TAESD3 or TAEF1?)"
        )
    if not any(path.glob("*.safetensors")):
        raise ModelNotFoundError(f"--taesdxl {source} has no .safetensors weights beside its config.json")


def run(job: TinyVaeJob) -> None:
    """Load the AutoencoderTiny in f32 and write its decoder as an fp16 IR with dynamic batch and size."""
    import openvino as ov
    import torch
    from diffusers import AutoencoderTiny

    vae = AutoencoderTiny.from_pretrained(job.source, torch_dtype=torch.float32).eval()
    example = torch.zeros(1, 4, TRACE_LATENT, TRACE_LATENT)
    with torch.no_grad():
        model = ov.convert_model(vae.decoder, example_input=example)
    model.inputs[0].get_tensor().set_names({"latent_sample"})
    model.outputs[0].get_tensor().set_names({"sample"})
    model.reshape({model.inputs[0]: ov.PartialShape([-1, 4, -1, -1])})
    out = Path(job.output) / PART
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, out / "openvino_model.xml", compress_to_fp16=True)
    shutil.copy2(Path(job.source) / "config.json", out / "config.json")
    log.debug("TAESDXL decoder written to %s", out)


def main(argv: list[str]) -> int:
    """Child entry point, as ``ov_sdxl.convert.export_part``'s: errors are written where the parent reads them."""
    from ov_sdxl.convert.export_part import child_main

    return child_main(argv, lambda job_file: run(TinyVaeJob.read(job_file)))


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))

"""LoRAs fused into SDXL's UNet and text encoders at conversion time, one sub-model at a time.

    from ov_sdxl.convert.lora import LoraSpec, fuse_loras, manifest_entry, parts
    specs = [LoraSpec.parse("style.safetensors:0.8"), LoraSpec.parse("detail.safetensors")]
    parts(specs[0])                                   # {"unet", "text_encoder", "text_encoder_2"}
    unet = UNet2DConditionModel.from_pretrained(base_dir, subfolder="unet")
    fuse_loras(unet, "unet", specs)                   # ["style.safetensors", "detail.safetensors"]; a plain UNet again
    manifest_entry(specs)                             # file, sha256, scale, format and parts of each LoRA

Both formats are read by diffusers' own code (``StableDiffusionXLLoraLoaderMixin.lora_state_dict``, which converts
kohya files, ``lora_unet_...``/``lora_te1_...``/``lora_te2_...`` with SGM or diffusers block names, to diffusers
naming) and loaded with diffusers/PEFT as ``pipe.load_lora_weights`` does. Several LoRAs combine as
``pipe.set_adapters(names, scales)`` + ``pipe.fuse_lora()``; one LoRA fused at scale s equals
``pipe.fuse_lora(lora_scale=s)``. The adapters are then unloaded, so the module is an ordinary one (no PEFT layers)
and exports like an untouched one. SDXL LoRAs are made for the base: its UNet and its two text encoders.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

from ov_sdxl.errors import ConfigError, ConversionError
from ov_sdxl.specs import LoraSpec

log = logging.getLogger(__name__)

LORA_PARTS = ("unet", "text_encoder", "text_encoder_2")
SDXL_LAYERS_PER_BLOCK = 2  # maps kohya's SGM block numbers (input_blocks.4...) when no UNet config is given
_ADAPTER_PREFIX = "ov_sdxl_lora_"


@dataclass(frozen=True)
class LoraWeights:
    """A LoRA file read once, in diffusers naming (``unet.…``, ``text_encoder.…``, ``text_encoder_2.…``)."""

    spec: LoraSpec
    state_dict: dict
    network_alphas: dict | None  # kohya's per-layer alphas; None for diffusers/PEFT files
    metadata: dict | None  # the PEFT LoraConfig that diffusers stores in the file header, when present
    parts: frozenset[str]
    format: str  # "diffusers" (diffusers/PEFT) or "kohya"


def read_lora(spec: LoraSpec, unet_config: Any = None) -> LoraWeights:
    """Read ``spec``'s file with diffusers' SDXL LoRA reader; ``unet_config`` maps kohya's SGM block numbers.

    Without ``unet_config`` SDXL's layout (2 layers per block) is assumed; ``fuse_loras`` passes the UNet's own.
    """
    from diffusers.loaders import StableDiffusionXLLoraLoaderMixin
    from safetensors import SafetensorError

    if unet_config is None:
        from types import SimpleNamespace

        unet_config = SimpleNamespace(layers_per_block=SDXL_LAYERS_PER_BLOCK)
    try:
        state_dict, alphas, metadata = StableDiffusionXLLoraLoaderMixin.lora_state_dict(
            str(spec.path),
            weight_name=spec.path.name,
            use_safetensors=True,  # never falls back to a pickle
            unet_config=unet_config,
            return_lora_metadata=True,
        )
    except (SafetensorError, OSError) as err:
        raise ConfigError(f"LoRA file {spec.path} cannot be read as safetensors: {err}") from err
    except ValueError as err:  # diffusers' kohya converter: keys it cannot rename (LoHa, LoKr, other models...)
        first = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"LoRA file {spec.path} is not an SDXL LoRA that diffusers can read ({first}); ov-sdxl fuses LoRAs in "
            "the diffusers/PEFT and kohya formats"
        ) from err
    if not state_dict:
        raise ConfigError(f"LoRA file {spec.path} holds no tensors")
    not_lora = [key for key in state_dict if "lora" not in key]
    if not_lora:
        raise ConfigError(
            f"LoRA file {spec.path} is not a LoRA: {len(not_lora)} of its tensors, such as {not_lora[0]!r}, are not "
            "LoRA weights (a full model checkpoint goes to --base)"
        )
    found = frozenset(part for part in LORA_PARTS if any(key.startswith(f"{part}.") for key in state_dict))
    if not found:
        raise ConfigError(
            f"LoRA file {spec.path} has no SDXL LoRA weights: none of its keys (such as {next(iter(state_dict))!r}) "
            "belong to the UNet or the text encoders; it is probably a LoRA for another model"
        )
    other = [key for key in state_dict if not key.startswith(tuple(f"{part}." for part in found))]
    if other:
        log.warning("LoRA %s: %d tensors outside the UNet and text encoders are ignored", spec.name, len(other))
    return LoraWeights(spec, state_dict, alphas, metadata, found, "diffusers" if alphas is None else "kohya")


def parts(spec: LoraSpec) -> set[str]:
    """Which of "unet", "text_encoder", "text_encoder_2" the LoRA has weights for."""
    return set(read_lora(spec).parts)


def fuse_loras(module: Any, part: str, specs: list[LoraSpec]) -> list[str]:
    """Fuse, in place, every LoRA of ``specs`` that has weights for ``part`` into ``module``; return their names.

    ``module`` is the loaded sub-model (``UNet2DConditionModel`` for "unet", ``CLIPTextModel`` /
    ``CLIPTextModelWithProjection`` for the text encoders). Afterwards it holds no PEFT layers. On error the module
    may be left half-patched: discard it.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    if part not in LORA_PARTS:
        raise ConfigError(f"LoRAs are fused into {', '.join(LORA_PARTS)}, not {part!r}")
    needed = "load_lora_adapter" if part == "unet" else "load_adapter"
    if not hasattr(module, needed):
        raise ConfigError(f"{type(module).__name__} is not a diffusers/transformers model that takes a {part} LoRA")
    applied: list[tuple[str, LoraSpec]] = []
    for index, spec in enumerate(specs):
        weights = read_lora(spec, unet_config=module.config if part == "unet" else None)
        if part not in weights.parts:
            log.info("LoRA %s has no %s weights", spec.name, part)
            continue
        adapter = f"{_ADAPTER_PREFIX}{index}"
        _load(module, part, weights, adapter)
        loaded = sum(1 for m in module.modules() if isinstance(m, BaseTunerLayer) and adapter in m.lora_A)
        expected = _layer_count(weights.state_dict, part)
        if loaded < expected:
            raise ConfigError(
                f"LoRA {spec.path}: only {loaded} of its {expected} {part} layers exist in this {part}; it is not a "
                "LoRA for this SDXL model"
            )
        if loaded > expected:  # its header's LoraConfig names more layers than it has weights for
            log.warning("LoRA %s: %d %s layers have no weights in the file", spec.name, loaded - expected, part)
        applied.append((adapter, spec))
    if not applied:
        return []
    names, scales = [a for a, _ in applied], [s.scale for _, s in applied]
    try:
        if part == "unet":
            module.set_adapters(names, scales)
            module.fuse_lora(lora_scale=1.0, safe_fusing=True, adapter_names=names)
        else:
            from diffusers.loaders.lora_base import fuse_text_encoder_lora, set_adapters_for_text_encoder

            set_adapters_for_text_encoder(names, module, scales)
            fuse_text_encoder_lora(module, lora_scale=1.0, safe_fusing=True, adapter_names=names)
    except ValueError as err:  # PEFT's safe merge: NaN in the fused weights
        raise ConfigError(
            f"fusing LoRAs {', '.join(str(s) for _, s in applied)} into the {part} failed: {err}"
        ) from err
    _unload(module, part)
    if any(isinstance(m, BaseTunerLayer) for m in module.modules()):
        raise ConversionError(f"PEFT layers remained in the {part} after fusing its LoRAs")
    log.info("fused into %s: %s", part, ", ".join(str(s) for _, s in applied))
    return [spec.name for _, spec in applied]


def _load(module: Any, part: str, weights: LoraWeights, adapter: str) -> None:
    """Inject one LoRA as a PEFT adapter, as ``StableDiffusionXLLoraLoaderMixin.load_lora_weights`` does."""
    from diffusers.loaders import StableDiffusionXLLoraLoaderMixin as Loader

    args = dict(network_alphas=weights.network_alphas, adapter_name=adapter, metadata=weights.metadata)
    # Quieted, because fuse_loras counts the layers loaded itself: transformers' load report lists an earlier
    # adapter's weights as "MISSING" when a second one is loaded, and PEFT warns that a model has several adapters.
    report = logging.getLogger("transformers.integrations.peft")
    level = report.level
    try:
        report.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            if part == "unet":
                Loader.load_lora_into_unet(weights.state_dict, unet=module, **args)
            else:
                Loader.load_lora_into_text_encoder(weights.state_dict, text_encoder=module, prefix=part, **args)
    except (RuntimeError, ValueError) as err:  # size mismatch, target modules not found
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        raise ConfigError(
            f"LoRA {weights.spec.path} does not fit this {part} ({detail}); it is not a LoRA for this SDXL model "
            "(SD 1.5/2.x LoRAs and the refiner are not supported)"
        ) from err
    finally:
        report.setLevel(level)


def _layer_count(state_dict: dict, part: str) -> int:
    """How many layers the LoRA changes in ``part``: one down (A) matrix each, whatever the key style."""
    prefix = f"{part}."
    return sum(1 for k in state_dict if k.startswith(prefix) and k.endswith(("lora_A.weight", "down.weight")))


def _unload(module: Any, part: str) -> None:
    """Replace the (fused) PEFT layers by their base layers, as ``pipe.unload_lora_weights()`` does."""
    if part == "unet":
        module.unload_lora()
        return
    from diffusers.utils import recurse_remove_peft_layers

    recurse_remove_peft_layers(module)
    if getattr(module, "peft_config", None) is not None:
        del module.peft_config
    module._hf_peft_config_loaded = False


def manifest_entry(specs: list[LoraSpec]) -> list[dict]:
    """What the converted model's manifest records of its LoRAs: file name, sha256, scale, format, parts."""
    from ov_sdxl.layout import sha256_file

    entries = []
    for spec in specs:
        weights = read_lora(spec)
        entries.append(
            {
                "file": spec.name,
                "sha256": sha256_file(spec.path),
                "scale": spec.scale,
                "format": weights.format,
                "parts": sorted(weights.parts),
            }
        )
    return entries

"""Quantize one converted IR in place for ``--weights hybrid-int8``: a UNet (optimum-intel's hybrid quantization) or
a VAE decoder (NNCF's int8 post-training quantization), each calibrated on inputs the caller collected.

    from ov_sdxl.convert.hybrid_quantize import quantize_unet, quantize_decoder
    quantize_unet(Path("models/.sdxl.partial/base/unet/openvino_model.xml"), samples)  # dicts of UNet inputs
    quantize_decoder(Path("models/.sdxl.partial/base/vae_decoder/openvino_model.xml"), latents)

The UNet's quantization is optimum-intel's own (``_get_hybrid_mixed_quantization_config`` + ``_mixed_quantization``,
statistics in f32 as NNCF takes them), run so that it needs little memory (the synthetic full-size refiner with 4
samples: 18.1 GB as called plainly, 9.2 GB so, with the same quantization ranges; docs/convert.md):
- the IR is read through ``ReleaseMappedPages``, so its fp16 pages do not stay resident next to what is built;
- NNCF's statistics model is compiled for the samples' one shape (static shapes let the CPU plugin plan its
  memory); the dynamic shapes are put back before the model is written;
- NNCF reads each Convolution weight's range through the graph (ReduceMin/ReduceMax of the fp16 constant behind
  its Convert); compiled as it is, the CPU plugin keeps every weight of the statistics model in f32 (6.5 GB more on
  the refiner) and folds those reductions slowly. They are computed with numpy and folded in before it compiles.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ov_sdxl.page_release import ReleaseMappedPages


def quantize_unet(xml: Path, samples: list[dict[str, Any]]) -> None:
    """optimum-intel's hybrid quantization of the UNet IR at ``xml``, calibrated on ``samples`` (dicts of UNet
    inputs, all of one shape), written in place."""
    import nncf
    from optimum.intel import OVWeightQuantizationConfig
    from optimum.intel.openvino.quantization import _get_hybrid_mixed_quantization_config, _mixed_quantization

    def hybrid(model: Any) -> Any:
        dynamic = _set_static_shapes(model, samples)
        wanted = OVWeightQuantizationConfig(bits=8, quant_method="hybrid", num_samples=len(samples))
        mixed = _get_hybrid_mixed_quantization_config(model, wanted)
        with _weight_ranges_folded():
            quantized = _mixed_quantization(model, mixed, nncf.Dataset(samples))
        quantized.reshape(dynamic)
        return quantized

    _in_place(xml, hybrid)


def is_quantized(xml: Path) -> bool:
    """Whether the IR at ``xml`` already has int8 activations (FakeQuantize): a decoder copied from the base's."""
    import openvino as ov

    return any(op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(xml).get_ops())


def quantize_decoder(xml: Path, latents: list[Any]) -> None:
    """int8 weights and activations for the VAE decoder IR at ``xml``, calibrated on ``latents``, in place."""
    import nncf

    def int8(model: Any) -> Any:
        edges = [op.get_friendly_name() for op in model.get_ops() if _is_edge_conv(op.get_friendly_name())]
        return nncf.quantize(
            model,
            nncf.Dataset(latents),
            preset=nncf.QuantizationPreset.MIXED,  # asymmetric activations: measured closer to f32 than symmetric
            subset_size=len(latents),
            ignored_scope=nncf.IgnoredScope(names=edges),
        )

    _in_place(xml, int8)


def _is_edge_conv(name: str) -> bool:
    """The decoder's first and last convolutions (latents in, pixels out), which stay in float."""
    return name.startswith(("__module.decoder.conv_in/", "__module.decoder.conv_out/")) and "Convolution" in name


def _in_place(xml: Path, transform: Any) -> None:
    """Read the IR at ``xml``, ``transform`` it, and write it back in place (through a temporary file)."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)  # not a line per op left out of the activation quantization
    tmp = xml.with_name("quantized.xml")
    with ReleaseMappedPages([xml.with_suffix(".bin")]):
        model = transform(ov.Core().read_model(xml))
        ov.save_model(model, tmp, compress_to_fp16=False)
    del model
    gc.collect()
    tmp.replace(xml)
    tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))


def _set_static_shapes(model: Any, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Reshape ``model`` to its samples' one shape; returns the shapes it had (to put back)."""
    import openvino as ov

    shapes = {name: tuple(value.shape) for name, value in samples[0].items()}
    if any({name: tuple(value.shape) for name, value in s.items()} != shapes for s in samples):
        raise ValueError("the calibration samples are not all of one shape")
    dynamic = {port.get_any_name(): port.get_partial_shape() for port in model.inputs}
    model.reshape({name: ov.PartialShape(list(shapes[name])) for name in dynamic})
    return dynamic


def _fold_weight_ranges(model: Any) -> None:
    """Replace each ReduceMin/ReduceMax whose input is computed from constants only (a weight's range, read by NNCF
    through a Convert and an Abs) with its value, computed here with numpy."""
    import numpy as np
    import openvino.opset13 as ops

    def value(node: Any) -> Any:
        kind = node.get_type_name()
        if kind == "Constant":
            return node.get_data()
        inner = value(node.input_value(0).get_node()) if kind in ("Convert", "Abs") else None
        if inner is None:
            return None
        return np.abs(inner) if kind == "Abs" else inner.astype(np.float32)

    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("ReduceMin", "ReduceMax") or op.get_output_element_type(0).get_type_name() != "f32":
            continue
        data = value(op.input_value(0).get_node())
        if data is None:
            continue
        axes = tuple(int(a) % data.ndim for a in op.input_value(1).get_node().get_data().ravel())
        reduce = np.min if kind == "ReduceMin" else np.max
        folded = reduce(data, axis=axes, keepdims=bool(op.get_attributes()["keep_dims"]))
        op.output(0).replace(ops.constant(folded.astype(np.float32)).output(0))


@contextlib.contextmanager
def _weight_ranges_folded() -> Iterator[None]:
    """While it is entered, every model NNCF compiles for inference (``OVNativeEngine``: its statistics model, fast
    bias correction's subgraphs) has its weight ranges folded first (``_fold_weight_ranges``). NNCF has no option
    for it; the result is the same model, so nothing else changes."""
    from nncf.openvino import engine

    init = engine.OVNativeEngine.__init__

    def init_folded(self: Any, model: Any, *args: Any, **kwargs: Any) -> None:
        _fold_weight_ranges(model)
        init(self, model, *args, **kwargs)

    engine.OVNativeEngine.__init__ = init_folded
    try:
        yield
    finally:
        engine.OVNativeEngine.__init__ = init

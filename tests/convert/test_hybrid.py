"""--weights hybrid-int8 on the tiny model: FakeQuantize in the UNets and the VAE decoder, int8 text encoders, images
and decodes close to fp32's, calibration prompts from a file (recorded in the manifest), the errors, and no
download."""

import hashlib
import json

import numpy as np
import openvino as ov
import pytest
from conftest import PROMPT, TWO_PROMPTS, mean_abs_diff

from ov_sdxl.cli import main
from ov_sdxl.config import ConvertConfig
from ov_sdxl.convert import convert_models
from ov_sdxl.convert.hybrid import SHIPPED_PROMPTS, read_prompts
from ov_sdxl.errors import ConfigError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hybrid_model(tiny_hybrid_model):
    """The tiny base + refiner converted with --weights hybrid-int8 by the CLI (conftest.py), and its prompt file."""
    return tiny_hybrid_model


def _ops(xml):
    import openvino as ov

    model = ov.Core().read_model(xml)
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    int8 = sum(
        op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() in ("u8", "i8")
        for op in model.get_ops()
    )
    return fake_quantize, int8


def test_unets_and_decoders_get_fake_quantize_and_the_others_int8_weights(hybrid_model, tiny_model):
    model, _ = hybrid_model
    for stage in ("base", "refiner"):
        for part in ("unet", "vae_decoder"):
            fake_quantize, int8 = _ops(model / stage / part / "openvino_model.xml")
            assert fake_quantize > 0 and int8 > 0, (stage, part)
            assert _ops(tiny_model / stage / part / "openvino_model.xml") == (0, 0)  # the float conversion
        for part in ("text_encoder_2", "vae_encoder"):
            fake_quantize, int8 = _ops(model / stage / part / "openvino_model.xml")
            assert fake_quantize == 0 and int8 > 0, (stage, part)
    assert _ops(model / "base" / "text_encoder" / "openvino_model.xml")[1] > 0


def _conv_precisions(xml, shape):
    """How many Convolutions the CPU plugin runs in each precision (its runtime graph), for one input shape."""
    import collections

    import openvino as ov

    core = ov.Core()
    model = core.read_model(xml)
    model.reshape({0: shape})
    runtime = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).get_runtime_model()
    info = [op.get_rt_info() for op in runtime.get_ops()]
    return collections.Counter(
        i["runtimePrecision"].astype(str) for i in info if i["layerType"].astype(str) == "Convolution"
    )


def test_decoder_convolutions_run_in_int8(hybrid_model, tiny_model):
    """int8 arithmetic, not int8 storage: the decoder is quantized from its fp16 export (quantizing activations
    on top of int8 weight-only compression left every convolution in float, at bf16's speed)."""
    for stage in ("base", "refiner"):
        precisions = _conv_precisions(hybrid_model[0] / stage / "vae_decoder" / "openvino_model.xml", [1, 4, 8, 8])
        assert precisions["u8"] + precisions["i8"] >= sum(precisions.values()) - 2, (
            stage,
            precisions,
        )  # not the edges
    assert set(_conv_precisions(tiny_model / "base" / "vae_decoder" / "openvino_model.xml", [1, 4, 8, 8])) == {"f32"}


def test_int8_decoder_stays_close_to_the_float_decode_of_the_same_latents(hybrid_model, tiny_model):
    """The int8 decoder (its first and last convolutions in float) against the fp32 conversion's decoder, on the
    latents the fp32 base renders, decoded in f32: measured 2.7 in 0..255 units on the tiny model (noise-like
    pixels, where a decode error shows more than on a photograph)."""
    import openvino as ov
    import torch
    from optimum.intel import OVStableDiffusionXLPipeline

    pipe = OVStableDiffusionXLPipeline.from_pretrained(tiny_model / "base", device="CPU", compile=False)
    pipe.set_progress_bar_config(disable=True)
    call = {"num_inference_steps": 6, "height": 128, "width": 128, "generator": torch.Generator().manual_seed(5)}
    latents = (pipe(PROMPT, output_type="latent", **call).images / pipe.vae.config.scaling_factor).numpy()
    core = ov.Core()
    decoded = []
    for folder in (hybrid_model[0], tiny_model):
        xml = folder / "base" / "vae_decoder" / "openvino_model.xml"
        image = core.compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(latents)[0]
        decoded.append(np.clip(image, -1, 1) * 127.5)
    xml = hybrid_model[0] / "base" / "vae_decoder" / "openvino_model.xml"
    names = {op.get_friendly_name() for op in core.read_model(xml).get_ops() if op.get_type_name() == "FakeQuantize"}
    assert not any("conv_out" in name for name in names)  # the pixels come out of a float convolution
    assert 0 < np.abs(decoded[0] - decoded[1]).mean() < 4.0


def test_manifest_records_the_calibration_prompts_file(hybrid_model):
    model, prompts = hybrid_model
    manifest = json.loads((model / "ov_sdxl.json").read_text(encoding="utf-8"))
    calibration = manifest["calibration"]
    files = manifest["files"]  # the tiny refiner's VAE is the base's: copied, quantized once, shared at run time
    assert files["base/vae_decoder/openvino_model.bin"] == files["refiner/vae_decoder/openvino_model.bin"]
    lines = ["a lighthouse at dusk, oil painting", "portrait photo of a fisherman, soft light"]
    assert manifest["weights"] == "hybrid-int8"
    assert calibration["prompt_source"] == str(prompts)  # the file given, not optimum-intel's caption dataset
    assert calibration["prompts"] == 2
    assert calibration["prompts_sha256"] == hashlib.sha256("\n".join(lines).encode()).hexdigest()
    assert calibration["settings"] == {
        "max_size": 512,
        "steps": 10,
        "guidance": 5.0,
        "seed": 0,
        "refiner_steps": 25,
        "refiner_strength": 0.2,
    }
    # two prompts: 10 base steps each (one sample per UNet call), 5 refiner steps each; the decoders; the
    # refiner's UNet calls include the base's renders of its inputs
    assert calibration["unets"] == {
        "base": {"samples": 20, "prompts_run": 2, "size": 512, "unet_calls": 20, "vae_decoder": _DECODER},
        "refiner": {"samples": 10, "prompts_run": 2, "size": 512, "unet_calls": 30, "vae_decoder": "int8 already"},
    }


_DECODER = "int8, calibrated on 2 latents"


def test_quantized_unets_keep_their_dynamic_input_shapes(hybrid_model, tiny_model):
    """The statistics pass runs at the samples' static shape; the IR written has the float IR's shapes."""
    model, _ = hybrid_model
    for stage in ("base", "refiner"):
        shapes = [_input_shapes(root / stage / "unet" / "openvino_model.xml") for root in (model, tiny_model)]
        assert shapes[0] == shapes[1] and any("?" in str(s) for s in shapes[0].values()), (stage, shapes)


def _input_shapes(xml):
    return {port.get_any_name(): port.get_partial_shape() for port in ov.Core().read_model(xml).inputs}


def test_images_stay_close_to_the_float_model(hybrid_model, runtime, ov_cache):
    """The hybrid model (run with its own preset, fast, without feature reuse: the quantization alone) against the
    fp32 conversion of the same weights and seed: measured 1.76 (text2img) and 1.76 (base+refiner) in 0..255 units
    on noise-like tiny images; another seed's image is about 10 times further away."""
    from ov_sdxl import SDXLRuntime

    hybrid = SDXLRuntime.from_dir(hybrid_model[0], device="CPU", precision="f32", cache_dir=ov_cache)
    args = {"steps": 6, "seed": 5, "width": 128, "height": 128}
    for task in ("text2img", "base_then_refiner"):
        image = getattr(hybrid, task)(PROMPT, **args, cache_interval=1).images[0]
        reference = getattr(runtime, task)(PROMPT, **args).images[0]
        assert np.asarray(image, dtype=np.float32).std() > 10, task  # not flat
        diff = mean_abs_diff(image, reference)
        assert 0 < diff < 6.0, (task, diff)
    other_seed = runtime.text2img(PROMPT, **{**args, "seed": 6}).images[0]
    assert mean_abs_diff(hybrid.text2img(PROMPT, **args, cache_interval=1).images[0], other_seed) > 15


def test_a_complete_conversion_is_reused_only_for_the_same_prompts(hybrid_model, tiny_sources):
    model, prompts = hybrid_model
    base_dir, refiner_dir = (str(p) for p in tiny_sources)
    same = ConvertConfig(
        base=base_dir, output=model, refiner=refiner_dir, weights="hybrid-int8", calibration_prompts=prompts
    )
    assert convert_models(same).skipped
    shipped = ConvertConfig(base=base_dir, output=model, refiner=refiner_dir, weights="hybrid-int8")
    with pytest.raises(ConfigError, match="already holds a different conversion"):
        convert_models(shipped)


def test_progress_redoes_the_quantization_of_a_unet_exported_again(tmp_path):
    """The resume bookkeeping: the hybrid step counts only on the UNet files it produced."""
    from ov_sdxl.convert.export import _Progress

    unet = tmp_path / "base" / "unet"
    unet.mkdir(parents=True)
    (unet / "openvino_model.xml").write_text("fp16", encoding="utf-8")
    progress = _Progress(tmp_path, "key")
    progress.record("base", "unet")
    assert progress.finished("base", "unet") and not progress.finished("base", "unet", step="hybrid-int8")
    (unet / "openvino_model.xml").write_text("quantized", encoding="utf-8")
    assert not progress.finished("base", "unet")  # changed after the record: an interrupted step
    progress.record("base", "unet", step="hybrid-int8", result={"samples": 3})
    again = _Progress(tmp_path, "key")  # read back from progress.json
    assert again.finished("base", "unet", step="hybrid-int8")
    assert again.steps == {"base/unet:hybrid-int8": {"samples": 3}}
    again.record("base", "unet")  # exported anew: to be quantized again
    assert not again.finished("base", "unet", step="hybrid-int8") and again.steps == {}
    assert _Progress(tmp_path, "another request").steps == {}


def test_shipped_prompts_are_read_offline():
    shipped = read_prompts(None)
    assert shipped.source == "shipped" and len(shipped.prompts) == 40 and len(set(shipped.prompts)) == 40
    assert all(not p.startswith("#") and p == p.strip() and p for p in shipped.prompts)
    assert SHIPPED_PROMPTS.is_file()
    assert shipped.manifest_entry({})["prompt_source"] == "shipped"


def test_empty_prompt_file_is_refused_before_any_work(tiny_sources, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n   \n", encoding="utf-8")
    config = ConvertConfig(
        base=str(tiny_sources[0]), output=tmp_path / "m", weights="hybrid-int8", calibration_prompts=empty
    )
    with pytest.raises(ConfigError, match=f"--calibration-prompts {empty} holds no prompt"):
        convert_models(config)
    assert not (tmp_path / "m").exists() and not (tmp_path / ".m.partial").exists()


def test_cli_refuses_calibration_prompts_without_hybrid(tiny_sources, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text(TWO_PROMPTS, encoding="utf-8")
    argv = ["convert", "--base", tiny_sources[0], "--output", tmp_path / "m", "--weights", "int8"]
    code = main([str(a) for a in [*argv, "--calibration-prompts", prompts]])
    err = capsys.readouterr().err
    assert code == 2
    assert "--calibration-prompts is only used by --weights hybrid-int8, not int8" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    argv = ["convert", "--base", tiny_sources[0], "--output", tmp_path / "m", "--weights", "hybrid-int8"]
    code = main([str(a) for a in [*argv, "--calibration-prompts", empty]])
    assert code == 2 and f"{empty} holds no prompt" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"weights": "int8", "calibration_samples": 8}, "--calibration-samples is only used by --weights hybrid-int8"),
        ({"weights": "hybrid-int8", "calibration_samples": 0}, "--calibration-samples 0 must be a whole number >= 1"),
    ],
)
def test_calibration_samples_rules(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        ConvertConfig(base="b", output=tmp_path / "m", **options)
    assert read_prompts(None, 8).samples == 8 and read_prompts(None).samples == 32

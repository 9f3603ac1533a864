"""Few-step SDXL models (SDXL-Turbo, SDXL-Lightning, LCM) on tiny stand-ins: the tiny SDXL base with each model's
scheduler config as its source, converted with ``--few-step``; then defaults, parity with diffusers run the way
each model card runs it, explicit values, and the front ends."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import PROMPT, mean_abs_diff
from PIL import Image

from ov_sdxl import ConfigError, ConvertConfig, GenerationParams, SDXLRuntime
from ov_sdxl.cli import main
from ov_sdxl.errors import CorruptModelError
from ov_sdxl.layout import MANIFEST_NAME, read_manifest, write_manifest
from ov_sdxl.model_info import FewStepKind, ModelInfo, manifest_entry, parse_few_step
from ov_sdxl.schedulers import make_scheduler

PARITY = 2.0  # mean absolute difference in 0..255 units, as in test_runtime.py
SEED, SIZE = 3, {"width": 128, "height": 128}
FEW_STEP = {"turbo": "turbo", "lightning": "lightning:4", "lcm": "lcm"}


def _source_scheduler(kind: str, sdxl_scheduler):
    """The scheduler config each kind's source folder ships: SDXL-Turbo's own repo has Euler ancestral with
    trailing timesteps; a full LCM-SDXL folder has LCM; SDXL-Lightning's card loads SDXL base's (Euler, leading)
    and switches to trailing at run time, which is what ov-sdxl must do from the recorded model info."""
    from diffusers import EulerAncestralDiscreteScheduler, LCMScheduler

    if kind == "turbo":
        return EulerAncestralDiscreteScheduler.from_config(sdxl_scheduler.config, timestep_spacing="trailing")
    if kind == "lcm":
        return LCMScheduler.from_config(sdxl_scheduler.config)
    return sdxl_scheduler


def _card_scheduler(kind: str, source, steps: int):
    """The scheduler as each model card sets it up in diffusers, from the source's config."""
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, LCMScheduler

    if kind == "turbo":
        return EulerAncestralDiscreteScheduler.from_config(source.config, timestep_spacing="trailing")
    if kind == "lcm":
        return LCMScheduler.from_config(source.config)
    extra = {"prediction_type": "sample"} if steps == 1 else {}  # the 1-step UNet predicts x0
    return EulerDiscreteScheduler.from_config(source.config, timestep_spacing="trailing", **extra)


@pytest.fixture(scope="module")
def stand_ins(tiny_sources, tmp_path_factory):
    """Diffusers folders: the tiny SDXL base with each few-step model's scheduler config."""
    from diffusers import EulerDiscreteScheduler

    base, _ = tiny_sources
    sdxl_scheduler = EulerDiscreteScheduler.from_pretrained(base, subfolder="scheduler")
    root = tmp_path_factory.mktemp("few-step-src")
    folders = {}
    for kind in FEW_STEP:
        folder = root / kind
        shutil.copytree(base, folder)
        shutil.rmtree(folder / "scheduler")
        scheduler = _source_scheduler(kind, sdxl_scheduler)
        scheduler.save_pretrained(folder / "scheduler")
        index = json.loads((folder / "model_index.json").read_text())
        index["scheduler"][1] = type(scheduler).__name__
        (folder / "model_index.json").write_text(json.dumps(index))
        folders[kind] = folder
    return folders


@pytest.fixture(scope="module")
def converted(stand_ins, tmp_path_factory):
    """``converted(kind)``: the stand-in of ``kind`` as an ov-sdxl model folder (fp32, base only).

    SDXL-Turbo's is converted for real, through ``ov-sdxl convert --few-step turbo``. The three stand-ins share
    their weights, and a conversion copies the source's scheduler config as it is (checked in
    test_conversion_records_the_model_info), so the Lightning and LCM folders are that conversion with their
    own scheduler config and manifest entry: what converting them would write, without two more minute-long
    exports on a loaded 2-core machine.
    """
    root = tmp_path_factory.mktemp("few-step-models")
    turbo = root / "turbo"
    args = ["convert", "--base", stand_ins["turbo"], "--output", turbo, "--weights", "fp32", "--few-step", "turbo"]
    assert main([str(a) for a in args]) == 0
    models = {"turbo": turbo}

    def convert(kind: str):
        if kind not in models:
            models[kind] = derive(turbo, root / kind, stand_ins[kind], parse_few_step(FEW_STEP[kind]).manifest_entry())
        return models[kind]

    return convert


def derive(model, output, source, model_info, unet_sample_size=None):
    """A copy of converted ``model`` with ``source``'s scheduler and ``model_info`` in a fresh manifest (and,
    given ``unet_sample_size``, that sample size in its UNet config)."""
    shutil.copytree(model, output)
    if unet_sample_size is not None:
        unet = json.loads((output / "base" / "unet" / "config.json").read_text())
        (output / "base" / "unet" / "config.json").write_text(json.dumps({**unet, "sample_size": unet_sample_size}))
    shutil.rmtree(output / "base" / "scheduler")
    shutil.copytree(source / "scheduler", output / "base" / "scheduler")
    index = json.loads((output / "base" / "model_index.json").read_text())
    index["scheduler"] = json.loads((source / "model_index.json").read_text())["scheduler"]
    (output / "base" / "model_index.json").write_text(json.dumps(index))
    manifest = read_manifest(output)
    (output / MANIFEST_NAME).unlink()
    write_manifest(output, manifest["sources"], manifest["weights"], extra={"model_info": model_info})
    return output


@pytest.fixture(scope="module")
def runtimes(converted, ov_cache):
    made = {}

    def runtime(kind: str):
        if kind not in made:
            made[kind] = SDXLRuntime.from_dir(converted(kind), precision="f32", cache_dir=ov_cache)
        return made[kind]

    return runtime


def reference(torch_pipes, scheduler, steps, guidance, seed=SEED):
    """diffusers' own PyTorch SDXL pipeline on the same tiny weights, with this scheduler, steps and guidance."""
    pipe = torch_pipes["base"]
    original, pipe.scheduler = pipe.scheduler, scheduler
    try:
        generator = torch.Generator("cpu").manual_seed(seed)
        return pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, generator=generator, **SIZE).images[0]
    finally:
        pipe.scheduler = original


def assert_parity(ours, theirs):
    assert ours.size == theirs.size
    assert np.asarray(theirs).std() > 5, "the reference image is flat: the comparison would prove nothing"
    assert mean_abs_diff(ours, theirs) <= PARITY


def unet_batch(runtime) -> int:
    (shape,) = [tuple(p.get_shape()) for p in runtime.pipelines.base.unet.model.inputs if p.get_any_name() == "sample"]
    return shape[0]


# -- what each kind is made for, and --few-step values ----------------------------------------------------------
def test_recipes_follow_the_model_cards():
    turbo, lightning, lcm = parse_few_step("turbo"), parse_few_step("lightning:4"), parse_few_step("LCM")
    assert (turbo.kind, turbo.steps, turbo.guidance, turbo.scheduler) == ("turbo", 4, 0.0, "euler-a-trailing")
    assert turbo.native_size == (512, 512) and turbo.describe() == "SDXL-Turbo: 4 steps, guidance 0"
    assert (lightning.steps, lightning.guidance, lightning.scheduler, lightning.prediction_type) == (
        4,
        0.0,
        "euler-trailing",
        None,
    )
    assert lightning.native_size is None and lightning.describe() == "SDXL-Lightning (4-step): 4 steps, guidance 0"
    assert parse_few_step("lightning:1").prediction_type == "sample"  # the 1-step UNet predicts x0
    assert (lcm.kind, lcm.steps, lcm.guidance, lcm.scheduler) == (FewStepKind.LCM, 4, 1.0, "lcm")
    assert parse_few_step("turbo:1").steps == 1 and parse_few_step("lcm:8").steps == 8
    assert manifest_entry("lightning", 2) == {
        "kind": "lightning",
        "steps": 2,
        "guidance": 0.0,
        "scheduler": "euler-trailing",
    }
    assert ModelInfo.from_manifest({"model_info": turbo.manifest_entry()}) == turbo
    assert ModelInfo.from_manifest({"sources": {}}) is None and ModelInfo.from_manifest(None) is None


def test_named_schedulers_are_the_model_cards(tiny_sources):
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    sdxl = EulerDiscreteScheduler.from_pretrained(tiny_sources[0], subfolder="scheduler")
    for name, expected in (
        ("euler-trailing", EulerDiscreteScheduler.from_config(sdxl.config, timestep_spacing="trailing")),
        ("euler-a-trailing", EulerAncestralDiscreteScheduler.from_config(sdxl.config, timestep_spacing="trailing")),
    ):
        ours = make_scheduler(name, sdxl)
        assert type(ours) is type(expected) and dict(ours.config) == dict(expected.config)
        ours.set_timesteps(4)
        expected.set_timesteps(4)
        assert ours.timesteps.tolist() == expected.timesteps.tolist() and ours.timesteps[0] == 999  # trailing


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "lightning",
            "--few-step lightning needs the step count of the checkpoint you convert (1, 2, 4, 8), e.g. "
            "--few-step lightning:4; it is never guessed from file names",
        ),
        (
            "lightning:3",
            "--few-step lightning:3 is not a step count SDXL-Lightning is made for; choose one of 1, 2, 4, 8",
        ),
        ("turbo:8", "--few-step turbo:8 is not a step count SDXL-Turbo is made for; choose one of 1, 2, 3, 4"),
        ("lcm:9", "choose one of 1, 2, 3, 4, 5, 6, 7, 8"),
        (
            "lcm:four",
            "--few-step 'lcm:four': the steps after ':' must be a whole number; give it as KIND or KIND:STEPS",
        ),
        ("fast", "--few-step kind 'fast' is not one of: turbo, lightning, lcm; give it as KIND or KIND:STEPS"),
        ("  ", "--few-step '  ' is empty"),
        (4, "--few-step must be text such as turbo, lightning:4 or lcm, got 4"),
    ],
)
def test_bad_few_step_values(value, message):
    with pytest.raises(ConfigError) as info:
        ConvertConfig(base="owner/model", output="out", few_step=value)
    assert message in str(info.value)


def test_bad_few_step_on_the_command_line(tmp_path, capsys):
    code = main(["convert", "--base", "owner/model", "--output", str(tmp_path / "m"), "--few-step", "lightning"])
    err = capsys.readouterr().err
    assert (
        code == 2 and err.startswith("error: --few-step lightning needs the step count") and len(err.splitlines()) == 1
    )
    assert not (tmp_path / "m").exists()


def test_bad_model_info_in_a_manifest():
    with pytest.raises(CorruptModelError, match=r"model_info .* is not valid .*; reconvert with --overwrite"):
        ModelInfo.from_manifest({"model_info": {"kind": "turbo"}})
    with pytest.raises(CorruptModelError, match="few-step scheduler 'warp' is unknown"):
        ModelInfo.from_manifest({"model_info": {**manifest_entry("turbo"), "scheduler": "warp"}})


def test_params_not_given_are_filled_in_and_checked_again():
    image = Image.new("RGB", (64, 64))
    params = GenerationParams(prompt="x")
    assert (params.steps, params.guidance, params.scheduler) == (None, None, None)
    assert params.to_metadata()["steps"] == "model default"
    filled = params.with_defaults(4, 0.0, "euler-a-trailing")
    assert (filled.steps, filled.guidance, filled.scheduler) == (4, 0.0, "euler-a-trailing")
    given = GenerationParams(prompt="x", steps=9, guidance=2.5, scheduler="euler").with_defaults(4, 0.0, "lcm")
    assert (given.steps, given.guidance, given.scheduler) == (9, 2.5, "euler")
    low = GenerationParams(prompt="x", mode="img2img", image=image, strength=0.2)  # steps unknown yet: fine
    with pytest.raises(ConfigError, match="steps 4 x strength 0.2 leaves no denoising step"):
        low.with_defaults(4, 0.0)


# -- converted stand-ins: manifest, defaults, parity ------------------------------------------------------------
@pytest.mark.slow  # converts SDXL-Turbo's stand-in once for the module
def test_conversion_records_the_model_info(converted, stand_ins):
    model = converted("turbo")  # converted with `ov-sdxl convert --few-step turbo`
    assert read_manifest(model)["model_info"] == {
        "kind": "turbo",
        "steps": 4,
        "guidance": 0.0,
        "scheduler": "euler-a-trailing",
        "native_size": [512, 512],
    }
    # the source's scheduler config is kept as it is: the named scheduler is built from it at run time
    config = "scheduler/scheduler_config.json"
    assert json.loads((model / "base" / config).read_text()) == json.loads((stand_ins["turbo"] / config).read_text())


def source_scheduler(folder):
    """The scheduler a source folder ships, loaded as diffusers loads it."""
    import diffusers

    class_name = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["_class_name"]
    return getattr(diffusers, class_name).from_pretrained(folder, subfolder="scheduler")


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(FEW_STEP))
def test_converted_model_runs_with_its_defaults_like_diffusers(kind, converted, runtimes, stand_ins, torch_pipes):
    info = parse_few_step(FEW_STEP[kind])
    assert read_manifest(converted(kind))["model_info"] == info.manifest_entry()
    runtime = runtimes(kind)
    assert runtime.model_info == info
    assert runtime.defaults == {"steps": info.steps, "guidance": info.guidance, "scheduler": info.scheduler}
    seen = []
    result = runtime.text2img(PROMPT, seed=SEED, progress=lambda *event: seen.append(event), **SIZE)
    assert seen == [("base", i, info.steps) for i in range(1, info.steps + 1)]  # the UNet ran info.steps times
    meta = result.metadata()
    assert (meta["steps"], meta["guidance"], meta["scheduler"]) == (
        str(info.steps),
        str(info.guidance),
        info.scheduler,
    )
    assert result.notes == []
    assert unet_batch(runtime) == 1  # guidance 0 or 1: no classifier-free guidance, so the UNet batch is not doubled
    card = _card_scheduler(kind, source_scheduler(stand_ins[kind]), info.steps)
    assert_parity(result.images[0], reference(torch_pipes, card, info.steps, info.guidance))


@pytest.mark.slow
def test_turbo_native_size_is_512_whatever_the_unet_config_says(converted, stand_ins, tmp_path):
    model, source = converted("turbo"), stand_ins["turbo"]
    turbo = derive(model, tmp_path / "turbo", source, manifest_entry("turbo"), unet_sample_size=32)
    lightning = derive(model, tmp_path / "lightning", source, manifest_entry("lightning", 4), unet_sample_size=32)
    assert SDXLRuntime.from_dir(turbo).native_size == (512, 512)
    assert SDXLRuntime.from_dir(lightning).native_size == (256, 256)  # the UNet's 32 x the VAE's 8


@pytest.mark.slow
def test_explicit_values_win_and_are_reported(runtimes, stand_ins, torch_pipes):
    from diffusers import EulerDiscreteScheduler

    runtime, seen = runtimes("turbo"), []
    result = runtime.text2img(
        PROMPT, seed=SEED, steps=2, guidance=2.0, scheduler="euler", progress=lambda *e: seen.append(e), **SIZE
    )
    assert (result.params.steps, result.params.guidance, result.params.scheduler) == (2, 2.0, "euler")
    assert len(seen) == 2 and unet_batch(runtime) == 2  # guidance 2 doubles the UNet batch, as asked
    assert result.notes == [
        "SDXL-Turbo is made to run without guidance (0); guidance 2 runs the UNet twice per step and tends to "
        "over-saturate; used as asked"
    ]
    euler = EulerDiscreteScheduler.from_config(source_scheduler(stand_ins["turbo"]).config)
    assert_parity(result.images[0], reference(torch_pipes, euler, 2, 2.0))
    many = runtime.text2img(PROMPT, seed=SEED, steps=6, guidance=0.0, **SIZE)
    assert many.params.steps == 6 and many.notes == ["SDXL-Turbo is made for 1-4 steps; running 6 as asked"]
    lightning = runtimes("lightning").text2img(PROMPT, seed=SEED, steps=8, **SIZE)
    assert lightning.params.steps == 8 and "SDXL-Lightning (4-step) is made for exactly 4 steps" in lightning.notes[0]


@pytest.mark.slow
def test_one_step_lightning_predicts_the_sample(converted, stand_ins, torch_pipes, tmp_path, ov_cache):
    """The 1-step SDXL-Lightning UNet predicts x0: every scheduler is built with prediction_type "sample"."""
    lightning = stand_ins["lightning"]
    model = derive(converted("turbo"), tmp_path / "lightning-1", lightning, manifest_entry("lightning", 1))
    runtime = SDXLRuntime.from_dir(model, precision="f32", cache_dir=ov_cache)
    result = runtime.text2img(PROMPT, seed=SEED, **SIZE)
    assert result.params.steps == 1 and result.params.guidance == 0.0
    assert runtime.pipelines.base.scheduler.config.prediction_type == "sample"
    card = _card_scheduler("lightning", source_scheduler(stand_ins["lightning"]), 1)
    assert_parity(result.images[0], reference(torch_pipes, card, 1, 0.0))


# -- front ends -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_generate_uses_and_records_the_models_defaults(converted, tmp_path, capsys):
    output = tmp_path / "turbo.png"
    args = ["generate", "--model", converted("turbo"), "--prompt", PROMPT, "--seed", "3", "--output", output]
    code = main([str(a) for a in [*args, "--width", "128", "--height", "128", "--precision", "f32"]])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "seed 3, 128x128, 4 steps, guidance 0, " in out
    meta = Image.open(output).text
    assert (meta["steps"], meta["guidance"], meta["scheduler"]) == ("4", "0.0", "euler-a-trailing")


@pytest.mark.slow
def test_demo_starts_at_the_models_defaults(runtimes, tmp_path):
    from ov_sdxl.demo import build_demo
    from ov_sdxl.demo.handlers import DemoHandlers
    from ov_sdxl.demo.inputs import DemoLimits

    runtime = runtimes("turbo")
    demo = build_demo(runtime, output_dir=tmp_path / "demo")
    blocks = list(demo.blocks.values())
    (info,) = [b for b in blocks if getattr(b, "elem_id", None) == "model-info"]
    assert "SDXL-Turbo: 4 steps, guidance 0" in info.value
    sliders = {b.label: b.value for b in blocks if type(b).__name__ == "Slider"}
    assert (sliders["Steps"], sliders["Guidance"]) == (4, 0.0)
    api = {b.label: b.value for b in blocks if type(b).__name__ == "Number"}
    assert (api["steps"], api["guidance"]) == (4, 0.0)
    handlers = DemoHandlers(runtime, DemoLimits(), tmp_path / "handlers")
    _, _, parameters = handlers.text2img(PROMPT, width=64, height=64, seed="5", progress=lambda *a, **k: None)
    assert (parameters["steps"], parameters["guidance"], parameters["scheduler"]) == ("4", "0.0", "euler-a-trailing")

"""Tiny random SDXL base and refiner, built locally from the real diffusers/transformers classes.

They have SDXL's structure (two CLIP text encoders, a text-time conditioned UNet, an 8x VAE, a refiner with
only the second text encoder and ``requires_aesthetics_score=True``) at a few hundred kB of weights, and a real
CLIP tokenizer built from the BPE file that ``open-clip-torch`` ships, so prompts tokenize exactly as SDXL's do.
Nothing is downloaded. Tests, notebooks and the offline demo all use them.

    from ov_sdxl.testing import build_tiny_sources, build_tiny_model
    base_dir, refiner_dir = build_tiny_sources("/tmp/tiny-src")      # diffusers folders (PyTorch), and taesdxl/
    model_dir = build_tiny_model("models/tiny")                       # converted ov-sdxl model folder

The VAE keeps SDXL's 8x downscaling (four blocks) so that SDXL's real sizes (1024x1024 and the other trained
aspect ratios) work on the tiny model too; a 2-block VAE would put 1024x1024 at 512x512 latents and make the
tiny UNet's self-attention heavier than the real one. Its native (default) size is 512x512.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ov_sdxl.convert import write_clip_tokenizer

log = logging.getLogger(__name__)

TEXT_HIDDEN = 32
TIME_EMBED_DIM = 8
TINY_SOURCES = {
    "base": "tiny-random-sdxl-base",
    "refiner": "tiny-random-sdxl-refiner",
    "taesdxl": "tiny-random-taesdxl",
}
BASE_SEED = 0
REFINER_SEED = 1
TAESDXL_SEED = 2
INPAINT_SEED = 3


def _text_config(with_projection: bool):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_hidden_layers=5,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=TEXT_HIDDEN,
        layer_norm_eps=1e-5,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
        architectures=["CLIPTextModelWithProjection" if with_projection else "CLIPTextModel"],
    )


def _unet(cross_attention_dim: int, time_ids: int, seed: int, in_channels: int = 4):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=64,  # native size 512x512: defaults stay quick; SDXL's own sizes work as well
        in_channels=in_channels,  # 9 for an inpainting UNet: latents, mask, masked image's latents
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=time_ids * TIME_EMBED_DIM + TEXT_HIDDEN,
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=8,
    )


def _vae():
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(BASE_SEED)
    return AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=1024,
        scaling_factor=0.13025,
        force_upcast=True,
    )


def build_tiny_taesdxl(folder: str | Path) -> Path:
    """Save a tiny random TAESDXL (diffusers' AutoencoderTiny: 8x, 4 latent channels) as a diffusers folder."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(TAESDXL_SEED)
    channels, blocks = (16, 16, 16, 16), (1, 1, 1, 1)
    tiny = AutoencoderTiny(
        encoder_block_out_channels=channels,
        decoder_block_out_channels=channels,
        num_encoder_blocks=blocks,
        num_decoder_blocks=blocks,
    )
    tiny.eval().save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def _scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
        interpolation_type="linear",
        use_karras_sigmas=False,
    )


def build_tiny_sources(directory: str | Path) -> tuple[Path, Path]:
    """Save a tiny SDXL base and refiner as diffusers folders (safetensors) under ``directory``, and a tiny
    TAESDXL in ``directory/taesdxl``."""
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    directory = Path(directory)
    base_dir, refiner_dir = directory / "base", directory / "refiner"
    tok_dir = directory / "tokenizers"
    write_clip_tokenizer(tok_dir / "tokenizer", pad_token="<|endoftext|>")
    write_clip_tokenizer(tok_dir / "tokenizer_2", pad_token="!")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir / "tokenizer")
    tokenizer_2 = CLIPTokenizer.from_pretrained(tok_dir / "tokenizer_2")

    torch.manual_seed(BASE_SEED)
    text_encoder = CLIPTextModel(_text_config(with_projection=False)).eval()
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(with_projection=True)).eval()
    vae = _vae().eval()
    base = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=_unet(2 * TEXT_HIDDEN, time_ids=6, seed=BASE_SEED).eval(),
        scheduler=_scheduler(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    base.save_pretrained(base_dir, safe_serialization=True)
    # Like the real SDXL 1.0 pair, the refiner shares text_encoder_2 and the VAE with the base.
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=vae,
        text_encoder=None,
        text_encoder_2=text_encoder_2,
        tokenizer=None,
        tokenizer_2=tokenizer_2,
        unet=_unet(TEXT_HIDDEN, time_ids=5, seed=REFINER_SEED).eval(),
        scheduler=_scheduler(),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
        add_watermarker=False,
    )
    refiner.save_pretrained(refiner_dir, safe_serialization=True)
    build_tiny_taesdxl(directory / "taesdxl")
    log.info("tiny SDXL sources written to %s", directory)
    return base_dir, refiner_dir


def build_tiny_inpainting_source(base_dir: str | Path, folder: str | Path) -> Path:
    """A tiny SDXL inpainting base (a ``StableDiffusionXLInpaintPipeline`` whose UNet takes 9 channels), with the
    text encoders, VAE and tokenizers of the tiny base in ``base_dir``, saved as a diffusers folder."""
    from diffusers import StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline

    base = StableDiffusionXLPipeline.from_pretrained(base_dir)
    components = {**base.components, "unet": _unet(2 * TEXT_HIDDEN, time_ids=6, seed=INPAINT_SEED, in_channels=9)}
    pipe = StableDiffusionXLInpaintPipeline(**components, force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def build_tiny_model(output: str | Path, weights: str = "fp32", overwrite: bool = False) -> Path:
    """Build the tiny sources in a temporary folder and convert them into an ov-sdxl model folder."""
    import tempfile

    from ov_sdxl.config import ConvertConfig
    from ov_sdxl.convert import convert_models
    from ov_sdxl.layout import read_manifest

    output = Path(output)
    manifest = read_manifest(output) if output.is_dir() and not overwrite else None
    if manifest and manifest["sources"] == TINY_SOURCES and manifest["weights"] == weights:
        log.info("%s already holds the tiny model (%s)", output, weights)
        return output
    with tempfile.TemporaryDirectory(prefix="ov-sdxl-tiny-") as tmp:
        base_dir, refiner_dir = build_tiny_sources(tmp)
        config = ConvertConfig(
            base=str(base_dir),
            refiner=str(refiner_dir),
            output=output,
            weights=weights,
            overwrite=overwrite,
            taesdxl=str(base_dir.parent / "taesdxl"),
        )
        convert_models(config, source_labels=TINY_SOURCES)
    return output

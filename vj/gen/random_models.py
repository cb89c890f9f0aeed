"""LCM pipelines with random weights, built from configs: the real architecture's arithmetic without a download.

For timing the engine where no model can be fetched (``vj model random --arch sd15``, ``scripts/bench_gen.py``)
and for tests (``tiny``). ``sd15`` has the public Stable Diffusion 1.5 / LCM Dreamshaper v7 sizes: a UNet with
blocks of 320, 640, 1280 and 1280 channels and the LCM guidance embedding, the SD autoencoder, CLIP ViT-L/14's
text encoder. The pictures are noise; the time each frame takes is the real model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ARCHS: dict[str, dict[str, Any]] = {
    "sd15": {
        "unet": {
            "block_out_channels": (320, 640, 1280, 1280),
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
            "time_cond_proj_dim": 256,
            "sample_size": 64,
        },
        "vae": {"block_out_channels": (128, 256, 512, 512), "norm_num_groups": 32, "sample_size": 512},
        "text": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "vocab_size": 49408,
            "projection_dim": 768,
        },
    },
    "small": {
        "unet": {
            "block_out_channels": (64, 128, 256, 256),
            "cross_attention_dim": 256,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
            "time_cond_proj_dim": 64,
            "sample_size": 32,
        },
        "vae": {"block_out_channels": (32, 64, 128, 128), "norm_num_groups": 32, "sample_size": 256},
        "text": {
            "hidden_size": 256,
            "intermediate_size": 1024,
            "num_attention_heads": 4,
            "num_hidden_layers": 4,
            "vocab_size": 1024,
            "projection_dim": 256,
        },
    },
    "tiny": {
        "unet": {
            "block_out_channels": (32, 32, 64, 64),
            "cross_attention_dim": 32,
            "attention_head_dim": 4,
            "norm_num_groups": 8,
            "time_cond_proj_dim": 16,
            "sample_size": 8,
        },
        "vae": {"block_out_channels": (16, 16, 32, 32), "norm_num_groups": 8, "sample_size": 64},
        "text": {
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "vocab_size": 1024,
            "projection_dim": 32,
        },
    },
}


def byte_tokenizer(max_length: int = 77) -> Any:
    """A CLIP tokenizer whose every character is a token (the 256 byte symbols CLIP uses, no merges)."""
    from transformers import CLIPTokenizer

    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        chars.append(chr(b) if b in keep else chr(256 + extra))
        extra += b not in keep
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab.setdefault(c + suffix, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def random_pipeline(arch: str = "tiny", seed: int = 0) -> Any:
    """A LatentConsistencyModelImg2ImgPipeline with the shapes of ``arch`` and random weights (on the CPU)."""
    import torch
    from diffusers import AutoencoderKL, LatentConsistencyModelImg2ImgPipeline, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}' (choose {', '.join(ARCHS)})")
    a = ARCHS[arch]
    torch.manual_seed(seed)
    # The Stable Diffusion 1.x layout: four blocks of two layers, attention in all but the deepest.
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        **a["unet"],
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        scaling_factor=0.18215,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        **a["vae"],
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            **a["text"],
        )
    )
    scheduler = LCMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=True
    )
    return LatentConsistencyModelImg2ImgPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=byte_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def random_tiny_vae(seed: int = 0) -> Any:
    """An AutoencoderTiny with the public TAESD sizes (``madebyollin/taesd``) and random weights."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return AutoencoderTiny()  # the defaults are TAESD's: 64 channels, 1-3-3-3 blocks, 4 latent channels


def save_random(arch: str, folder: Path, seed: int = 0) -> Path:
    """Build and save a random pipeline as a diffusers folder (``--model FOLDER`` loads it)."""
    random_pipeline(arch, seed).save_pretrained(folder, safe_serialization=True)
    return folder

"""Pipelines with random weights, built from configs: the real architectures' arithmetic without a download.

For timing the engine where no model can be fetched (``vj model random --arch sd15``, ``scripts/bench_gen.py``)
and for tests (the ``tiny`` ones). The pictures are noise; the time each frame takes is the real model's.

* ``sd15``: the public Stable Diffusion 1.5 / LCM Dreamshaper v7 sizes: a UNet with blocks of 320, 640, 1280 and
  1280 channels and LCM's guidance embedding, the SD autoencoder, CLIP ViT-L/14's text encoder (family ``lcm``).
  ``small`` and ``tiny``: the same layout, narrower.
* ``sd-turbo``: SD 2.1 base (SD-Turbo): the same blocks with linear projections and 5/10/20/20 attention heads,
  cross-attention to OpenCLIP ViT-H's 1024-wide text encoder (23 layers), no guidance embedding (``turbo``).
  ``tiny-turbo``: the same layout, tiny.
* ``sdxl``: SDXL base (SDXL-Turbo, SDXL-Lightning): three blocks of 320, 640 and 1280 channels with 1, 2 and 10
  transformer layers, cross-attention to two text encoders side by side (CLIP ViT-L, 768, and OpenCLIP bigG,
  1280), the pooled text embedding and the size ids as added conditioning, SDXL's autoencoder (``turbo``; save it
  as ``lightning`` with ``family=``). ``tiny-xl``: the same layout, tiny (and 2 transformer layers deep down,
  not 10).

Each saved folder names its family in its scheduler config (the ``_vj_family`` key, see ``vj.gen.families``), so
``--model FOLDER`` runs it as that family whatever the folder is called. The turbo and SDXL models keep the
scheduler their real counterparts ship (Euler, "trailing" timesteps); the LCM ones LCMScheduler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vj.gen.families import CONFIG_KEY, NAMES

_SD_VAE = {"block_out_channels": (128, 256, 512, 512), "norm_num_groups": 32, "sample_size": 512}
_TINY_VAE = {"block_out_channels": (16, 16, 32, 32), "norm_num_groups": 8, "sample_size": 64}
_CLIP_L = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "vocab_size": 49408,
    "projection_dim": 768,
}
_TINY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 1024,
    "projection_dim": 32,
}

# about: for --help; family: what detect() reports for the saved folder; layout: "sd" (four blocks, Stable
# Diffusion 1.x/2.x) or "xl" (three blocks, two text encoders, added conditioning)
ARCHS: dict[str, dict[str, Any]] = {
    "sd15": {
        "about": "Stable Diffusion 1.5 / LCM Dreamshaper v7 sizes",
        "family": "lcm",
        "layout": "sd",
        "unet": {
            "block_out_channels": (320, 640, 1280, 1280),
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
            "time_cond_proj_dim": 256,
            "sample_size": 64,
        },
        "vae": _SD_VAE,
        "text": _CLIP_L,
    },
    "small": {
        "about": "the SD 1.5 layout, narrower",
        "family": "lcm",
        "layout": "sd",
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
        "about": "the SD 1.5 layout, tiny (for tests)",
        "family": "lcm",
        "layout": "sd",
        "unet": {
            "block_out_channels": (32, 32, 64, 64),
            "cross_attention_dim": 32,
            "attention_head_dim": 4,
            "norm_num_groups": 8,
            "time_cond_proj_dim": 16,
            "sample_size": 8,
        },
        "vae": _TINY_VAE,
        "text": _TINY_TEXT,
    },
    "sd-turbo": {
        "about": "SD 2.1 base sizes (SD-Turbo)",
        "family": "turbo",
        "layout": "sd",
        "unet": {
            "block_out_channels": (320, 640, 1280, 1280),
            "cross_attention_dim": 1024,
            "attention_head_dim": (5, 10, 20, 20),
            "use_linear_projection": True,
            "norm_num_groups": 32,
            "sample_size": 64,
        },
        "vae": _SD_VAE,
        "text": {  # OpenCLIP ViT-H/14 as SD 2.x ships it: the last of its 24 layers dropped
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_attention_heads": 16,
            "num_hidden_layers": 23,
            "vocab_size": 49408,
            "projection_dim": 512,
            "hidden_act": "gelu",
        },
    },
    "tiny-turbo": {
        "about": "the SD 2.1 layout, tiny",
        "family": "turbo",
        "layout": "sd",
        "unet": {
            "block_out_channels": (32, 32, 64, 64),
            "cross_attention_dim": 32,
            "attention_head_dim": (2, 4, 8, 8),
            "use_linear_projection": True,
            "norm_num_groups": 8,
            "sample_size": 8,
        },
        "vae": _TINY_VAE,
        "text": {**_TINY_TEXT, "hidden_act": "gelu"},
    },
    "sdxl": {
        "about": "SDXL sizes (SDXL-Turbo, SDXL-Lightning)",
        "family": "turbo",
        "layout": "xl",
        "unet": {
            "block_out_channels": (320, 640, 1280),
            "transformer_layers_per_block": (1, 2, 10),
            "attention_head_dim": (5, 10, 20),
            "cross_attention_dim": 2048,  # 768 + 1280: the two text encoders side by side
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2816,  # the pooled 1280 + 6 size ids x 256
            "use_linear_projection": True,
            "norm_num_groups": 32,
            "sample_size": 128,
        },
        "vae": {**_SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025},
        "text": _CLIP_L,
        "text_2": {  # OpenCLIP ViT-bigG/14, with its projection: the pooled embedding
            "hidden_size": 1280,
            "intermediate_size": 5120,
            "num_attention_heads": 20,
            "num_hidden_layers": 32,
            "vocab_size": 49408,
            "projection_dim": 1280,
            "hidden_act": "gelu",
        },
    },
    "tiny-xl": {
        "about": "the SDXL layout, tiny",
        "family": "turbo",
        "layout": "xl",
        "unet": {
            "block_out_channels": (32, 64, 64),
            "transformer_layers_per_block": (1, 2, 2),  # SDXL has 10 in the deepest block
            "attention_head_dim": (2, 4, 4),
            "cross_attention_dim": 64,  # 32 + 32
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 80,  # 32 + 6 x 8
            "use_linear_projection": True,
            "norm_num_groups": 8,
            "sample_size": 8,
        },
        "vae": {**_TINY_VAE, "scaling_factor": 0.13025},
        "text": _TINY_TEXT,
        "text_2": {**_TINY_TEXT, "hidden_act": "gelu"},
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


def _text_encoder(sizes: dict[str, Any], projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        **{"hidden_act": "quick_gelu", **sizes},
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def configs(arch: str, family: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The UNet's and the scheduler's configs of ``arch`` (what ``families.detect`` reads), building nothing.
    ``family``: the family the scheduler config names (default: the arch's)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}' (choose {', '.join(ARCHS)})")
    a = ARCHS[arch]
    family = family or a["family"]
    if family not in NAMES:
        raise ValueError(f"unknown family '{family}' (choose {', '.join(NAMES)})")
    blocks: dict[str, tuple[str, ...]]
    if a["layout"] == "xl":  # SDXL: three blocks of two layers, no attention in the first, more transformers deeper
        blocks = {
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        }
    else:  # Stable Diffusion 1.x and 2.x: four blocks of two layers, attention in all but the deepest
        blocks = {
            "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        }
    unet = {"in_channels": 4, "out_channels": 4, "layers_per_block": 2, **blocks, **a["unet"]}
    scheduler: dict[str, Any] = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
        CONFIG_KEY: family,
    }
    if a["family"] == "lcm":
        scheduler.update(_class_name="LCMScheduler", clip_sample=False, set_alpha_to_one=True)
    else:  # what SD-Turbo, SDXL-Turbo and SDXL-Lightning ship with
        scheduler.update(_class_name="EulerDiscreteScheduler", timestep_spacing="trailing", steps_offset=1)
    return unet, scheduler


def random_pipeline(arch: str = "tiny", seed: int = 0, family: str | None = None) -> Any:
    """A pipeline with the shapes of ``arch`` and random weights (on the CPU): a LatentConsistencyModelImg2ImgPipeline
    (``lcm`` archs), a StableDiffusionImg2ImgPipeline (``sd-turbo``) or a StableDiffusionXLImg2ImgPipeline (SDXL).
    ``family``: the family its scheduler config names (default: the arch's)."""
    import diffusers
    import torch
    from diffusers import (
        AutoencoderKL,
        LatentConsistencyModelImg2ImgPipeline,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionXLImg2ImgPipeline,
        UNet2DConditionModel,
    )

    unet_config, scheduler_config = configs(arch, family)
    a = ARCHS[arch]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        **{"scaling_factor": 0.18215, **a["vae"]},
    )
    text = _text_encoder(a["text"])
    scheduler = getattr(diffusers, scheduler_config["_class_name"]).from_config(scheduler_config)
    if a["layout"] == "xl":
        return StableDiffusionXLImg2ImgPipeline(
            vae=vae,
            text_encoder=text,
            text_encoder_2=_text_encoder(a["text_2"], projection=True),
            tokenizer=byte_tokenizer(),
            tokenizer_2=byte_tokenizer(),
            unet=unet,
            scheduler=scheduler,
            requires_aesthetics_score=False,
            force_zeros_for_empty_prompt=True,
        )
    cls = LatentConsistencyModelImg2ImgPipeline if a["family"] == "lcm" else StableDiffusionImg2ImgPipeline
    return cls(
        vae=vae,
        text_encoder=text,
        tokenizer=byte_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def random_lora(unet: Any, rank: int = 4, seed: int = 0) -> dict[str, Any]:
    """A LoRA with random weights for ``unet``'s attention projections (to_q, to_k, to_v, to_out.0), as the state
    dict diffusers saves (peft's layout: ``down_blocks.0.attentions.0...to_q.lora_A.weight``). Both factors are
    random (a trained LoRA's are not zero), so it changes what the UNet predicts. ``unet`` itself is not changed
    (the adapter is made on a copy)."""
    import copy

    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    config = LoraConfig(
        r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    model = copy.deepcopy(unet)
    torch.manual_seed(seed)
    model.add_adapter(config, adapter_name="random")
    state = get_peft_model_state_dict(model, adapter_name="random")
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def save_lora(state: dict[str, Any], path: Path, xl: bool = False) -> Path:
    """A UNet LoRA state dict (as :func:`random_lora` makes) saved as a diffusers LoRA ``.safetensors`` file."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin

    saver = StableDiffusionXLLoraLoaderMixin if xl else StableDiffusionLoraLoaderMixin
    path.parent.mkdir(parents=True, exist_ok=True)
    saver.save_lora_weights(str(path.parent), unet_lora_layers=state, weight_name=path.name, safe_serialization=True)
    return path


def save_random_lora(path: Path, arch: str = "tiny", rank: int = 4, seed: int = 0, unet: Any = None) -> Path:
    """A random LoRA for ``arch``'s UNet (or for ``unet``) saved at ``path`` (``--lora FILE`` loads it)."""
    unet = unet if unet is not None else random_pipeline(arch).unet
    return save_lora(random_lora(unet, rank, seed), path, xl=unet.config.get("addition_embed_type") == "text_time")


def random_tiny_vae(seed: int = 0) -> Any:
    """An AutoencoderTiny with the public TAESD sizes (``madebyollin/taesd``) and random weights."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return AutoencoderTiny()  # the defaults are TAESD's: 64 channels, 1-3-3-3 blocks, 4 latent channels


def save_random(arch: str, folder: Path, seed: int = 0, family: str | None = None) -> Path:
    """Build and save a random pipeline as a diffusers folder (``--model FOLDER`` loads it)."""
    random_pipeline(arch, seed, family).save_pretrained(folder, safe_serialization=True)
    return folder

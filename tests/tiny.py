"""Tiny random models built from configs, so the real loading and inference code runs without any download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vj.gen.random_models import byte_tokenizer, save_random, save_random_lora


def tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random CLIP (text and vision, 32-wide, 2 layers) with its tokenizer, saved to ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    tok = byte_tokenizer()
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=4
    )
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def count_unet_calls(unet: Any) -> dict[str, int]:
    """A live count of ``unet``'s calls (``n``) and the batch of the last one (``batch``)."""
    calls = {"n": 0, "batch": 0}

    def hook(_module: Any, inputs: tuple[Any, ...]) -> None:
        calls["n"] += 1
        calls["batch"] = int(inputs[0].shape[0])

    unet.register_forward_pre_hook(hook)
    return calls


def tiny_lcm(folder: Path) -> Path:
    """A random LCM pipeline with the Stable Diffusion 1.x layout and tiny widths, as a diffusers folder."""
    return save_random("tiny", folder)


def tiny_turbo(folder: Path, family: str | None = None) -> Path:
    """A random SD-Turbo-layout (SD 2.1) pipeline, tiny, as a diffusers folder; ``family``: what it says it is."""
    return save_random("tiny-turbo", folder, family=family)


def tiny_xl(folder: Path, family: str | None = None) -> Path:
    """A random SDXL-layout pipeline (two text encoders, added conditioning), tiny, as a diffusers folder."""
    return save_random("tiny-xl", folder, family=family)


def tiny_lora(path: Path, arch: str = "tiny", seed: int = 0) -> Path:
    """A random LoRA for ``arch``'s UNet (the tiny model's by default), as a diffusers LoRA .safetensors file."""
    return save_random_lora(path, arch, rank=4, seed=seed)


# -- the same model as one original-layout checkpoint (what a .safetensors from a model site holds) -------------------
# The key mapping of the diffusers project's scripts/convert_diffusers_to_original_stable_diffusion.py, for the
# SD 1.x block layout (4 blocks, 2 layers each) that the tiny model shares.
def _unet_map() -> list[tuple[str, str]]:
    layer: list[tuple[str, str]] = []
    for i in range(4):
        for j in range(2):
            layer.append((f"input_blocks.{3 * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if i < 3:
                layer.append((f"input_blocks.{3 * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        for j in range(3):
            layer.append((f"output_blocks.{3 * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if i > 0:
                layer.append((f"output_blocks.{3 * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < 3:
            layer.append((f"input_blocks.{3 * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            layer.append((f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.", f"up_blocks.{i}.upsamplers.0."))
    layer.append(("middle_block.1.", "mid_block.attentions.0."))
    for j in range(2):
        layer.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    return layer


_UNET_TOP = [
    ("time_embed.0.weight", "time_embedding.linear_1.weight"),
    ("time_embed.0.bias", "time_embedding.linear_1.bias"),
    ("time_embed.2.weight", "time_embedding.linear_2.weight"),
    ("time_embed.2.bias", "time_embedding.linear_2.bias"),
    ("input_blocks.0.0.weight", "conv_in.weight"),
    ("input_blocks.0.0.bias", "conv_in.bias"),
    ("out.0.weight", "conv_norm_out.weight"),
    ("out.0.bias", "conv_norm_out.bias"),
    ("out.2.weight", "conv_out.weight"),
    ("out.2.bias", "conv_out.bias"),
]
_RESNET = [
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("emb_layers.1", "time_emb_proj"),
    ("skip_connection", "conv_shortcut"),
]


def _vae_map() -> list[tuple[str, str]]:
    m = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"), ("mid.attn_1.", "mid_block.attentions.0.")]
    for i in range(4):
        for j in range(2):
            m.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        if i < 3:
            m.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            m.append((f"up.{3 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
        for j in range(3):
            m.append((f"decoder.up.{3 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}."))
    for i in range(2):
        m.append((f"mid.block_{i + 1}.", f"mid_block.resnets.{i}."))
    return m


_VAE_ATTN = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]


def original_checkpoint(folder: Path, path: Path) -> Path:
    """The diffusers folder ``folder`` as a single original-layout ``.safetensors`` at ``path``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet").state_dict()
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").state_dict()
    text = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").state_dict()
    out = {}
    top = {hf: sd for sd, hf in _UNET_TOP}
    for k, v in unet.items():
        name = top.get(k, k)
        if "resnets" in k:
            for sd, hf in _RESNET:
                name = name.replace(hf, sd)
        for sd, hf in _unet_map():
            name = name.replace(hf, sd)
        out["model.diffusion_model." + name] = v
    for k, v in vae.items():
        name = k
        for sd, hf in _vae_map():
            name = name.replace(hf, sd)
        if "attentions" in k:
            for sd, hf in _VAE_ATTN:
                name = name.replace(hf, sd)
        # linear -> 1x1 convolution, as the original autoencoder stores attention
        out["first_stage_model." + name] = v[:, :, None, None] if "attentions" in k and v.ndim == 2 else v
    for k, v in text.items():
        # newer transformers flatten CLIPTextModel; original checkpoints keep the ``text_model.`` level
        out["cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k)] = v
    save_file({k: v.contiguous() for k, v in out.items()}, str(path))
    return path


def kohya_lora(diffusers_file: Path, path: Path) -> Path:
    """A diffusers LoRA file saved again in the kohya layout that LoRAs from model sites (and the LCM-LoRAs) use:
    ``lora_unet_<module with _>.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``."""
    import torch
    from safetensors.torch import load_file, save_file

    out = {}
    for key, value in load_file(str(diffusers_file)).items():
        module, factor = key.removeprefix("unet.").rsplit(".lora_", 1)
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.lora_{'down' if factor.startswith('A') else 'up'}.weight"] = value
        if factor.startswith("A"):
            out[f"{name}.alpha"] = torch.tensor(float(value.shape[0]))
    save_file(out, str(path))
    return path

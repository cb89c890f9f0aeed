"""The pipeline's pieces: which device and dtype, and the models loaded from a folder, a cached id or one file.

Nothing here runs frames (that is ``vj.gen.lcm``); this is where weights come from and how they are placed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vj.errors import GeneratorError, GeneratorUnusable
from vj.gen.models import DEFAULT_MODEL, ModelMissing, locate


def pick_device(name: str = "auto") -> Any:
    import torch

    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise GeneratorUnusable(f"unknown device '{name}' (auto, cuda, cuda:1, mps or cpu)") from None
        usable = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
        if not usable.get(device.type, True):
            raise GeneratorUnusable(f"device '{name}' is not available on this machine (try --device auto)")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(name: str, device: Any) -> Any:
    import torch

    if name == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    table = {
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float32": torch.float32,
        "fp32": torch.float32,
    }
    if name not in table:
        raise GeneratorUnusable(f"unknown dtype '{name}' (float16, bfloat16 or float32)")
    return table[name]


def place(module: Any, device: Any, dtype: Any) -> Any:
    """``module`` on ``device`` in ``dtype``, converting only what differs."""
    if module.dtype != dtype:
        module = module.to(dtype=dtype)
    return module.to(device) if module.device != device else module


@dataclass
class Parts:
    """The pipeline's pieces, on their device."""

    text_encoder: Any
    tokenizer: Any
    unet: Any
    vae: Any
    scheduler: Any
    scale: float  # latent scaling factor
    tiny_vae: bool


@dataclass
class Cond:
    """What the UNet is conditioned on for one frame (batch 1), or for a stream batch's frames (stacked)."""

    embeds: Any  # the text encoder's hidden states, B x 77 x D
    added: dict[str, Any] | None = None  # SDXL's pooled text embedding and size ids (``added_cond_kwargs``)

    def lerp(self, other: Cond, t: float) -> Cond:
        """Part way from this conditioning to ``other``: the prompt fader."""
        added = None
        if self.added is not None and other.added is not None:
            added = {k: v + (other.added[k] - v) * t for k, v in self.added.items()}
        return Cond(self.embeds + (other.embeds - self.embeds) * t, added if added is not None else self.added)

    @staticmethod
    def stack(conds: list[Cond]) -> Cond:
        import torch

        added = None
        if conds[0].added is not None:
            added = {k: torch.cat([c.added[k] for c in conds if c.added is not None]) for k in conds[0].added}
        return Cond(torch.cat([c.embeds for c in conds]), added)


def encode_prompt(parts: Parts, prompt: str, device: Any, dtype: Any) -> Cond:
    """The prompt's conditioning for the UNet (batch 1)."""
    ids = parts.tokenizer(
        [prompt],
        padding="max_length",
        max_length=parts.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)
    return Cond(parts.text_encoder(ids)[0].to(dtype))


def load_pipeline(model: str, config: str | None, dtype: Any) -> Any:
    """The LCM img2img pipeline of a diffusers folder, a cached id or a single checkpoint; on the CPU."""
    from diffusers import LatentConsistencyModelImg2ImgPipeline, UNet2DConditionModel

    kind, path = locate(model)
    common = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False, "dtype": dtype}
    try:
        if kind == "folder":
            return LatentConsistencyModelImg2ImgPipeline.from_pretrained(path, local_files_only=True, **common)
        _, config_path = locate(config or DEFAULT_MODEL, "model config")
        # The original layout has no slot for LCM's guidance embedding: a single file is an SD 1.x model with
        # LCM distilled (or an LCM-LoRA fused) into it, and takes its guidance from the prompt alone.
        unet = UNet2DConditionModel.from_single_file(
            str(path),
            config=str(config_path),
            subfolder="unet",
            time_cond_proj_dim=None,
            local_files_only=True,
            dtype=dtype,
        )
        return LatentConsistencyModelImg2ImgPipeline.from_single_file(
            str(path), config=str(config_path), unet=unet, local_files_only=True, **common
        )
    except GeneratorError:
        raise
    except Exception as e:  # noqa: BLE001 - broken files surface as many kinds of error
        raise ModelMissing(f"cannot load {model}: {type(e).__name__}: {e}") from None


def load_tiny_vae(name: str, dtype: Any) -> Any:
    from diffusers import AutoencoderTiny

    _, path = locate(name, "tiny autoencoder")
    try:
        return AutoencoderTiny.from_pretrained(path, local_files_only=True, dtype=dtype)
    except Exception as e:  # noqa: BLE001
        raise ModelMissing(f"cannot load the tiny autoencoder {name}: {type(e).__name__}: {e}") from None


def load_vae(model: str, config: str | None, dtype: Any) -> Any:
    """The model's autoencoder alone (a few hundred MB, not the whole pipeline)."""
    from diffusers import AutoencoderKL

    kind, path = locate(model)
    try:
        if kind == "folder":
            return AutoencoderKL.from_pretrained(path, subfolder="vae", local_files_only=True, dtype=dtype)
        _, config_path = locate(config or DEFAULT_MODEL, "model config")
        return AutoencoderKL.from_single_file(
            str(path), config=str(config_path), subfolder="vae", local_files_only=True, dtype=dtype
        )
    except GeneratorError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelMissing(f"cannot load the autoencoder of {model}: {type(e).__name__}: {e}") from None


def parts_from(pipe: Any, device: Any, dtype: Any, vae: Any = None) -> Parts:
    """The pieces the engine runs, on ``device`` in ``dtype``; ``vae``: an AutoencoderTiny to use instead."""
    from diffusers import AutoencoderTiny, LCMScheduler

    scheduler = pipe.scheduler
    if not isinstance(scheduler, LCMScheduler):
        scheduler = LCMScheduler.from_config(scheduler.config)
    vae = vae if vae is not None else pipe.vae
    tiny = isinstance(vae, AutoencoderTiny)
    parts = Parts(
        place(pipe.text_encoder, device, dtype),
        pipe.tokenizer,
        place(pipe.unet, device, dtype),
        place(vae, device, dtype),
        scheduler,
        1.0 if tiny else float(vae.config.scaling_factor),
        tiny,
    )
    for module in (parts.text_encoder, parts.unet, parts.vae):
        module.eval()
        module.requires_grad_(False)
    return parts

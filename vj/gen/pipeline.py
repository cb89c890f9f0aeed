"""The pipeline's pieces: which device and dtype, and the models loaded from a folder, a cached id or one file.

Nothing here runs frames (that is ``vj.gen.lcm``); this is where weights come from and how they are placed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from vj.errors import GeneratorError, GeneratorUnusable
from vj.gen.families import LCM, Family, detect
from vj.gen.models import DEFAULT_MODEL, ModelMissing, locate, locate_lora


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
    scheduler: Any  # an LCMScheduler whatever the model shipped with
    scale: float  # latent scaling factor
    tiny_vae: bool
    text_encoder_2: Any = None  # SDXL's second text encoder (OpenCLIP bigG, with the pooled projection)
    tokenizer_2: Any = None
    family: Family = LCM  # how the model was distilled: its default steps, timesteps, what the UNet predicts


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


def _ids(tokenizer: Any, prompt: str, device: Any) -> Any:
    return tokenizer(
        [prompt],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)


def encode_prompt(parts: Parts, prompt: str, device: Any, dtype: Any, *, size: tuple[int, int] | None = None) -> Cond:
    """The prompt's conditioning for the UNet (batch 1). ``size``: the frame's (width, height), which SDXL takes
    as conditioning too (default: the size the UNet was made for)."""
    if parts.text_encoder_2 is None:
        return Cond(parts.text_encoder(_ids(parts.tokenizer, prompt, device))[0].to(dtype))
    import torch

    # as diffusers' StableDiffusionXLPipeline.encode_prompt: each encoder's penultimate hidden states, side by
    # side; the pooled (projected) embedding of the last encoder
    hidden, pooled = [], None
    for tokenizer, encoder in ((parts.tokenizer, parts.text_encoder), (parts.tokenizer_2, parts.text_encoder_2)):
        if encoder is None:  # a refiner has only the second
            continue
        out = encoder(_ids(tokenizer, prompt, device), output_hidden_states=True)
        if pooled is None and out[0].ndim == 2:
            pooled = out[0]
        hidden.append(out.hidden_states[-2])
    if pooled is None:
        raise GeneratorUnusable("the second text encoder gives no pooled embedding (not a CLIPTextModelWithProjection)")
    if size is None:
        side = int(parts.unet.config.sample_size) * 8
        size = (side, side)
    w, h = size
    # _get_add_time_ids: original size, crop top-left, target size, each (height, width)
    ids = [h, w, 0, 0, h, w]
    unet = parts.unet
    embedding = getattr(unet, "add_embedding", None)
    expected = embedding.linear_1.in_features if embedding is not None else None
    passed = int(unet.config.addition_time_embed_dim) * len(ids) + int(pooled.shape[-1])
    if expected is not None and expected != passed:
        raise GeneratorUnusable(
            f"the UNet expects an added conditioning of {expected} values, the text encoder and size ids give "
            f"{passed} (an SDXL refiner, or a model whose parts do not match, is not supported)"
        )
    time_ids = torch.tensor([ids], device=device, dtype=dtype)
    return Cond(torch.cat(hidden, dim=-1).to(dtype), {"text_embeds": pooled.to(dtype), "time_ids": time_ids})


def _is_xl(folder: Path) -> bool:
    """Whether the diffusers folder holds an SDXL model (its UNet takes the added text and size conditioning)."""
    try:
        config = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(config.get("addition_embed_type") == "text_time")


def load_pipeline(model: str, config: str | None, dtype: Any, lora: str | None = None) -> Any:
    """The pipeline of a diffusers folder, a cached id or a single checkpoint, on the CPU; ``lora``: LoRA weights
    (a .safetensors file, a folder or a cached id) fused into it.

    A folder or id loads as whatever pipeline its ``model_index.json`` names (an LCM, Stable Diffusion 1.x/2.x or
    SDXL one, text to image or img2img: the engine takes only the parts). A single file is an SD 1.x/2.x model, or
    an SDXL one when ``config`` (its component configs) is an SDXL folder or id."""
    from diffusers import (
        DiffusionPipeline,
        LatentConsistencyModelImg2ImgPipeline,
        StableDiffusionXLImg2ImgPipeline,
        UNet2DConditionModel,
    )

    kind, path = locate(model)
    common = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False, "dtype": dtype}
    try:
        if kind == "folder":
            pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True, **common)
        else:
            _, config_path = locate(config or DEFAULT_MODEL, "model config")
            # The original layout has no slot for LCM's guidance embedding: a single file is a model with LCM
            # distilled (or an LCM-LoRA fused) into it, or a turbo one, and takes its guidance from the prompt alone.
            unet = UNet2DConditionModel.from_single_file(
                str(path),
                config=str(config_path),
                subfolder="unet",
                time_cond_proj_dim=None,
                local_files_only=True,
                dtype=dtype,
            )
            if _is_xl(config_path):
                pipe = StableDiffusionXLImg2ImgPipeline.from_single_file(
                    str(path), config=str(config_path), unet=unet, local_files_only=True, dtype=dtype
                )
            else:
                pipe = LatentConsistencyModelImg2ImgPipeline.from_single_file(
                    str(path), config=str(config_path), unet=unet, local_files_only=True, **common
                )
    except GeneratorError:
        raise
    except Exception as e:  # noqa: BLE001 - broken files surface as many kinds of error
        raise ModelMissing(f"cannot load {model}: {type(e).__name__}: {e}") from None
    if getattr(pipe, "unet", None) is None or getattr(pipe, "vae", None) is None:
        raise ModelMissing(f"cannot load {model}: {type(pipe).__name__} is not a UNet diffusion pipeline")
    if lora:
        fuse_lora(pipe, lora)
    return pipe


_LORA_KEYS = ("lora_A", "lora_B", "lora_down", "lora_up", "lora.down", "lora.up", "lokr_")


def fuse_lora(pipe: Any, lora: str) -> None:
    """Fuse the LoRA ``lora`` (a .safetensors file, a folder or a cached id) into ``pipe``'s weights, once: the
    frames then cost what the model alone costs. A file that is not a LoRA, or not one for this model, is a
    ModelMissing that names the file and what is wrong."""
    import importlib.util

    path = locate_lora(lora)
    if importlib.util.find_spec("peft") is None:
        raise GeneratorUnusable(f'--lora needs the peft package: pip install -e ".[lcm]" (for {path})')
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file raises several kinds
        raise ModelMissing(f"LoRA {path}: not a readable .safetensors file ({type(e).__name__}: {e})") from None
    if not any(marker in k for k in keys for marker in _LORA_KEYS):
        sample = ", ".join(keys[:3]) or "none"
        raise ModelMissing(f"LoRA {path}: holds no LoRA weights (keys: {sample}); is it a whole model? use --model")
    with _diffusers_warnings() as warned:
        try:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="vj", local_files_only=True)
        except Exception as e:  # noqa: BLE001 - peft and torch report a mismatch in their own ways
            raise ModelMissing(
                f"LoRA {path} does not fit this model ({type(e).__name__}: {_short(str(e))}); "
                "a LoRA is made for one base (SD 1.5, SD 2.x or SDXL)"
            ) from None
    adapters = [name for names in pipe.get_list_adapters().values() for name in names]
    problems = [w for w in warned if "unexpected keys" in w or "missing keys" in w]
    if not adapters or problems:
        pipe.unload_lora_weights()
        why = _short(problems[0]) if problems else "no layer of the model matches its weights"
        raise ModelMissing(f"LoRA {path} does not fit this model: {why}")
    pipe.fuse_lora(adapter_names=["vj"], lora_scale=1.0)
    pipe.unload_lora_weights()  # the LoRA layers go; the fused weights stay


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def _diffusers_warnings() -> Iterator[list[str]]:
    """The warnings diffusers logs inside the block (a LoRA's unmatched keys are only a warning there)."""
    import logging

    from diffusers.utils import logging as diffusers_logging

    warned: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warned.append(record.getMessage())

    root = logging.getLogger("diffusers")
    handler = Catch(logging.WARNING)
    level = diffusers_logging.get_verbosity()
    propagate = root.propagate
    diffusers_logging.set_verbosity(logging.WARNING)
    root.addHandler(handler)
    # only this handler hears them: require_packages keeps the performer's terminal free of diffusers' warnings
    others = [h for h in root.handlers if h is not handler]
    for h in others:
        root.removeHandler(h)
    root.propagate = False
    try:
        yield warned
    finally:
        root.removeHandler(handler)
        for h in others:
            root.addHandler(h)
        root.propagate = propagate
        diffusers_logging.set_verbosity(level)


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


def parts_from(
    pipe: Any,
    device: Any,
    dtype: Any,
    vae: Any = None,
    *,
    family: str = "auto",
    name: str | Sequence[str] = "",
) -> Parts:
    """The pieces the engine runs, on ``device`` in ``dtype``; ``vae``: an AutoencoderTiny to use instead.

    ``family``: ``auto`` or a family's name (``--family``); ``name``: the model's id or path, or the fused LoRA's
    name and then the model's (see ``vj.gen.families.detect``). The scheduler is always an LCMScheduler made from
    the model's scheduler config: the engine's consistency loop takes its constants from it."""
    from diffusers import AutoencoderTiny, LCMScheduler

    scheduler = pipe.scheduler
    if not isinstance(scheduler, LCMScheduler):
        scheduler = LCMScheduler.from_config(scheduler.config)
    fam = detect(pipe.unet.config, pipe.scheduler.config, name, family)
    vae = vae if vae is not None else pipe.vae
    tiny = isinstance(vae, AutoencoderTiny)
    scale = 1.0 if tiny else float(vae.config.scaling_factor)
    text_encoder_2 = getattr(pipe, "text_encoder_2", None)
    parts = Parts(
        place(pipe.text_encoder, device, dtype) if pipe.text_encoder is not None else None,
        pipe.tokenizer,
        place(pipe.unet, device, dtype),
        _place_vae(vae, device, dtype, fam.xl and not tiny),
        scheduler,
        scale,
        tiny,
        place(text_encoder_2, device, dtype) if text_encoder_2 is not None else None,
        getattr(pipe, "tokenizer_2", None),
        fam,
    )
    for module in (parts.text_encoder, parts.text_encoder_2, parts.unet, parts.vae):
        if module is not None:
            module.eval()
            module.requires_grad_(False)
    return parts


def _place_vae(vae: Any, device: Any, dtype: Any, xl: bool) -> Any:
    """The autoencoder on ``device``. SDXL's own overflows float16 (its pictures come out black, NaN): where its
    config says so (``force_upcast``), it runs in float32 and takes and gives ``dtype`` tensors, as diffusers'
    SDXL pipelines do it."""
    import torch

    if xl and dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False)):
        return UpcastVae(place(vae, device, torch.float32), dtype)
    return place(vae, device, dtype)


class UpcastVae:
    """An AutoencoderKL run in float32 for a pipeline in ``dtype``: ``encode``/``decode`` as the autoencoder's."""

    def __init__(self, vae: Any, dtype: Any) -> None:
        self.vae, self.dtype = vae, dtype
        self.config, self.device = vae.config, vae.device

    def encode(self, image: Any) -> Any:
        dist = self.vae.encode(image.float()).latent_dist
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=dist.mean.to(self.dtype)))

    def decode(self, latents: Any, return_dict: bool = False) -> Any:
        return (self.vae.decode(latents.float(), return_dict=False)[0].to(self.dtype),)

    def eval(self) -> UpcastVae:
        self.vae.eval()
        return self

    def requires_grad_(self, flag: bool = True) -> UpcastVae:
        self.vae.requires_grad_(flag)
        return self

    def state_dict(self) -> Any:
        return self.vae.state_dict()

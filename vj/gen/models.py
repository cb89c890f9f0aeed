"""Where model weights come from: find them on this machine, or fetch them once, on purpose, while online.

The show never downloads: a performance must not stall on a network. ``vj model fetch`` fills the Hugging Face
cache (``$HF_HOME``, usually ``~/.cache/huggingface``); ``--model`` then finds the id there, offline.
"""

from __future__ import annotations

from pathlib import Path

from vj.errors import GeneratorError, GeneratorUnusable

DEFAULT_MODEL = "SimianLuo/LCM_Dreamshaper_v7"
TINY_VAE = "madebyollin/taesd"
TINY_VAE_XL = "madebyollin/taesdxl"  # SDXL's latents: the default tiny autoencoder for an SDXL model

# The lcm options that say which autoencoder decodes a model's latents (replay's latent morph takes them along).
DECODER_OPTIONS = ("model", "model_config", "device", "dtype", "tiny_vae")

# What the engine loads from a diffusers repository: configs, tokenizer files and safetensors weights; not the
# safety checker, not the duplicate .bin/.ckpt weights, not the single-file copies some repositories add.
# A LoRA repository keeps its weights at the top: diffusers' file name, or names that say "lora"; so do a
# ControlNet's (diffusers' name) and a depth model's (transformers' name).
FETCH_PATTERNS = [
    "*.json",
    "*.txt",
    "*/*.json",
    "*/*.txt",
    "*/*.safetensors",
    "pytorch_lora_weights.safetensors",
    "*lora*.safetensors",
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
]
SKIP_PATTERNS = ["safety_checker/*", "*.fp16.safetensors", "*/*.fp16.safetensors"]


class ModelMissing(GeneratorUnusable):
    """The model is not on this machine (or is broken): the worker falls back at once."""


def require_packages() -> None:
    """The lcm extra's packages, or a clear error that says how to install them."""
    import importlib.util

    for name in ("torch", "diffusers", "transformers", "huggingface_hub", "safetensors"):
        if importlib.util.find_spec(name) is None:
            raise GeneratorUnusable(f'the lcm generator needs {name}: pip install -e ".[lcm]"')
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # Their warnings about optional extras (no torchvision...) and their nested progress bars would flood the
    # performer's terminal; vj shows one bar a load, and errors still reach the show as exceptions.
    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def locate(model: str, what: str = "model") -> tuple[str, Path]:
    """("folder", path) for a diffusers folder or a cached Hugging Face id, ("file", path) for a checkpoint."""
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix not in (".safetensors", ".ckpt"):
            raise ModelMissing(f"{model}: a single-file checkpoint is a .safetensors (or .ckpt) file")
        return "file", path
    if path.is_dir():
        if not (path / "model_index.json").is_file() and not (path / "config.json").is_file():
            raise ModelMissing(f"{model}: not a diffusers folder (no model_index.json or config.json)")
        return "folder", path
    if path.suffix or model.count("/") != 1 or model.startswith((".", "/", "~")):
        raise ModelMissing(f"{what} '{model}' not found: no such file or folder")
    try:
        from huggingface_hub import snapshot_download

        return "folder", Path(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - "not cached" comes in several exception types
        raise ModelMissing(
            f"{what} '{model}' is not on this machine; download it once while online: vj model fetch {model}"
        ) from None


LORA_FILE = "pytorch_lora_weights.safetensors"  # the name diffusers saves a LoRA under


def locate_lora(name: str) -> Path:
    """The LoRA ``.safetensors`` file that ``name`` means: a file; a folder holding one (diffusers' own
    ``pytorch_lora_weights.safetensors``, or its only ``.safetensors``); a cached Hugging Face id, or an id and the
    file in it (``ByteDance/SDXL-Lightning/sdxl_lightning_4step_lora.safetensors``)."""
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ModelMissing(f"LoRA {name}: a LoRA is a .safetensors file")
        return path
    if path.is_dir():
        return _lora_in(path, name)
    parts = name.split("/")
    if name.startswith((".", "/", "~")) or len(parts) < 2 or (len(parts) == 2 and path.suffix == ".safetensors"):
        raise ModelMissing(f"LoRA '{name}' not found: no such file or folder")
    repo, inner = "/".join(parts[:2]), "/".join(parts[2:])
    folder = locate(repo, "LoRA")[1]  # the cached id (or "not on this machine", with the fetch to run)
    if not inner:
        return _lora_in(folder, repo)
    file = folder / inner
    if not file.is_file():
        have = ", ".join(sorted(p.name for p in folder.glob("*.safetensors"))) or "no .safetensors files"
        raise ModelMissing(f"LoRA '{name}': {repo} on this machine has no {inner} ({have})")
    return file


def _lora_in(folder: Path, name: str) -> Path:
    if (folder / LORA_FILE).is_file():
        return folder / LORA_FILE
    files = sorted(folder.glob("*.safetensors"))
    if len(files) == 1:
        return files[0]
    if not files:
        raise ModelMissing(f"LoRA '{name}': no .safetensors file in {folder}")
    names = ", ".join(f.name for f in files)
    raise ModelMissing(f"LoRA '{name}': several .safetensors files ({names}); name one: --lora {name}/{files[0].name}")


def fetch(model: str) -> Path:
    """Download a Hugging Face model repository into the cache (with progress bars); its folder."""
    require_packages()
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import enable_progress_bars

    enable_progress_bars()  # a download is where the hub's own bars help (loading turns them off)
    try:
        return Path(
            snapshot_download(model, allow_patterns=FETCH_PATTERNS, ignore_patterns=SKIP_PATTERNS, etag_timeout=30)
        )
    except Exception as e:  # noqa: BLE001 - offline, unknown id, gated, disk full: each its own type
        name = type(e).__name__
        if any(word in name for word in ("Offline", "Connect", "Timeout", "LocalEntryNotFound")):
            raise GeneratorError(
                f"cannot reach the Hugging Face Hub to fetch '{model}' ({name}); connect to the network, or copy "
                "a diffusers folder here and pass it with --model DIR"
            ) from None
        if "RepositoryNotFound" in name or "GatedRepo" in name:
            raise GeneratorError(f"'{model}' is not on the Hugging Face Hub, or needs a login ({name})") from None
        raise GeneratorError(f"fetching '{model}' failed: {name}: {e}") from None

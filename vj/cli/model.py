"""``vj model``: fetch a model, or build a random one for tests."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from vj.errors import ConfigError

log = logging.getLogger("vj")


def _add_model_commands(sub: Any) -> None:
    from vj.gen.families import NAMES
    from vj.gen.models import DEFAULT_MODEL, TINY_VAE
    from vj.gen.random_models import ARCHS

    mo = sub.add_parser("model", help="models for the lcm generator: fetch one, or build a random one").add_subparsers(
        dest="what", required=True
    )
    fe = mo.add_parser(
        "fetch",
        help="download a model into the Hugging Face cache (once, while online)",
        description="Download a diffusers model (and optionally the tiny autoencoder) into the Hugging Face cache "
        "($HF_HOME, usually ~/.cache/huggingface). The show itself never downloads: --model ID finds it there.",
    )
    fe.add_argument("model", nargs="?", default=DEFAULT_MODEL, metavar="ID", help=f"Hugging Face id ({DEFAULT_MODEL})")
    fe.add_argument(
        "--tiny-vae", nargs="?", const=TINY_VAE, metavar="ID", help=f"also the tiny autoencoder ({TINY_VAE})"
    )
    fe.set_defaults(func=cmd_model_fetch)
    ra = mo.add_parser(
        "random",
        help="save a model with random weights (real architecture, noise pictures): for timing, no download",
        description="Save a diffusers folder with random weights and a real model's architecture: the pictures are "
        "noise, the time each frame takes is the real model's. --model DIR runs it as its family (lcm, turbo or "
        "lightning), whatever the folder is called.",
    )
    ra.add_argument(
        "--arch",
        choices=ARCHS,
        default="sd15",
        help="; ".join(f"{name}: {a['about']}, {a['family']}" for name, a in ARCHS.items()) + " (default: sd15)",
    )
    ra.add_argument(
        "--family",
        choices=NAMES,
        help="the family the folder says it is (default: the architecture's; e.g. --arch sdxl --family lightning)",
    )
    ra.add_argument("--out", required=True, metavar="DIR", help="where to save the diffusers folder")
    ra.add_argument(
        "--lora",
        metavar="FILE",
        help="also save a random LoRA for its UNet at FILE (.safetensors), for vj run --lora FILE",
    )
    ra.add_argument(
        "--structure",
        metavar="DIR",
        help="also save a random depth ControlNet for its UNet and a random depth model, in DIR/controlnet and "
        "DIR/depth, for vj run --controlnet DIR/controlnet --depth-model DIR/depth",
    )
    ra.add_argument("--seed", type=int, default=0)
    ra.set_defaults(func=cmd_model_random)


def cmd_model_fetch(args: argparse.Namespace) -> int:
    from vj.gen.models import fetch

    for model in [args.model] + ([args.tiny_vae] if args.tiny_vae else []):
        print(f"fetching {model} ...", file=sys.stderr)
        print(f"{model}\t{fetch(model)}")
    print(
        f"ready: vj run --model {args.model}" + (f" --tiny-vae {args.tiny_vae}" if args.tiny_vae else ""),
        file=sys.stderr,
    )
    return 0


def cmd_model_random(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vj.gen.models import require_packages
    from vj.gen.random_models import random_pipeline, save_random_lora

    require_packages()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError("the folder is not empty", file=str(out), fix="name a new folder")
    if args.structure and Path(args.structure).exists() and any(Path(args.structure).iterdir()):
        raise ConfigError("the folder is not empty", file=args.structure, fix="name a new folder for --structure")
    lora = Path(args.lora) if args.lora else None
    if lora is not None and lora.suffix != ".safetensors":
        raise ConfigError("a LoRA is saved as a .safetensors file", file=str(lora), fix="end the name in .safetensors")
    pipe = random_pipeline(args.arch, args.seed, args.family)
    pipe.save_pretrained(out, safe_serialization=True)
    print(out)
    if lora is not None:
        print(save_random_lora(lora, rank=4, seed=args.seed, unet=pipe.unet))
    if args.structure:
        from vj.gen.structure import save_random_structure

        for folder in save_random_structure(Path(args.structure), pipe.unet, args.seed, args.arch):
            print(folder)
    return 0

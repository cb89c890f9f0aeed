"""``vj model``: fetch a model, or build a random one for tests."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from vj.errors import ConfigError

log = logging.getLogger("vj")


def _add_model_commands(sub: Any) -> None:
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
        help="save an LCM model with random weights (real architecture, noise pictures): for timing, no download",
    )
    ra.add_argument("--arch", choices=ARCHS, default="sd15", help="sd15: Stable Diffusion 1.5 sizes (default)")
    ra.add_argument("--out", required=True, metavar="DIR", help="where to save the diffusers folder")
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
    from vj.gen.random_models import save_random

    require_packages()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError("the folder is not empty", file=str(out), fix="name a new folder")
    print(save_random(args.arch, out, args.seed))
    return 0

"""Benchmark: the lcm generator's frame loop against a naive ``pipe(prompt=..., image=...)`` loop, side by side.

    python scripts/bench_gen.py [--arch sd15|small|tiny | --model ID|DIR|FILE] [--size 512] [--steps 4]
                                [--frames 20] [--device auto] [--dtype auto] [--tiny-vae [ID]] [--compile]

Both loops run the same model (the same modules in memory), steps, size, strength and guidance, frame after frame
in turn, each feeding its last frame back through the same zoom: the engine as the show runs it (warp on the
device, cached prompt embedding and schedule, the one copy to the host the window needs), the naive loop as a
first script would (a PIL image in, a PIL image out, the prompt encoded every call, progress bars; no safety
checker, as none is loaded). ``ratio`` is the median of the frame-by-frame ratios engine/naive. A third turn
times the engine with a clock around every model call (text encoder, UNet, VAE), waiting for the device each
time: that is ``model_ms``, and ``overhead_ms`` = engine_ms - model_ms.

Without --model the weights are random, built from the architecture's public config values (``sd15``: Stable
Diffusion 1.5 / LCM Dreamshaper v7; the arithmetic, so the time, is the real model's). --tiny-vae then is a random
TAESD. Prints one JSON line: medians over the frames after the warm-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vj.frame import motion
from vj.gen.lcm import LcmGenerator
from vj.gen.models import TINY_VAE
from vj.gen.pipeline import load_pipeline, load_tiny_vae, parts_from, pick_device, pick_dtype
from vj.gen.random_models import ARCHS, random_pipeline, random_tiny_vae

PROMPT = "a bioluminescent jellyfish cathedral, volumetric light"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--arch", choices=ARCHS, default="sd15", help="random weights of this architecture (sd15)")
    which.add_argument("--model", metavar="ID|DIR|FILE", help="a real model instead (as vj run --model)")
    ap.add_argument("--model-config", metavar="ID|DIR", help="configs for a single-file --model")
    ap.add_argument("--generator", default="lcm", choices=("lcm",), help="the generator measured (lcm)")
    ap.add_argument("--size", type=_size, default=512, help="frame size N (N x N, a multiple of 8; 512)")
    ap.add_argument(
        "--steps",
        type=int,
        choices=range(1, 9),
        metavar="1..8",
        help="denoising steps a frame (default: the model family's: lcm 4, turbo 1)",
    )
    ap.add_argument("--family", default="auto", choices=("auto", "lcm", "turbo", "lightning"), help="as vj run")
    ap.add_argument("--frames", type=_at_least(1), default=20, help="frames measured per loop (20)")
    ap.add_argument("--warmup", type=_at_least(0), default=2, help="frames per loop not measured (2)")
    ap.add_argument("--strength", type=float, default=0.5, help="the strength parameter 0..1 (0.5)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float16", "bfloat16", "float32"))
    ap.add_argument("--tiny-vae", nargs="?", const=TINY_VAE, metavar="ID", help="the engine encodes/decodes with TAESD")
    ap.add_argument(
        "--compile",
        nargs="?",
        const="inductor",
        choices=("inductor", "tensorrt"),
        help="torch.compile the engine's UNet (as vj run --compile)",
    )
    ap.add_argument(
        "--stream-batch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the engine denoises the steps of several frames in one batched UNet call (one call a frame); "
        "as vj run, on by default on a GPU with 2+ steps",
    )
    ap.add_argument("--markdown", metavar="FILE", help="print a markdown table of the JSON lines in FILE, and exit")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(args.markdown))
        return

    import torch
    from diffusers.utils import logging as diffusers_logging
    from PIL import Image

    diffusers_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    if args.model:
        pipe = load_pipeline(args.model, args.model_config, dtype)
        tiny = load_tiny_vae(args.tiny_vae, dtype) if args.tiny_vae else None
    else:
        pipe = random_pipeline(args.arch)
        tiny = random_tiny_vae() if args.tiny_vae else None
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(file=open(os.devnull, "w"))  # noqa: SIM115 - the bars still run, unseen
    parts = parts_from(pipe, device, dtype, tiny, family=args.family, name=args.model or args.arch)
    size = (args.size, args.size)
    label = args.model or f"random {args.arch}"
    gen = LcmGenerator(
        size, model=label, parts=parts, steps=args.steps, compile=args.compile or False, stream_batch=args.stream_batch
    )
    gen.load()  # the warm-up frames
    args.steps = gen.steps
    # The naive loop as each family's model card runs it: LCM's pipeline takes the steps and its guidance; the
    # SD/SDXL img2img pipelines of turbo and lightning models run steps x strength of their steps, without CFG.
    lcm = type(pipe).__name__.startswith("LatentConsistency")

    calls = {"n": 0, "batch": 0}

    def count(_module: Any, inputs: tuple[Any, ...]) -> None:
        calls["n"] += 1
        calls["batch"] = max(calls["batch"], int(inputs[0].shape[0]))

    parts.unet.register_forward_pre_hook(count)
    params = {"prompt": PROMPT, "seed": 7, "strength": args.strength}
    strength = gen.denoise_strength(params)
    delta = np.array([0.02, 0.005, 0.0, 0.0])  # a camera step: log zoom, angle, pan x, pan y

    start = gen.fresh(params)
    frame, picture = start, gen.to_display(start)
    times: dict[str, list[float]] = {"engine": [], "naive": [], "model": []}
    unet_calls = {"engine": 0, "naive": 0}
    batch = {"engine": 0, "naive": 0}
    for i in range(args.warmup + args.frames):
        measured = i >= args.warmup
        # the engine, as the show's worker runs it
        calls["n"] = calls["batch"] = 0
        t0 = time.perf_counter()
        frame = gen.generate(gen.warp(frame, delta), params)
        shown = gen.to_display(frame)  # the copy the window needs (and the wait for the device)
        engine_ms = (time.perf_counter() - t0) * 1000
        if measured:
            unet_calls["engine"] += calls["n"]
            batch["engine"] = max(batch["engine"], calls["batch"])
        # the naive loop
        calls["n"] = calls["batch"] = 0
        t0 = time.perf_counter()
        warped = motion.warp(picture, delta)
        out = pipe(
            prompt=PROMPT,
            image=Image.fromarray(warped),
            num_inference_steps=args.steps if lcm else math.ceil(args.steps / strength),
            strength=strength,
            guidance_scale=gen.guidance if lcm else 0.0,
        ).images[0]
        picture = np.asarray(out)
        naive_ms = (time.perf_counter() - t0) * 1000
        if measured:
            unet_calls["naive"] += calls["n"]
            batch["naive"] = max(batch["naive"], calls["batch"])
        # the engine again, timing every model call
        gen.timer.enabled, gen.timer.ms = True, 0.0
        timed = gen.to_display(gen.generate(gen.warp(frame, delta), params))
        gen.timer.enabled = False
        if measured:
            times["engine"].append(engine_ms)
            times["naive"].append(naive_ms)
            times["model"].append(gen.timer.ms)
        assert shown.shape == timed.shape == picture.shape, (shown.shape, picture.shape)
        if os.environ.get("VJ_BENCH_TRACE"):
            print(f"frame {i}: engine {engine_ms:.1f} naive {naive_ms:.1f} model {gen.timer.ms:.1f}", file=sys.stderr)

    engine, naive, model = (statistics.median(times[k]) for k in ("engine", "naive", "model"))
    # paired, frame by frame: the two loops take turns, so a shared machine's changing load falls on both alike
    ratio = statistics.median(e / n for e, n in zip(times["engine"], times["naive"], strict=True))
    result: dict[str, Any] = {
        "generator": args.generator,
        "model": label,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "dtype": str(dtype).replace("torch.", ""),
        "size": args.size,
        "steps": args.steps,
        "family": parts.family.name + (" XL" if parts.family.xl else ""),
        "strength": round(strength, 3),
        "tiny_vae": bool(args.tiny_vae),
        "compile": args.compile or False,
        "frames": args.frames,
        "engine_ms": round(engine, 2),
        "naive_ms": round(naive, 2),
        "ratio": round(ratio, 3),
        "model_ms": round(model, 2),
        "overhead_ms": round(engine - model, 2),
        "overhead_share": round((engine - model) / engine, 4),
        "engine_fps": round(1000 / engine, 2),
        "naive_fps": round(1000 / naive, 2),
        "stream_batch": gen.streaming,
        "unet_calls_per_frame": round(unet_calls["engine"] / args.frames, 2),
        "batch": batch["engine"],
        "naive_unet_calls_per_frame": round(unet_calls["naive"] / args.frames, 2),
        "naive_batch": batch["naive"],
        "vram_mb": round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))
    sys.stdout.flush()


def _size(text: str) -> int:
    n = int(text)
    if n < 8 or n % 8:
        raise argparse.ArgumentTypeError(f"{n} is not a multiple of 8 (the autoencoder halves it three times)")
    return n


def _at_least(low: int) -> Callable[[str], int]:
    def check(text: str) -> int:
        n = int(text)
        if n < low:
            raise argparse.ArgumentTypeError(f"{n}: at least {low}")
        return n

    return check


COLUMNS = [
    ("model", "model"),
    ("family", "family"),
    ("steps", "steps"),
    ("stream_batch", "stream batch"),
    ("compile", "compile"),
    ("tiny_vae", "TAESD"),
    ("dtype", "dtype"),
    ("engine_fps", "engine fps"),
    ("naive_fps", "naive fps"),
    ("ratio", "engine/naive time"),
    ("unet_calls_per_frame", "UNet calls/frame"),
    ("batch", "batch"),
    ("vram_mb", "VRAM MB"),
]


def markdown(path: str) -> str:
    """The benchmark's JSON lines in ``path`` as a markdown table (the device named above it); lines that are not
    a result are left out."""
    try:
        text = open(path).read()  # noqa: SIM115
    except OSError as e:
        raise SystemExit(f"bench_gen: cannot read {path}: {e.strerror}") from None
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "engine_fps" in row:
            rows.append(row)
    if not rows:
        return f"(no results in {path})"
    lines = [f"Device: {rows[0].get('device', '?')}, {rows[0].get('size', '?')}x{rows[0].get('size', '?')}", ""]
    lines.append("| " + " | ".join(title for _, title in COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "")) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

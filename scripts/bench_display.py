"""Benchmark: the display loop at full HD while the generator runs flat out, and the generator alone.

    python scripts/bench_display.py [--generator dream] [--seconds 10] [--size 1920x1080] [--gen-size 680x384]
                                    [--layers] [--record] [--web]

--layers adds three overlay layers: a looping video mixed into the dream, an image with transparency and a
gradient on top (the clip and the image are written to a temporary folder first). --record records the program
output to an MP4 file in a temporary folder meanwhile; --web serves the browser view with one page watching it.

Prints a table and one JSON line. Numbers, not assertions: the targets are 60 fps with frame time p99 <= 16.7 ms
on 2 CPU cores, and the CPU generators >= 30 frames/s at 512x512 (or as many pixels in 16:9).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import cv2
import numpy as np

from vj.cli import _size
from vj.engine.loop import Show, ShowConfig
from vj.frame import motion
from vj.gen import base
from vj.layers.spec import LayerSpec
from vj.params import ParamStore


def generator_alone(name: str, size: tuple[int, int], frames: int) -> dict[str, float]:
    """The generator's own speed: warp + generate, one thread, as the worker runs it."""
    cv2.setNumThreads(1)
    gen = base.factory(name, size)()
    params = ParamStore().values()
    img, cam, prev = gen.generate(None, params), motion.new_camera(), motion.new_camera()
    times = []
    for _ in range(frames):
        cam = motion.advance(cam, params, 1 / 30)
        t0 = time.perf_counter()
        img = gen.generate(gen.warp(img, cam - prev), params)
        times.append((time.perf_counter() - t0) * 1000)
        prev = cam
    ms = float(np.median(times))
    return {"ms_p50": round(ms, 2), "ms_p99": round(float(np.percentile(times, 99)), 2), "fps": round(1000 / ms, 1)}


def three_layers(folder: Path) -> list[LayerSpec]:
    import av

    clip, image = folder / "clip.mp4", folder / "logo.png"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for i in range(90):
            frame = np.zeros((360, 640, 3), np.uint8)
            cv2.circle(frame, (320 + int(200 * np.sin(i / 9)), 180), 60, (255, 120, 40), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    logo = np.zeros((256, 256, 4), np.uint8)
    cv2.putText(logo, "vj", (40, 180), cv2.FONT_HERSHEY_SIMPLEX, 5, (255, 255, 255, 255), 12)
    cv2.imwrite(str(image), logo)
    return [
        LayerSpec("video", str(clip), "screen", "loop", 0.5),
        LayerSpec("image", str(image), "normal", "top", 0.8),
        LayerSpec("gradient", "#000000:#ff0080", "multiply", "top", 0.3),
    ]


def display_under_load(
    name: str,
    size: tuple[int, int],
    gen_size: tuple[int, int],
    seconds: float,
    layers: list[LayerSpec],
    *,
    record: Path | None = None,
    web: bool = False,
) -> dict:
    cfg = ShowConfig(
        size=size,
        gen_size=gen_size,
        headless=True,
        seconds=seconds,
        cap_generator=False,
        layers=layers,
        generator=name,
        record=record,
    )
    show = Show(cfg)
    if web:
        from vj.output.web import WebView

        view = WebView(0)
        show.add_source(view)
        threading.Thread(target=_watch, args=(view,), daemon=True).start()
    return show.run()


def _watch(view: Any) -> None:
    """A page watching the web view: a WebSocket client taking every frame."""
    import asyncio

    import aiohttp

    async def run() -> None:
        while not view._ready.is_set():
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as session, session.ws_connect(view.url + "ws") as ws:
            async for _ in ws:
                pass

    asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=_size, default=(1920, 1080))
    ap.add_argument("--generator", default=ShowConfig.generator)
    ap.add_argument("--gen-size", type=_size, default=(680, 384))
    ap.add_argument("--layers", action="store_true", help="three overlay layers active")
    ap.add_argument("--record", action="store_true", help="record the output meanwhile")
    ap.add_argument("--web", action="store_true", help="serve the browser view to one watching page meanwhile")
    args = ap.parse_args()

    alone = generator_alone(args.generator, args.gen_size, 300)
    with tempfile.TemporaryDirectory() as folder:
        layers = three_layers(Path(folder)) if args.layers else []
        record = Path(folder) / "bench.mp4" if args.record else None
        report = display_under_load(
            args.generator, args.size, args.gen_size, args.seconds, layers, record=record, web=args.web
        )
    w, h = args.size
    gw, gh = args.gen_size
    print(f"machine: {os.cpu_count()} CPU cores")
    print(f"{args.generator} generator alone, {gw}x{gh}:  {alone['fps']:6.1f} frames/s  ({alone['ms_p50']:.1f} ms p50)")
    extra = f", {len(report['layers'])} layers" if report["layers"] else ""
    if "record" in report:
        rec = report["record"]
        extra += f", recording ({rec['frames']} frames written, {rec['dropped']} dropped, {rec['encoder']})"
    if "web" in report:
        extra += f", web view ({report['web']['frames_sent']} frames sent)"
    print(f"display {w}x{h}, generator flat out{extra}, {report['seconds']:.0f} s:")
    print(f"  display frames  {report['frames']:6d}   ({report['fps']:.1f} fps)   late frames {report['late_frames']}")
    print(f"  generated       {report['generated']:6d}   ({report['generated'] / report['seconds']:.1f} frames/s)")
    fm, im = report["frame_ms"], report["interval_ms"]
    print(f"  frame time ms   p50 {fm['p50']:.2f}   p99 {fm['p99']:.2f}   max {fm['max']:.2f}   (budget 16.7)")
    print(f"  interval ms     p50 {im['p50']:.2f}   p99 {im['p99']:.2f}   max {im['max']:.2f}")
    line = {
        "generator": args.generator,
        "generator_fps_alone": alone["fps"],
        "display_fps": report["fps"],
        "frames": report["frames"],
        "generated": report["generated"],
        "frame_ms": fm,
        "interval_ms": im,
        "layers": len(report["layers"]),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()

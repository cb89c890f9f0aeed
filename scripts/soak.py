"""Soak: a long headless show at full HD under everything a stage can throw at it, then the figures.

    python scripts/soak.py [--minutes 30] [--size 1920x1080] [--gen-size 512x512] [--rate 200] [--report FILE]

What runs, all at once, for the whole time:
  * the show, in this process, on the bundled scenes, switching scene every 10 s (OSC /vj/scene, as a rig would);
  * an OSC storm from another process: random parameters at --rate messages/s, with hostile packets mixed in
    (negative bundle sizes, arrays nested deep, endless type tags, 60 kB strings, random bytes, odd scene names);
  * a spark every 7 s and a save every 3 s;
  * a generator that fails now and then (dream that raises on about 1 frame in 400, and hangs once in a while).

Prints RSS at the start, after warm-up and at the end, frame time p99, late frames, black frames (the picture
darker than a threshold while blackout is off and brightness is up), rejects, restarts and whether the show ran to
its end. Exit status 0 when every goal holds: 0 black frames, p99 <= 16.7 ms, RSS growth < 5 % after warm-up,
no crash.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vj.gen.dream import DreamGenerator

BLACK_LEVEL = 8.0  # mean 0..255 below which a frame counts as black
# Parameters the storm moves at random (in range); brightness and blackout stay out: a dark frame they cause is
# asked for, not an accident.
STORM = {
    "zoom": (-1.0, 1.0),
    "pan_x": (-1.0, 1.0),
    "pan_y": (-1.0, 1.0),
    "rotate": (-1.0, 1.0),
    "speed": (0.0, 2.0),
    "strength": (0.0, 1.0),
    "chaos": (0.0, 1.0),
}


class FlakyDream(DreamGenerator):
    """The default generator, failing now and then as a real model does: it raises, and rarely it hangs."""

    name = "flaky-dream"

    def generate(self, image: Any, params: Any) -> Any:
        r = random.random()
        if r < 1 / 400:
            raise RuntimeError("soak: a generator failure")
        if r < 1 / 400 + 1 / 4000:
            time.sleep(12)  # longer than the worker's frame timeout: counted as a hang, a fresh thread takes over
        return super().generate(image, params)


def _osc(address: str, *args: Any) -> bytes:
    from pythonosc.osc_message_builder import OscMessageBuilder

    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def hostile_packets() -> list[bytes]:
    inner = _osc("/vj/zoom", 0.1)
    return [
        b"#bundle\0" + b"\0" * 8 + struct.pack(">i", -8) + inner,  # negative element size
        _pad(b"/vj/zoom") + _pad(b"," + b"[" * 1200 + b"]" * 1200),  # arrays nested deep
        _pad(b"/vj/zoom") + _pad(b"," + b"Q" * 40_000),  # endless unknown type tags
        _osc("/vj/prompt", "x" * 60_000),  # a huge string
        _osc("/vj/scene", "²"),
        _osc("/vj/zoom", float("nan")),
        _osc("/vj/quit"),
        bytes(random.getrandbits(8) for _ in range(200)),
    ]


def storm(port: int, rate: float, stop_at: float, scenes: int, seed: int) -> None:
    """Runs in another process: the rig and the attacker at once."""
    import socket

    rng = random.Random(seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bad = hostile_packets()
    names = list(STORM)
    start = time.monotonic()
    sent, next_scene, next_spark, next_save = 0, start + 10, start + 7, start + 3
    while (now := time.monotonic()) < stop_at:
        due = start + sent / rate
        if due > now:
            time.sleep(due - now)
        name = rng.choice(names)
        lo, hi = STORM[name]
        packet = bad[rng.randrange(len(bad))] if rng.random() < 0.05 else _osc(f"/vj/{name}", rng.uniform(lo, hi))
        with contextlib.suppress(OSError):  # a full socket buffer drops the packet, as a network would
            sock.sendto(packet, ("127.0.0.1", port))
        sent += 1
        for due_at, msg in ((next_scene, None), (next_spark, "/vj/spark"), (next_save, "/vj/save")):
            if now < due_at:
                continue
            if msg is None:
                sock.sendto(_osc("/vj/scene", rng.randint(1, scenes)), ("127.0.0.1", port))
                next_scene += 10
            elif msg == "/vj/spark":
                sock.sendto(_osc(msg), ("127.0.0.1", port))
                next_spark += 7
            else:
                sock.sendto(_osc(msg), ("127.0.0.1", port))
                next_save += 3


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    from vj.cli import _size
    from vj.control.mapping import default_mapping
    from vj.control.osc import OscServer
    from vj.engine.loop import Show, ShowConfig
    from vj.scenes import SCENES_DIR, load_scenes

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--size", type=_size, default=(1920, 1080))
    ap.add_argument("--gen-size", type=_size, default=(512, 512))
    ap.add_argument("--rate", type=float, default=200.0, help="OSC messages a second")
    ap.add_argument("--warm-up", type=float, default=None, help="seconds before the RSS baseline (default 10%%)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--trace-memory", type=int, default=0, metavar="N", help="print the N sites that grew most after warm-up"
    )
    ap.add_argument("--report", help="also write the figures as JSON here")
    args = ap.parse_args()
    random.seed(args.seed)

    seconds = args.minutes * 60
    if args.trace_memory:
        import tracemalloc

        tracemalloc.start(8)
    snapshots: list[Any] = []
    warm_up = args.warm_up if args.warm_up is not None else min(120.0, 0.1 * seconds)
    scenes = load_scenes(SCENES_DIR)
    dreams = Path(tempfile.mkdtemp(prefix="vj-soak-"))
    config = ShowConfig(
        size=args.size,
        gen_size=args.gen_size,
        headless=True,
        seconds=seconds,
        generator="__main__:FlakyDream",
        mapping=default_mapping(),
        scenes=scenes,
        scene=1,
        dreams=dreams,
    )
    show = Show(config)
    osc = OscServer("127.0.0.1", 0, config.mapping)
    osc.bind()
    show.add_source(osc)

    figures: dict[str, Any] = {"black_frames": 0, "rss_mb": {"start": round(rss_mb(), 1)}}
    first_black: list[float] = []

    last = [time.monotonic()]
    stalls: list[tuple[float, float, str]] = []  # the longest gaps between frames: (ms, at s, what was on)

    def watch(s: Show) -> None:
        now = time.monotonic()
        gap_ms, last[0] = (now - last[0]) * 1000, now
        if gap_ms > 100 and s.frames > 1:
            scene = s.director.active.name if s.director.active is not None else "-"
            state = s.worker.stats.describe() if s.worker is not None else "-"
            stalls.append((round(gap_ms, 1), round(s.elapsed, 2), f"scene {scene}; {state}"))
            stalls.sort(reverse=True)
            del stalls[8:]
        picture = s.presented
        if s.frames == 1:
            figures["rss_mb"]["first_frame"] = round(rss_mb(), 1)
        if "warm" not in figures["rss_mb"] and s.elapsed >= warm_up:
            figures["rss_mb"]["warm"] = round(rss_mb(), 1)
            if args.trace_memory:
                snapshots.append(tracemalloc.take_snapshot())
        if s.shown == 0:
            return  # before the first generated frame the screen is black by design
        values = s.params
        if values["blackout"] or values["brightness"] < 0.2 or s.output.level < 0.5:
            return
        level = float(picture[::16, ::16, :3].mean()) if picture is not None else 0.0
        if level < BLACK_LEVEL:
            figures["black_frames"] += 1
            if len(first_black) < 5:
                first_black.append(round(s.elapsed, 2))

    show.on_frame.append(watch)
    ctx = mp.get_context("spawn")
    sender = ctx.Process(
        target=storm, args=(osc.port, args.rate, time.monotonic() + seconds + 30, len(scenes), args.seed), daemon=True
    )
    sender.start()
    crashed = None
    t0 = time.monotonic()
    try:
        report = show.run()
    except Exception as e:  # noqa: BLE001 - a crash is a figure too
        crashed = f"{type(e).__name__}: {e}"
        report = show.report().as_dict()
    sender.terminate()
    figures["rss_mb"]["end"] = round(rss_mb(), 1)
    if snapshots:
        grown = tracemalloc.take_snapshot().compare_to(snapshots[0], "traceback")
        print(f"memory that grew most after warm-up ({args.trace_memory} sites):", file=sys.stderr)
        for stat in grown[: args.trace_memory]:
            print(f"  {stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks", file=sys.stderr)
            for line in stat.traceback.format()[-6:]:
                print(f"    {line}", file=sys.stderr)
    warm = figures["rss_mb"].get("warm", figures["rss_mb"].get("first_frame", figures["rss_mb"]["start"]))
    growth = (figures["rss_mb"]["end"] - warm) / warm * 100
    figures.update(
        {
            "minutes": round((time.monotonic() - t0) / 60, 2),
            "frames": report["frames"],
            "fps": report["fps"],
            "frame_ms": report["frame_ms"],
            "interval_ms": report["interval_ms"],
            "late_frames": report["late_frames"],
            "first_black_at_s": first_black,
            "longest_stalls": stalls,
            "rss_growth_pct": round(growth, 2),
            "events": report["events"],
            "rejected": report["rejected"],
            "osc": report.get("osc"),
            "sources": report.get("sources"),
            "generator": {k: report["generator"][k] for k in ("errors", "restarts", "hangs", "fallback", "state")},
            "generated": report["generated"],
            "sparks": report["sparks"],
            "scene_switches": report["scene_switches"],
            "dreams_saved": report["dreams_saved"],
            "crashed": crashed,
            "ran_to_end": crashed is None and report["seconds"] >= seconds - 1,
        }
    )
    goals = {
        "no black frames": figures["black_frames"] == 0,
        "frame p99 <= 16.7 ms": report["frame_ms"]["p99"] <= 16.7,
        "RSS growth < 5 % after warm-up": growth < 5,
        "no crash, ran to its end": figures["ran_to_end"],
    }
    figures["goals"] = goals
    print(json.dumps(figures, indent=2))
    print()
    for goal, ok in goals.items():
        print(f"{'PASS' if ok else 'FAIL'}  {goal}")
    if args.report:
        Path(args.report).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

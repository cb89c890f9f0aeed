"""Benchmark: from an OSC message or a MIDI control change to the display frame that shows it.

    python scripts/bench_control.py [--events 120] [--size 1920x1080] [--no-midi]

The picture is frozen, so pixels change only when a control does; each event moves the master brightness (from
OSC, then from MIDI through a JACK server with the dummy driver, started here if none runs). For each event the
first presented frame whose pixels differ is found. Frames: 1 = the first frame presented after the event.
Goal: within 1 frame, p99 within 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import numpy as np

from vj.cli import _size
from vj.control.mapping import parse_mapping
from vj.control.osc import OscServer
from vj.engine.loop import Show, ShowConfig

JACK = "mido.backends.rtmidi/UNIX_JACK"


def start_jack() -> subprocess.Popen | None:
    if not shutil.which("jackd"):
        return None
    if subprocess.run(["jack_lsp"], capture_output=True, check=False).returncode == 0:
        return None
    proc = subprocess.Popen(
        ["jackd", "-r", "-d", "dummy", "-r", "48000", "-p", "256"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(50):
        if subprocess.run(["jack_lsp"], capture_output=True, check=False).returncode == 0:
            break
        time.sleep(0.2)
    return proc


def measure(sends: list[float], frames: list[tuple[float, float]]) -> dict:
    """``frames``: (presented at, screen level) per frame. Each send's latency to the first changed frame."""
    in_frames, in_ms = [], []
    for t in sends:
        after = [i for i, (at, _) in enumerate(frames) if at > t]
        if not after:
            continue
        first = after[0]
        base = frames[first - 1][1]
        for n, i in enumerate(after, start=1):
            if abs(frames[i][1] - base) > 0.01:
                in_frames.append(n)
                in_ms.append((frames[i][0] - t) * 1000)
                break
    f, m = np.array(in_frames), np.array(in_ms)
    return {
        "events": len(sends),
        "seen": len(f),
        "frames_p50": float(np.percentile(f, 50)),
        "frames_p99": float(np.percentile(f, 99)),
        "ms_p50": round(float(np.percentile(m, 50)), 2),
        "ms_p99": round(float(np.percentile(m, 99)), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=120, help="events per source")
    ap.add_argument("--size", type=_size, default=(1920, 1080))
    ap.add_argument("--no-midi", action="store_true")
    args = ap.parse_args()

    from pythonosc.udp_client import SimpleUDPClient

    osc = OscServer("127.0.0.1", 0)
    osc.bind()
    client = SimpleUDPClient("127.0.0.1", osc.port)
    sources: list = [osc]
    jack = None
    port = None
    if not args.no_midi:
        jack = start_jack()
        import mido

        from vj.control.midi import MidiInput

        mido.set_backend(JACK, load=True)
        port = mido.open_output("vj-bench", virtual=True)
        mapping = parse_mapping({"midi": {"cc": [{"channel": 1, "control": 7, "target": "brightness"}]}}, "bench")
        sources.append(MidiInput("vj-bench", mapping, backend=JACK))

    per = max(6, 1)  # frames between events: one every 100 ms at 60 fps
    plan: list[tuple[int, str, float]] = []
    start = 90  # let the first generated frame arrive, then freeze
    for i in range(args.events):
        plan.append((start + per * len(plan), "osc", 0.6 if i % 2 == 0 else 1.0))
    if port is not None:
        for i in range(args.events):
            plan.append((start + per * len(plan), "midi", 0.6 if i % 2 == 0 else 1.0))
    by_frame = {n: (src, v) for n, src, v in plan}
    sends: dict[str, list[float]] = {"osc": [], "midi": []}
    frames: list[tuple[float, float]] = []

    def on_frame(show: Show) -> None:
        frames.append((time.perf_counter(), show.window.sample()))
        if show.frames == start - 20:
            show.bus.post("bench", "freeze", True)
        if show.frames in by_frame:
            src, value = by_frame[show.frames]
            time.sleep(0.004 * (show.frames % 4))  # spread the sends over the frame
            sends[src].append(time.perf_counter())
            if src == "osc":
                client.send_message("/vj/brightness", value)
            else:
                port.send(mido.Message("control_change", control=7, value=round(value * 127)))
        if show.frames > plan[-1][0] + 20:
            show.stop()

    cfg = ShowConfig(size=args.size, headless=True, seconds=600)
    show = Show(cfg)
    for s in sources:
        show.add_source(s)
    show.on_frame.append(on_frame)
    report = show.run()
    if port is not None:
        port.close()
    if jack is not None:
        jack.terminate()
    results = {src: measure(ts, frames) for src, ts in sends.items() if ts}
    w, h = args.size
    print(f"display {w}x{h}, {report['fps']:.1f} fps; frame time p99 {report['frame_ms']['p99']} ms")
    for src, r in results.items():
        print(
            f"{src:4}  {r['seen']}/{r['events']} events seen   frames p50 {r['frames_p50']:.0f}  p99 "
            f"{r['frames_p99']:.0f}   ms p50 {r['ms_p50']:.1f}  p99 {r['ms_p99']:.1f}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()

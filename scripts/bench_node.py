"""Benchmark: a show's round trip to a generator node, per picture size and codec.

    python scripts/bench_node.py [--generator sketch] [--frames 60] [--sizes 512x512,1920x1080]
                                 [--codecs jpeg,webp,raw] [--node HOST:PORT]

Without --node a node is started here (``vj node`` in a child process on 127.0.0.1), so the figures are loopback:
the cost of the transport and the codec, not of a network. Each run feeds frames back as the show does (a zoom
between frames, one layer mixed in), and prints one JSON line per size and codec: the median round trip, the
node's own time per frame (its generator), what is left for the transport and codecs, bytes a frame both ways,
and the frame rate that one node gives one show.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vj.cli.common import _size  # noqa: E402
from vj.gen.remote import RemoteGenerator  # noqa: E402
from vj.params import ParamStore  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(node: str, size: tuple[int, int], codec: str, frames: int) -> dict[str, object]:
    gen = RemoteGenerator(size, node=node, codec=codec, timeout=30.0)
    gen.load()
    params = ParamStore().values()
    layer = np.full((size[1], size[0], 3), 90, np.uint8)
    step = np.array([0.01, 0.0, 0.0, 0.0])
    x = gen.generate(None, params)
    for _ in range(5):  # warm-up
        x = gen.generate(gen.warp(x, step), params)
    gen._rtt.clear(), gen._node_ms.clear(), gen._bytes.clear()
    started = time.perf_counter()
    for _ in range(frames):
        x = gen.generate(gen.mix(gen.warp(x, step), layer, 0.1), params)
    elapsed = time.perf_counter() - started
    r = gen.report()
    gen.close()
    assert r["stand_in_frames"] == 0, "the node was lost during the run"
    rtt, node_ms = float(r["rtt_ms"]), float(r["node_ms"])
    return {
        "size": f"{size[0]}x{size[1]}",
        "codec": codec,
        "rtt_ms": round(rtt, 2),
        "node_ms": round(node_ms, 2),
        "transport_ms": round(rtt - node_ms, 2),
        "bytes_per_frame": r["bytes_per_frame"],
        "fps": round(frames / elapsed, 1),
        "mbit_s": round(float(r["bytes_per_frame"]) * frames / elapsed * 8 / 1e6, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="sketch")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--sizes", default="512x512,1920x1080")
    ap.add_argument("--codecs", default="jpeg,webp,raw")
    ap.add_argument("--node", metavar="HOST:PORT", help="an already running node (default: start one here)")
    args = ap.parse_args()
    proc = None
    node = args.node
    if node is None:
        port = free_port()
        node = f"127.0.0.1:{port}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "vj", "node", "--generator", args.generator, "--listen", node],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        for line in proc.stderr:
            if "node serving" in line:
                break
    try:
        for text in args.sizes.split(","):
            for codec in args.codecs.split(","):
                print(json.dumps(run(node, _size(text), codec, args.frames)), flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()

"""Benchmark: dreams per second of a dream session in one process and on local Ray workers, side by side.

    python scripts/bench_cluster.py [--workers 1 2] [--count 200] [--gen-size 256x256] [--frames 24]
                                    [--generator sketch] [--strategy evolve]

Each run is a fresh session in a fresh temporary store: first the single-process session (``vj dream``) for as
long as the first cluster run took, then ``vj dream --cluster local --workers N --count C`` for each N. The rate
counts from the moment every worker has its generator loaded (``startup``, the seconds until then, is printed
apart). Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from vj.cli.common import _size
from vj.dreams.cluster import explore_cluster
from vj.dreams.explore import explore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run (1 2)")
    ap.add_argument("--count", type=int, default=200, help="dreams per cluster run (200)")
    ap.add_argument("--gen-size", type=_size, default=(256, 256), metavar="WxH", help="resolution (256x256)")
    ap.add_argument("--frames", type=int, default=24, help="feedback frames per dream (24)")
    ap.add_argument("--generator", default="sketch", help="generator (sketch)")
    ap.add_argument("--strategy", default="evolve", help="strategy (evolve)")
    args = ap.parse_args()
    quiet = lambda line: print(line, file=sys.stderr)  # noqa: E731 - progress goes aside, results to stdout
    common = {"generator": args.generator, "size": args.gen_size, "frames": args.frames, "seed": 1}
    first: float | None = None
    rows = []
    for n in args.workers:
        with tempfile.TemporaryDirectory() as folder:
            began = time.monotonic()
            r = explore_cluster("a neon city", args.strategy, Path(folder), workers=n, count=args.count,
                                keep=args.count, progress=quiet, **common)  # fmt: skip
            rows.append(
                {
                    "mode": "cluster",
                    "workers": n,
                    "dreams": r.dreams,
                    "seconds": round(r.seconds, 2),
                    "rate": round(r.rate, 2),
                    "per_worker": {w: round(v, 2) for w, v in r.rates().items()},
                    "startup": round(r.startup, 2),
                    "wall": round(time.monotonic() - began, 2),
                }
            )
            first = first if first is not None else r.seconds
    with tempfile.TemporaryDirectory() as folder:
        single = explore("a neon city", first or 10.0, args.strategy, Path(folder), progress=quiet, **common)
    rows.insert(0, {"mode": "single", "workers": 1, "dreams": single.dreams, "seconds": round(single.seconds, 2),
                    "rate": round(single.rate, 2)})  # fmt: skip
    for row in rows:
        print(json.dumps({"size": "x".join(map(str, args.gen_size)), "frames": args.frames, **row}))


if __name__ == "__main__":
    main()

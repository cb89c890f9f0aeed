"""Gallery: what a generator makes of each bundled scene and of a list of prompts, as a contact sheet and figures.

    python scripts/gallery.py [--generator dream] [--seconds 20] [--gen-size 512x512] [--out gallery.png]
                              [--prompt "..."]...

Each scene (with its parameters: zoom, chaos, strength...) and each prompt runs headless for --seconds in the
generator's feedback loop, on a stepped clock at --fps generated frames a second with the loop's own camera warp,
so the sheet is the same on any machine. The sheet shows each at 2 s, 10 s and the end. Per prompt it prints:

    colour     colourfulness (Hasler and Suesstrunk; above ~60 reads as vivid)
    edges      share of pixels on an edge (Canny): how much structure there is
    change     mean frame-to-frame difference (0..255): how alive it is
    nearest    the prompt whose mean colour histogram is closest, and that distance (L1, 0..2)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np

PROMPTS = [
    "rain on a window",
    "a forest of tall trees",
    "city lights at night",
    "the deep ocean with bubbles",
    "a burning volcano",
    "stars and galaxies",
    "ice crystals",
    "a mandala of flowers",
    "a quiet zebra",  # words no family knows: a stable look from the letters
]
SHOTS_S = (2.0, 10.0)  # and the last frame


def colourfulness(img: np.ndarray) -> float:
    r, g, b = (img[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def edges(img: np.ndarray) -> float:
    return float((cv2.Canny(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 60, 140) > 0).mean())


def histogram(img: np.ndarray) -> np.ndarray:
    h = cv2.calcHist([img], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
    return h / h.sum()


def render(name: str, params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from vj.frame import motion
    from vj.gen import base

    gen = base.factory(args.generator, args.gen_size)()
    now = [0.0]
    if hasattr(gen, "clock"):
        gen.clock = lambda: now[0]
    dt = 1 / args.fps
    frames = round(args.seconds * args.fps)
    shots_at = {round(s * args.fps) - 1 for s in SHOTS_S} | {frames - 1}
    cam = prev = motion.new_camera()
    frame = gen.to_display(gen.generate(None, params))
    shots, changes, hist = [], [], np.zeros(512)
    for i in range(frames):
        now[0] += dt
        cam = motion.advance(cam, params, dt)
        last = frame
        frame = gen.to_display(gen.generate(gen.warp(frame, cam - prev), params))
        prev = cam
        changes.append(float(cv2.absdiff(frame, last).mean()))
        hist += histogram(frame)
        if i in shots_at:
            shots.append(frame)
    gen.close()
    end = shots[-1]
    return {
        "name": name,
        "shots": shots,
        "colour": round(colourfulness(end), 1),
        "edges": round(edges(end), 3),
        "change": round(float(np.mean(changes)), 2),
        "hist": hist / frames,
    }


def sheet(rows: list[dict[str, Any]], tile: int) -> np.ndarray:
    out = []
    for row in rows:
        tiles = [
            cv2.resize(s, (tile * s.shape[1] // s.shape[0], tile), interpolation=cv2.INTER_AREA) for s in row["shots"]
        ]
        strip = np.hstack(tiles)
        label = np.zeros((28, strip.shape[1], 3), np.uint8)
        text = f"{row['name']}   colour {row['colour']}  edges {row['edges']}  change {row['change']}"
        cv2.putText(label, text[:110], (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1, cv2.LINE_AA)
        out += [label, strip]
    return np.vstack(out)


def main() -> int:
    from vj.cli import _size
    from vj.params import ParamStore
    from vj.scenes import SCENES_DIR, load_scenes

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="dream")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=float, default=15.0, help="generated frames a second of the stepped clock")
    ap.add_argument("--gen-size", type=_size, default=(512, 512))
    ap.add_argument("--prompt", action="append", help="a prompt to show (repeatable; default: a built-in list)")
    ap.add_argument("--no-scenes", action="store_true", help="only the prompts")
    ap.add_argument("--tile", type=int, default=200, help="height of one picture on the sheet")
    ap.add_argument("--out", default="gallery.png")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    runs: list[tuple[str, dict[str, Any]]] = []
    if not args.no_scenes:
        for scene in load_scenes(SCENES_DIR):
            if scene.kind != "dream" or not scene.prompts:
                continue
            p = ParamStore().values()
            p.update(scene.params)
            p["prompt"] = scene.prompts[0]
            runs.append((f"scene {scene.name}: {scene.prompts[0]}", p))
    for prompt in args.prompt or PROMPTS:
        p = ParamStore().values()
        p["prompt"] = prompt
        runs.append((prompt, p))

    rows = []
    for name, params in runs:
        rows.append(render(name, params, args))
        print(f"  rendered {name}", file=sys.stderr)
    for row in rows:
        dist = [(float(np.abs(row["hist"] - o["hist"]).sum()), o["name"]) for o in rows if o is not row]
        row["nearest"] = min(dist) if dist else (0.0, "-")
    cv2.imwrite(args.out, cv2.cvtColor(sheet(rows, args.tile), cv2.COLOR_RGB2BGR))
    figures = [
        {k: row[k] for k in ("name", "colour", "edges", "change")}
        | {"nearest": row["nearest"][1], "distance": round(row["nearest"][0], 3)}
        for row in rows
    ]
    width = max(len(f["name"]) for f in figures)
    print(f"{'':{width}}  colour  edges  change  nearest (histogram distance)")
    for f in figures:
        print(
            f"{f['name']:{width}}  {f['colour']:6}  {f['edges']:5}  {f['change']:6}  {f['nearest']} ({f['distance']})"
        )
    pairs = [f["distance"] for f in figures]
    print(f"histogram distance to the nearest other: min {min(pairs):.3f}, mean {np.mean(pairs):.3f}")
    print(f"contact sheet (frames at 2 s, 10 s, {args.seconds:g} s): {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

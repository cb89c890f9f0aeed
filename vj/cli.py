"""The ``vj`` command.

Heavy libraries (pygame, OpenCV, torch, faster-whisper) are imported inside the commands that use them, so
``vj --help`` answers at once on any machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

from vj import __version__
from vj.errors import ConfigError, VjError

log = logging.getLogger("vj")


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size; write WIDTHxHEIGHT, e.g. 1920x1080")
    w, h = int(m[1]), int(m[2])
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise argparse.ArgumentTypeError(f"{w}x{h} is out of range: each side 16..16384")
    return w, h


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} must be above 0")
        return value

    return parse


def _add_run(sub: Any) -> None:
    from vj.gen import GENERATORS

    gens = "; ".join(f"{k}: {v[1]}" for k, v in GENERATORS.items())
    p = sub.add_parser(
        "run",
        help="run the show",
        description="Open the window and dream. Keys:" + _keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("picture")
    g.add_argument("--generator", default="sketch", metavar="NAME", help=f"{gens}; or package.module:Class")
    g.add_argument("--prompt", help="what to dream of (default: the prompt in the parameter table)")
    g.add_argument("--seed", type=int, help="random seed of the dream")
    g.add_argument("--gen-size", type=_size, default=(512, 512), metavar="WxH", help="generator resolution (512x512)")
    w = p.add_argument_group("window")
    w.add_argument("--fullscreen", action="store_true", help="full screen (F toggles)")
    w.add_argument("--display", type=int, default=0, metavar="N", help="which display/projector, from 0")
    w.add_argument("--size", type=_size, default=(1280, 720), metavar="WxH", help="window size (1280x720)")
    w.add_argument(
        "--fit",
        choices=("contain", "cover"),
        default="contain",
        help="contain: whole picture, black bars; cover: fill the screen, crop the rest",
    )
    w.add_argument("--fps", type=_positive(float), default=60.0, help="display frame rate (60)")
    w.add_argument("--no-hud", action="store_true", help="start with the HUD hidden (Tab shows it)")
    w.add_argument("--headless", action="store_true", help="no window (SDL's dummy video driver), same loop")
    s = p.add_argument_group("run time and report")
    stop = s.add_mutually_exclusive_group()
    stop.add_argument("--seconds", type=_positive(float), metavar="S", help="stop after S seconds")
    stop.add_argument("--frames", type=_positive(int), metavar="N", help="stop after N display frames")
    s.add_argument("--report", metavar="FILE|-", help="write a JSON report at exit (- for standard output)")
    p.set_defaults(func=cmd_run)


def _keys_help() -> str:
    from vj.control.keys import HELP

    return "\n  ".join(("", *HELP))


def cmd_run(args: argparse.Namespace) -> int:
    from vj.engine.loop import Show, ShowConfig

    params: dict[str, Any] = {}
    if args.prompt is not None:
        params["prompt"] = args.prompt
    if args.seed is not None:
        params["seed"] = args.seed
    config = ShowConfig(
        size=args.size,
        gen_size=args.gen_size,
        fps=args.fps,
        fullscreen=args.fullscreen,
        display=args.display,
        headless=args.headless,
        fit=args.fit,
        seconds=args.seconds,
        frames=args.frames,
        generator=args.generator,
        hud=not args.no_hud,
        params=params,
    )
    show = Show(config)
    signal.signal(signal.SIGTERM, lambda *_: show.stop())
    report = show.run()
    _write_report(report, args.report)
    return 0


def _write_report(report: dict[str, Any], target: str | None) -> None:
    if not target:
        return
    text = json.dumps(report, indent=2)
    if target == "-":
        print(text)
        return
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as e:
        raise ConfigError(f"cannot write the report ({e.strerror})", file=target) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vj",
        description="A live AI VJ engine: an endless img2img dream you steer by voice, MIDI, OSC and keys.",
    )
    parser.add_argument("--version", action="version", version=f"vj {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_run(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(2, args.verbose)]
    logging.basicConfig(level=level, format="vj: %(message)s" if level > logging.DEBUG else "%(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except VjError as e:
        print(f"vj: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

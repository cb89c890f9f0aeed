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
    (
        g.add_argument(
            "--layer",
            action="append",
            default=[],
            metavar="SPEC",
            help="an overlay layer, up to 4: KIND=SOURCE[,mode=M][,into=top|loop][,opacity=X]; KIND is "
            "image, video, camera, solid, gradient or brush; M is normal, add, screen, multiply or "
            "difference. E.g. video=clip.mp4,mode=screen,into=loop  or  brush,mode=add",
        ),
    )
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
    c = p.add_argument_group("control (OSC, MIDI)")
    c.add_argument(
        "--mapping", metavar="FILE", help="mapping file or name in mappings/ (default: mappings/default.toml)"
    )
    c.add_argument("--osc-host", default="127.0.0.1", help="address to listen on for OSC (0.0.0.0: every network)")
    c.add_argument("--osc-port", type=int, metavar="PORT", help="OSC port (default 9000; 0 picks a free one)")
    c.add_argument("--no-osc", action="store_true", help="do not listen for OSC")
    c.add_argument("--osc-out", type=_host_port, metavar="HOST:PORT", help="send every parameter change here")
    c.add_argument("--midi-in", metavar="NAME", help="MIDI input port, or a part of its name")
    c.add_argument("--midi-out", metavar="NAME", help="MIDI output for controller LEDs and motor faders")
    c.add_argument(
        "--midi-backend",
        metavar="MODULE",
        help="mido backend, e.g. mido.backends.rtmidi/UNIX_JACK (default: $MIDO_BACKEND or ALSA)",
    )
    s = p.add_argument_group("run time and report")
    stop = s.add_mutually_exclusive_group()
    stop.add_argument("--seconds", type=_positive(float), metavar="S", help="stop after S seconds")
    stop.add_argument("--frames", type=_positive(int), metavar="N", help="stop after N display frames")
    s.add_argument("--report", metavar="FILE|-", help="write a JSON report at exit (- for standard output)")
    p.set_defaults(func=cmd_run)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"'{text}' is not HOST:PORT, e.g. 127.0.0.1:9001")
    return host, int(port)


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
    from vj.engine.mixer import parse_layer_option

    layers = [parse_layer_option(text) for text in args.layer]
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
        layers=layers,
    )
    show = Show(config)
    for source in _control_sources(args):
        show.add_source(source)
    signal.signal(signal.SIGTERM, lambda *_: show.stop())
    report = show.run()
    _write_report(report, args.report)
    return 0


def _control_sources(args: argparse.Namespace) -> list[Any]:
    from vj.control.mapping import default_mapping, load_mapping

    mapping = load_mapping(args.mapping) if args.mapping else default_mapping()
    sources: list[Any] = []
    if not args.no_osc:
        from vj.control.osc import OscServer

        osc = OscServer(args.osc_host, 9000 if args.osc_port is None else args.osc_port, mapping)
        if args.osc_port is not None:
            osc.bind()  # a port asked for by name must work, or the show does not start
        sources.append(osc)
    if args.osc_out:
        from vj.control.osc import OscFeedback

        sources.append(OscFeedback(*args.osc_out))
    if args.midi_in or args.midi_out or (args.mapping and mapping.device):
        from vj.control.midi import MidiInput

        sources.append(MidiInput(args.midi_in, mapping, out_query=args.midi_out, backend=args.midi_backend))
    return sources


def cmd_osc_list(args: argparse.Namespace) -> int:
    from vj.control.osc import address_table

    rows = address_table()
    width = max(len(r[0]) for r in rows)
    kinds = max(len(r[1]) for r in rows)
    for address, kind, doc in rows:
        print(f"{address:<{width}}  {kind:<{kinds}}  {doc}")
    print('\nrelative (Resolume): /vj/<param> "+"|"-" <amount>.  bundles: applied at once.')
    return 0


def cmd_midi_list(args: argparse.Namespace) -> int:
    from vj.control.midi import port_names, use_backend

    backend = use_backend(args.midi_backend)
    print(f"backend: {backend}")
    for kind in ("input", "output"):
        names = port_names(kind)
        print(f"{kind}s:" + ("" if names else " none"))
        for n in names:
            print(f"  {n}")
    return 0


def cmd_midi_learn(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vj.control.learn import learn
    from vj.control.midi import use_backend

    use_backend(args.midi_backend)
    learn(args.midi_in, Path(args.out))
    return 0


def cmd_mapping_check(args: argparse.Namespace) -> int:
    from vj.control.mapping import load_mapping

    for name in args.files:
        m = load_mapping(name)
        counts = ", ".join(f"{v} {k}" for k, v in m.summary.items() if v)
        print(f"{m.file}: ok ({counts or 'empty'}{f', device {m.device!r}' if m.device else ''})")
    return 0


def _add_control_commands(sub: Any) -> None:
    osc = sub.add_parser("osc", help="OSC: list the addresses vj answers").add_subparsers(dest="what", required=True)
    osc.add_parser("list", help="every OSC address with its type and range").set_defaults(func=cmd_osc_list)

    midi = sub.add_parser("midi", help="MIDI: list ports, learn a mapping").add_subparsers(dest="what", required=True)
    ls = midi.add_parser("list", help="MIDI input and output ports")
    ls.add_argument("--midi-backend", metavar="MODULE", help="mido backend (default: $MIDO_BACKEND or ALSA)")
    ls.set_defaults(func=cmd_midi_list)
    lr = midi.add_parser(
        "learn",
        help="move a control, pick a target: writes a mapping file",
        description="Move a control on the controller, type the parameter or action it should "
        "drive, repeat. Each entry is saved at once. Ctrl-C or Ctrl-D ends.",
    )
    lr.add_argument("--midi-in", metavar="NAME", help="input port or part of its name (default: the first)")
    lr.add_argument("--out", default="mappings/learned.toml", help="mapping file to write (mappings/learned.toml)")
    lr.add_argument("--midi-backend", metavar="MODULE", help="mido backend (default: $MIDO_BACKEND or ALSA)")
    lr.set_defaults(func=cmd_midi_learn)

    mp = sub.add_parser("mapping", help="check mapping files").add_subparsers(dest="what", required=True)
    ck = mp.add_parser("check", help="load and check mapping files; errors name file, key and fix")
    ck.add_argument("files", nargs="+", metavar="FILE")
    ck.set_defaults(func=cmd_mapping_check)


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
    _add_control_commands(sub)
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

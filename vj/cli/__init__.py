"""The ``vj`` command: one module a group of subcommands (run, control, library, voice, model, node).

Heavy libraries (pygame, OpenCV, torch, faster-whisper) are imported inside the commands that use them, so
``vj --help`` answers at once on any machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from vj import __version__
from vj.cli.common import _size as _size  # the scripts' WxH argument type
from vj.cli.control import _add_control_commands
from vj.cli.library import _add_scene_and_dream_commands
from vj.cli.model import _add_model_commands
from vj.cli.node import _add_node_commands
from vj.cli.run import _add_run
from vj.cli.voice import _add_voice_commands
from vj.errors import VjError

log = logging.getLogger("vj")


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
    _add_scene_and_dream_commands(sub)
    _add_voice_commands(sub)
    _add_model_commands(sub)
    _add_node_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, leave: bool = True) -> int:
    """The ``vj`` command. ``leave=False`` returns from ``vj run`` instead of ending the process (for embedding)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(2, args.verbose)]
    logging.basicConfig(level=level, format="vj: %(message)s" if level > logging.DEBUG else "%(name)s: %(message)s")
    try:
        code = int(args.func(args) or 0)
    except VjError as e:
        print(f"vj: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vj: interrupted", file=sys.stderr)
        return 130
    if args.command == "run" and leave:
        # The show is over and its report written. Leave without the interpreter's teardown: native thread pools
        # (torch's, a generator thread abandoned in native code, PortAudio's) can abort the process while C++
        # static destructors run under them ("terminate called without an active exception", rc 134).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code

"""``vj osc``, ``vj midi``, ``vj mapping``: the control surfaces."""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger("vj")


def cmd_osc_list(args: argparse.Namespace) -> int:
    from vj.control.mapping import load_mapping
    from vj.control.osc import LEGEND, address_table

    mapping = getattr(args, "mapping", None)
    routes = load_mapping(mapping).osc if mapping else ()  # a bad file is said before anything is listed

    rows = address_table()
    width = max(len(r[0]) for r in rows)
    kinds = max(len(r[1]) for r in rows)
    for address, kind, doc in rows:
        print(f"{address:<{width}}  {kind:<{kinds}}  {doc}")
    if mapping:
        print(f"\naliases in {mapping}:" + ("" if routes else " none"))
        for r in routes:
            names = ", ".join(t.name for t in (r.target, *r.more))
            takes = f"0..1 onto {r.lo:g}..{r.hi:g}" if r.lo is not None and r.hi is not None else "as the target"
            if r.value is not None:
                takes = f"a press sets {r.value!r}"
            print(f"{r.address:<{width}}  {takes:<{kinds}}  {names}")
    print()
    print(LEGEND)
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

    learn(args.midi_in, Path(args.out), backend=use_backend(args.midi_backend))
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
    ol = osc.add_parser("list", help="every OSC address with its type and range (and a mapping's aliases)")
    ol.add_argument("--mapping", metavar="FILE|NAME", help="also list this mapping file's [[osc.route]] aliases")
    ol.set_defaults(func=cmd_osc_list)

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

"""``vj midi learn``: move a control, name its target, and a mapping file writes itself.

Each entry is written as soon as it is made (and checked by loading the file back), so stopping at any moment
keeps everything learned so far.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import tomli_w

from vj.control.actions import ACTIONS
from vj.control.mapping import CC_MODES, load_mapping
from vj.errors import VjError
from vj.params import PARAMS, unknown

QUIET_S = 0.6  # after an entry, the same control keeps sending for a moment: ignore it that long


class _Console:
    """Lines from the user, read on a helper thread, so waiting for MIDI can also notice the input ending."""

    def __init__(self, stream: TextIO, say: Callable[[str], None]) -> None:
        self.say = say
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def ended(self) -> bool:
        """True once the input has ended; drops lines typed while no question was asked."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return False
            if line is None:
                self.lines.put(None)
                return True

    def ask(self, prompt: str) -> str:
        self.say(prompt)
        line = self.lines.get()
        if line is None:
            self.lines.put(None)
            raise KeyboardInterrupt
        return line.strip()


def _target(console: _Console) -> str | None:
    names = [p.name for p in PARAMS] + [a.name for a in ACTIONS if a.remote]
    while True:
        text = console.ask("target (a parameter or action; Enter skips):")
        if not text:
            return None
        if text in names:
            return text
        console.say(f"  {unknown(text, names, 'parameter or action')}")


def _entry(msg: Any, target: str, console: _Console) -> tuple[str, dict]:
    spec = next((p for p in PARAMS if p.name == target), None)
    entry: dict[str, Any] = {"channel": msg.channel + 1}
    if msg.type == "control_change":
        entry["control"] = msg.control
        button = spec is None or spec.kind in ("trigger", "bool", "string")
        default = ("toggle" if spec and spec.kind == "bool" else "trigger") if button else "absolute"
        choices = " | ".join(CC_MODES)
        while True:
            mode = console.ask(f"mode [{default}] ({choices}):") or default
            if mode in CC_MODES:
                break
            console.say(f"  choose one of: {choices}")
        entry["target"] = target
        if mode != "absolute":
            entry["mode"] = mode
        if mode == "absolute" and spec is not None and spec.kind in ("float", "int"):
            while True:
                text = console.ask(f"range [{spec.lo:g} {spec.hi:g}] (two numbers; Enter for the whole range):")
                if not text:
                    break
                try:
                    lo, hi = (float(x) for x in text.replace(",", " ").split())
                except ValueError:
                    console.say("  two numbers, e.g. -0.5 0.5")
                    continue
                entry["range"] = [lo, hi]
                break
        return "cc", entry
    entry["note"] = msg.note
    entry["target"] = target
    if spec is not None and spec.kind == "bool":
        entry["mode"] = console.ask("mode [toggle] (toggle | hold):") or "toggle"
    return "note", entry


def learn(
    port_query: str | None,
    out: Path,
    *,
    stream: TextIO | None = None,
    say: Callable[[str], None] = lambda text: print(text, flush=True),
    backend: str | None = None,
) -> int:
    """Run the learn dialogue; returns the number of entries written to ``out``."""
    import mido

    from vj.control.midi import match_port, port_names, rtmidi_api, use_backend
    from vj.control.midi_port import RawInput, decode

    names = port_names()
    name = match_port(port_query, names) if port_query else (names[0] if names else None)
    if name is None:
        raise VjError(f"no MIDI input matching '{port_query}'" if port_query else "no MIDI input port found")
    data: dict[str, Any] = {"midi": {"device": name, "cc": [], "note": []}}
    if out.exists():
        data = load_existing(out)
    console = _Console(stream or sys.stdin, say)
    heard: queue.Queue[Any] = queue.Queue()
    api = rtmidi_api(backend or use_backend())
    # On rtmidi: polled raw events (no Python on the MIDI system's thread; a broken sysex cannot mute it).
    port: Any = RawInput(api, name) if api is not None else mido.open_input(name, callback=heard.put)

    def take() -> Any:
        if isinstance(port, RawInput):
            for data in port.read(100):
                try:
                    for m in decode(data)[0]:
                        heard.put(m)
                except ValueError:
                    pass  # bytes that make no message
            if heard.empty():
                port.flush()
        return heard.get(timeout=0.1)

    written = 0
    say(f"listening to {name}. Move a control (Ctrl-C or Ctrl-D to finish).")
    try:
        while not console.ended():
            try:
                msg = take()
            except queue.Empty:
                continue
            if msg.type not in ("control_change", "note_on") or (msg.type == "note_on" and msg.velocity == 0):
                continue
            what = f"CC {msg.control}" if msg.type == "control_change" else f"note {msg.note}"
            say(f"heard {what} on channel {msg.channel + 1}")
            target = _target(console)
            if target is not None:
                section, entry = _entry(msg, target, console)
                data["midi"].setdefault(section, [])
                data["midi"][section] = [e for e in data["midi"][section] if not _same(e, entry)] + [entry]
                try:
                    _write(out, data)
                except VjError as e:
                    say(f"  not saved: {e}")
                    data["midi"][section].pop()
                else:
                    written += 1
                    say(f"  wrote {section} {what} -> {target} to {out}")
            time.sleep(QUIET_S)
            if isinstance(port, RawInput):
                port.read(10_000)
            while not heard.empty():  # what the control sent while we talked
                heard.get_nowait()
            say("move the next control")
    except KeyboardInterrupt:
        pass
    finally:
        port.close()
    say(f"{written} entr{'y' if written == 1 else 'ies'} learned; mapping in {out}")
    return written


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("channel", "control", "note")
    return all(a.get(k) == b.get(k) for k in keys)


def load_existing(path: Path) -> dict[str, Any]:
    import tomllib

    data = tomllib.loads(path.read_text(encoding="utf-8"))
    load_mapping(path)  # refuses to extend a broken file
    data.setdefault("midi", {})
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    clean = {"midi": {k: v for k, v in data["midi"].items() if v != []}}
    if "osc" in data:
        clean["osc"] = data["osc"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# written by `vj midi learn`\n" + tomli_w.dumps(clean), encoding="utf-8")
    tmp.replace(path)
    load_mapping(path)

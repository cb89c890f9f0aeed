"""MIDI controllers: knobs, faders, encoders, pads and program change, through a mapping file.

``MidiRouter`` turns mido messages into bus operations and knows nothing of ports:

* control change, absolute: 0..127 onto the entry's range; 14-bit pairs (MSB on control n, LSB on n + 32, the
  LSB reset by each MSB as the MIDI spec says) for fine faders;
* relative encoders in the three common encodings: two's complement (1 = +1, 127 = -1), sign-magnitude
  (1 = +1, 65 = -1) and binary offset (65 = +1, 63 = -1);
* buttons, on notes or on control changes (pressed at 64 and above): trigger, toggle or hold; a note-on with
  velocity 0 is a note-off;
* program change: program 0 is scene 1;
* pick-up takeover: a knob far from the current value waits until it reaches or crosses it, so touching a knob
  never makes the picture jump; if another source moves the value, the knob has to pick it up again.

Everything else (sysex, clock, start/stop, aftertouch, unmapped controls) is counted and ignored.

``MidiInput`` owns the ports: it opens the device by name or part of a name, watches for it to vanish and come
back (on JACK also a replug too fast for a port listing to see), and echoes parameter changes to an output port for
LEDs and motor faders. On rtmidi it reads raw events (``vj.control.midi_port``), so a lone sysex start from a
glitching controller cannot mute it.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from vj.control.bus import ControlBus
from vj.control.mapping import RELATIVE, CcRoute, Mapping, NoteRoute
from vj.control.midi_port import FLUSH_S, POLL_S, JackGraph, RawInput, alsa_quiet, decode
from vj.control.osc import Operation
from vj.control.source import Source
from vj.errors import DeviceError

log = logging.getLogger(__name__)

RECONNECT_S = 0.25  # port listing through the long-lived probe costs well under a millisecond
UNREACHABLE_S = 5.0  # no MIDI system (no ALSA sequencer, no JACK server): look for one this often


def relative_ticks(mode: str, value: int) -> int:
    """Encoder ticks from one relative CC value (0 means no movement)."""
    if mode == "relative-twos":
        return value - 128 if value >= 64 else value
    if mode == "relative-signed":
        return -(value - 64) if value >= 64 else value
    return value - 64  # relative-offset


@dataclass
class _Knob:
    picked: bool = False
    last: float | None = None  # the knob's last position, in the target's units
    sent: deque[float] = field(default_factory=lambda: deque(maxlen=16))


class MidiRouter:
    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.cc = {(r.channel, r.control): r for r in mapping.cc}
        self.lsb = {(r.channel, r.control + 32): r for r in mapping.cc if r.bits == 14}
        self.notes = {(r.channel, r.note): r for r in mapping.notes}
        self.programs = mapping.programs
        self.targets: dict[str, Any] = {}  # the loop's current targets, kept up to date through changed()
        self._msb: dict[tuple[int, int], int] = {}
        self._down: dict[tuple[str, int, int], bool] = {}
        self._knobs: dict[tuple[int, int], _Knob] = {}
        self.received = 0
        self.ignored = 0
        self.waiting = 0  # knob moves held back by pick-up

    def handle(self, msg: Any) -> list[Operation]:
        self.received += 1
        kind = msg.type
        if kind == "control_change":
            key = (msg.channel, msg.control)
            if key in self.cc:
                route = self.cc[key]
                if route.bits == 14:
                    self._msb[key] = msg.value
                    return self._absolute(route, key, msg.value << 7, 16383)
                return self._control(route, key, msg.value)
            if key in self.lsb:
                route = self.lsb[key]
                msb_key = (route.channel, route.control)
                if msb_key not in self._msb:
                    self.ignored += 1  # an LSB before any MSB has nothing to refine
                    return []
                return self._absolute(route, msb_key, (self._msb[msb_key] << 7) | msg.value, 16383)
        elif kind in ("note_on", "note_off"):
            note_route = self.notes.get((msg.channel, msg.note))
            if note_route is not None:
                pressed = kind == "note_on" and msg.velocity > 0
                return self._button(note_route, ("note", msg.channel, msg.note), pressed)
        elif kind == "program_change":
            for p in self.programs:
                if p.channel is None or p.channel == msg.channel:
                    value = msg.program + 1 if p.target.action is not None else msg.program
                    return [(p.target.name, value, "set")]
        self.ignored += 1
        return []

    def _control(self, route: CcRoute, key: tuple[int, int], value: int) -> list[Operation]:
        if route.mode == "absolute":
            return self._absolute(route, key, value, 127)
        if route.mode in RELATIVE:
            ticks = relative_ticks(route.mode, value)
            return [(route.target.name, ticks * route.step, "add")] if ticks else []
        return self._button(route, ("cc", *key), value >= 64)

    def _absolute(self, route: CcRoute, key: tuple[int, int], raw: int, top: int) -> list[Operation]:
        spec = route.target.param
        assert spec is not None
        x = route.lo + (route.hi - route.lo) * raw / top
        if spec.kind == "bool":
            value: Any = x >= 0.5
        elif spec.kind == "int":
            value = round(x)
        else:
            value = x
        if route.takeover == "pickup" and spec.kind != "bool" and not self._picked_up(route, key, x):
            self.waiting += 1
            return []
        return [(route.target.name, value, "set")]

    def _picked_up(self, route: CcRoute, key: tuple[int, int], x: float) -> bool:
        current = self.targets.get(route.target.name)
        knob = self._knobs.setdefault(key, _Knob())
        tol = 2.5 * abs(route.hi - route.lo) / 127  # two and a half knob steps
        if not isinstance(current, (int, float)):
            knob.picked = True
        elif knob.picked and knob.sent and all(abs(current - s) > tol for s in knob.sent):
            knob.picked = False  # another source moved the value: pick it up again
            knob.sent.clear()
        if not knob.picked and isinstance(current, (int, float)):
            crossed = knob.last is not None and (knob.last - current) * (x - current) <= 0
            knob.picked = crossed or abs(x - current) <= tol
        knob.last = x
        if knob.picked:
            knob.sent.append(x)
        return knob.picked

    def pending_pickups(self) -> list[str]:
        """Targets whose knob is still on its way to the current value (for the HUD)."""
        names = []
        for key, knob in self._knobs.items():
            if not knob.picked and key in self.cc:
                names.append(self.cc[key].target.name)
        return names

    def _button(self, route: CcRoute | NoteRoute, key: tuple[str, int, int], pressed: bool) -> list[Operation]:
        was = self._down.get(key, False)
        self._down[key] = pressed
        if pressed == was:
            return []  # a repeated press or release changes nothing
        name, spec = route.target.name, route.target.param
        if route.mode == "toggle":
            return [(name, None, "toggle")] if pressed else []
        if route.mode == "hold":
            if route.value is not None:
                if pressed:
                    return [(name, route.value, "set")]
                return [(name, route.release, "set")] if route.release is not None else []
            return [(name, pressed, "set")]
        if not pressed:
            return []
        if route.value is not None:
            return [(name, route.value, "set")]
        if spec is not None and spec.kind == "bool":
            return [(name, None, "toggle")]
        return [(name, None, "fire")]

    def feedback(self, name: str, value: Any) -> list[Any]:
        """Messages that show ``name = value`` on the controller: button LEDs, motor faders, LED rings."""
        import mido

        out = []
        for route in self.mapping.cc:
            if route.target.name != name:
                continue
            if route.mode == "absolute" and route.bits == 7 and isinstance(value, (int, float)):
                span = route.hi - route.lo
                raw = round((float(value) - route.lo) / span * 127) if span else 0
                out.append(
                    mido.Message(
                        "control_change", channel=route.channel, control=route.control, value=min(127, max(0, raw))
                    )
                )
            elif route.led is not None and isinstance(value, bool):
                out.append(
                    mido.Message(
                        "control_change",
                        channel=_led_channel(route),
                        control=route.control,
                        value=route.led[0 if value else 1],
                    )
                )
        for note in self.mapping.notes:
            if note.target.name == name and note.led is not None and isinstance(value, bool):
                velocity = note.led[0 if value else 1]
                out.append(mido.Message("note_on", channel=_led_channel(note), note=note.note, velocity=velocity))
        return out


def _led_channel(route: CcRoute | NoteRoute) -> int:
    """Where a button's LED message goes: its own channel unless the mapping names another (APC mini mk2 pads)."""
    return route.channel if route.led_channel is None else route.led_channel


def use_backend(backend: str | None = None) -> str:
    """Choose mido's backend: the argument, else $MIDO_BACKEND, else rtmidi (ALSA on Linux)."""
    import mido

    name = backend or os.environ.get("MIDO_BACKEND") or "mido.backends.rtmidi"
    try:
        mido.set_backend(name, load=True)
    except Exception as e:  # noqa: BLE001 - a missing module or API shows up as many kinds of error
        raise DeviceError(f"MIDI backend {name} is not available ({e})") from None
    return name


def port_names(kind: str = "input") -> list[str]:
    import mido

    try:
        with alsa_quiet():  # the exception says it; libasound would print it again, raw
            names = mido.get_input_names() if kind == "input" else mido.get_output_names()
    except Exception as e:  # noqa: BLE001 - rtmidi reports a missing ALSA sequencer or JACK server this way
        raise DeviceError(f"cannot list MIDI ports ({e}); is a MIDI system (ALSA, JACK) running?") from None
    return list(names)


class PortProbe:
    """Lists ports through one long-lived rtmidi client.

    mido opens a fresh client for every listing; on JACK that costs about 60 ms and reshuffles the server's graph,
    which is too much to do every second beside a 60 fps display. One client kept open sees ports come and go.
    """

    def __init__(self, backend: str) -> None:
        import rtmidi

        api = rtmidi_api(backend)
        if api is None:
            raise DeviceError(f"port watching needs an rtmidi backend, not {backend}")
        try:
            self._in = rtmidi.MidiIn(api, name="vj-ports")
            self._out = rtmidi.MidiOut(api, name="vj-ports")
        except Exception as e:  # noqa: BLE001 - rtmidi reports a missing MIDI system this way
            raise DeviceError(f"cannot reach the MIDI system ({e}); is ALSA or JACK running?") from None

    def inputs(self) -> list[str]:
        return list(self._in.get_ports())

    def outputs(self) -> list[str]:
        return list(self._out.get_ports())

    def close(self) -> None:
        self._in.delete()
        self._out.delete()


class PortLister:
    """The ports there are now, for a source waiting for its device: through one long-lived ``PortProbe`` on rtmidi
    backends, through mido's listing on others.

    A MIDI system that cannot be reached (no ALSA sequencer, no JACK server) is said once, naming ``what`` waits,
    and looked for again every ``UNREACHABLE_S``, with libasound's own error printer off: each failed try would
    otherwise print its error lines again. Meanwhile there are no ports.
    """

    def __init__(self, backend: str, what: str) -> None:
        self.backend, self.what = backend, what
        self.away = False  # the MIDI system could not be reached (and that has been said)
        self._probe: PortProbe | None = None
        self._retry_at = 0.0

    def names(self, kind: str = "input") -> list[str]:
        if not self._reachable():
            return []
        if self._probe is not None:
            return self._probe.inputs() if kind == "input" else self._probe.outputs()
        try:
            return port_names(kind)
        except DeviceError as e:
            self._unreachable(e)
            return []

    def _reachable(self) -> bool:
        if self._probe is not None:
            return True
        if time.monotonic() < self._retry_at:
            return False
        if rtmidi_api(self.backend) is None:
            return True  # listed through mido, each time
        try:
            with alsa_quiet():
                self._probe = PortProbe(self.backend)
        except DeviceError as e:
            self._unreachable(e)
            return False
        if self.away:
            log.warning("MIDI system reached; looking for %s", self.what)
            self.away = False
        return True

    def _unreachable(self, e: DeviceError) -> None:
        self._retry_at = time.monotonic() + UNREACHABLE_S
        if not self.away:
            log.warning("%s is not connected: %s (trying again every %g s)", self.what, e, UNREACHABLE_S)
            self.away = True

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None


def rtmidi_api(backend: str) -> int | None:
    """The rtmidi API a mido backend name stands for, or None when the backend is not rtmidi."""
    module, _, api_name = backend.partition("/")
    if module != "mido.backends.rtmidi":
        return None
    import rtmidi

    return int(getattr(rtmidi, f"API_{api_name}", rtmidi.API_UNSPECIFIED)) if api_name else rtmidi.API_UNSPECIFIED


def match_port(query: str, names: list[str]) -> str | None:
    """The port called ``query``, else the first whose name contains it, else the first holding each of its words.

    Case never matters. The words are for names a system has shortened or put together its own way: ALSA shows
    the APC mini mk2's ports as "APC mini mk2:APC mini mk2 APC mini mk2 Contr 20:0" and "... Notes 20:1", JACK as
    "... APC mini mk2 Control"; "APC mini mk2 Contr" and "apc contr" find the Control port on both, never Notes.
    """
    if query in names:
        return query
    q = query.lower()
    hits = [n for n in names if q in n.lower()]
    if not hits:
        words = q.split()
        hits = [n for n in names if words and all(w in n.lower() for w in words)]
    return hits[0] if hits else None


class MidiInput(Source):
    """The MIDI source: one input port (and optionally an output for feedback), reconnecting as devices come and go.

    One thread owns everything: rtmidi's callback only queues the message; the source's thread takes messages and
    the loop's mail (current values, a scene's mapping) in turn, runs the router (pick-up state included), posts to
    the bus, lights LEDs and checks the ports. ``status()`` and ``report()`` read what that thread publishes.
    """

    name = "midi"
    listens = frozenset({"changed", "remap"})

    def __init__(
        self, query: str | None, mapping: Mapping, *, out_query: str | None = None, backend: str | None = None
    ) -> None:
        super().__init__()
        self.query = query or mapping.device
        if not self.query:
            raise DeviceError("no MIDI device given: use --midi-in NAME or set device in the mapping's [midi] table")
        self.out_query = out_query
        self.router = MidiRouter(mapping)
        self.backend = use_backend(backend)
        self._ports = PortLister(self.backend, f"MIDI device '{self.query}'")
        self.port_name: str | None = None
        self.connects = 0
        self.disconnects = 0
        self.rejected = 0
        self.arrived = 0
        self.recovered = 0  # messages a broken sysex had swallowed, given back by the flush
        self._last_arrival = 0.0
        self._last_flush = 0.0
        self._graph: JackGraph | None = None
        self.connected_at_end: bool | None = None
        self._port: Any = None
        self._out: Any = None
        self._bus: ControlBus | None = None
        self._incoming: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pickups: tuple[str, ...] = ()  # published by the source's thread for the HUD

    # -- source ----------------------------------------------------------------------------------------------
    def start(self, bus: ControlBus) -> None:
        self._bus = bus
        if rtmidi_api(self.backend) is None:
            log.info("MIDI backend %s: listing ports through mido, the slow way", self.backend)
        if self.backend.endswith("/UNIX_JACK"):
            try:
                self._graph = JackGraph.shared()
            except OSError as e:
                log.info("cannot read JACK's connections (%s): a very fast replug may go unseen", e)
        self._check()
        if self._port is None and not self._ports.away:
            log.warning(
                "MIDI device '%s' not found; waiting for it (ports now: %s)",
                self.query,
                ", ".join(self._ports.names()) or "none",
            )
        self.spawn(self._run, "vj-midi")

    def stop(self) -> None:
        super().stop()
        self.connected_at_end = self._port is not None
        self._close()
        if self._out is not None:
            self._out.close()
            self._out = None
        self._ports.close()

    def _run(self) -> None:
        next_check = time.monotonic() + RECONNECT_S
        while not self.stopping:
            port = self._port
            if isinstance(port, RawInput):
                self._read_raw(port)
            else:
                try:
                    msg = self._incoming.get(timeout=0.05)
                    for _ in range(1000):  # a burst in one go; mail and ports in between bursts
                        self._route(msg)
                        msg = self._incoming.get_nowait()
                except queue.Empty:
                    pass
            self.deliver()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + RECONNECT_S
                self._check()
            self._pickups = tuple(sorted(set(self.router.pending_pickups())))

    def _read_raw(self, port: RawInput) -> None:
        """Take what rtmidi queued; when the input has been quiet a while, end any sysex rtmidi holds open."""
        events = port.read(1000)
        now = time.monotonic()
        for data in events:
            if data != [0xF7]:  # not the flush coming back
                self.arrived += 1
            self._route(data)
        if events:
            self._last_arrival = now
            return
        if now - max(self._last_arrival, self._last_flush) >= FLUSH_S:
            self._last_flush = now
            port.flush()
        self._stopping.wait(POLL_S)

    def _check(self) -> None:
        """Open the device if it has appeared; close it if it has vanished."""
        import mido

        names = self._ports.names()
        if self._port is not None and self.port_name not in names:
            log.warning("MIDI device '%s' went away; waiting for it to come back", self.port_name)
            self.disconnects += 1
            self._close()
        elif self._replugged():
            log.warning("MIDI device '%s' was replugged; reopening it", self.port_name)
            self.disconnects += 1
            self._close()
        if self._port is None:
            name = match_port(self.query or "", names)
            if name is not None:
                try:
                    api = rtmidi_api(self.backend)
                    if api is not None:
                        self._port = RawInput(api, name)
                    else:
                        self._port = mido.open_input(name, callback=self._on_message)
                except Exception as e:  # noqa: BLE001 - a port can vanish between listing and opening
                    log.warning("cannot open MIDI input '%s' (%s); trying again", name, e)
                    return
                self.port_name = name
                self.connects += 1
                log.info("MIDI input: %s", name)
        if self.out_query and self._out is None:
            outs = self._ports.names("output")
            name = match_port(self.out_query, outs)
            if name is not None:
                try:
                    self._out = mido.open_output(name)
                    log.info("MIDI feedback to: %s", name)
                except Exception as e:  # noqa: BLE001
                    log.warning("cannot open MIDI output '%s' (%s)", name, e)

    def _replugged(self) -> bool:
        """On JACK: the device's port is there but ours is no longer connected to it (it came back as a new port)."""
        port, graph = self._port, self._graph
        if not isinstance(port, RawInput) or graph is None or self.port_name is None:
            return False
        return not graph.connected(port.port, self.port_name)

    def _close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except Exception:
                log.debug("closing MIDI port failed", exc_info=True)
            self._port = None

    def _on_message(self, msg: Any) -> None:
        """The backend's thread: hand the message over and return at once."""
        self.arrived += 1
        self._incoming.put(msg)

    def _route(self, msg: Any) -> None:
        bus = self._bus
        if bus is None:
            return
        if isinstance(msg, list):  # raw bytes from RawInput
            try:
                messages, recovered = decode(msg)
            except ValueError as e:
                self.rejected += 1
                bus.reject("midi", f"{bytes(msg[:20]).hex(' ')} ({e})", key="bytes")
                return
            if recovered:
                if not self.recovered:
                    log.warning("MIDI: a sysex without its end (0xF7) held %d messages back; recovered them", recovered)
                self.recovered += recovered
            for m in messages:
                self._route(m)
            return
        try:
            ops = self.router.handle(msg)
        except Exception as e:  # noqa: BLE001 - a bad message must never kill the MIDI thread
            self.rejected += 1
            bus.reject("midi", f"{msg!s:.60} ({type(e).__name__}: {e})", key=getattr(msg, "type", "?"))
            return
        for target, value, op in ops:
            bus.post("midi", target, value, op)

    # -- mail from the loop, status, report --------------------------------------------------------------------
    def on_remap(self, mapping: Mapping) -> None:
        """A scene's mapping overrides; knobs keep what they know of the current values."""
        router = MidiRouter(mapping)
        router.targets = self.router.targets
        router.received, router.ignored, router.waiting = self.router.received, self.router.ignored, self.router.waiting
        self.router = router

    def on_changed(self, values: dict[str, Any]) -> None:
        self.router.targets.update(values)
        out = self._out
        if out is None:
            return
        for name, value in values.items():
            for message in self.router.feedback(name, value):
                try:
                    out.send(message)
                except Exception:
                    log.debug("MIDI feedback failed", exc_info=True)

    def status(self) -> str:
        text = f"MIDI {self.port_name}" if self._port is not None else f"MIDI waiting for '{self.query}'"
        if self._pickups:
            text += f"  (pick up: {', '.join(self._pickups)})"
        return text

    def report(self) -> dict[str, Any]:
        r = self.router
        return {
            "port": self.port_name,
            "connected": self._port is not None if self.connected_at_end is None else self.connected_at_end,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "received": r.received,
            "ignored": r.ignored,
            "pickup_waiting": r.waiting,
            "rejected": self.rejected,
            "recovered_from_sysex": self.recovered,
            "backend": self.backend,
        }

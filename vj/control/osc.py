"""OSC in and out, for TouchDesigner, Resolume, TouchOSC and anything else that speaks it.

Addresses (every parameter and remote action of the spec tables, see ``vj osc list``):

    /vj/<param> <value>        set, in the parameter's own units; out of range or not finite: dropped
    /vj/<param> "+"|"-" <x>    Resolume's relative form: move by x ("a" <x>: its absolute form, set to x)
    /vj/norm/<param> <0..1>    for senders that only speak 0..1: mapped onto the parameter's range
    /vj/<bool>                 no argument: flip it
    /vj/<trigger or action>    no argument, or a non-zero one (a button's press; its release, 0, does nothing)
    mapping routes             [[osc.route]] in a mapping file: any address onto any target

Bundles are unpacked and applied at once (their time tags are ignored: a show cannot wait). A value identical to
the last one from the same address within ``REPEAT_S`` is skipped: TouchDesigner's OSC Out CHOP sends every
channel every frame, and an unchanged fader must not undo what a voice command or a MIDI knob just set.

``OscRouter`` turns one message into bus operations and knows nothing of sockets; ``OscServer`` is the socket
thread around it, using python-osc's parser; ``OscFeedback`` sends parameter changes back out.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from vj.control.actions import ACTIONS
from vj.control.bus import ControlBus, Op
from vj.control.mapping import Mapping, OscRoute
from vj.errors import DeviceError
from vj.params import PARAMS, ParamSpec

log = logging.getLogger(__name__)

PREFIX = "/vj/"
NORM = "/vj/norm/"
REPEAT_S = 2.0
RANGE_SLACK = 1e-6  # float senders round; a hair outside the range is still in it

Operation = tuple[str, Any, Op]  # (target, value, op) for bus.post


class Reject(Exception):
    """A message that cannot be used; the text says why."""


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Reject(f"expected a number, got {type(value).__name__} {value!r:.40}")
    x = float(value)
    if not math.isfinite(x):
        raise Reject(f"expected a finite number, got {x}")
    # Most senders use OSC's 32-bit floats: 0.2 arrives as 0.20000000298. Keep the 7 digits that were meant.
    return float(f"{x:.7g}")


def _in_range(spec: ParamSpec, x: float) -> float:
    assert spec.lo is not None and spec.hi is not None
    slack = RANGE_SLACK * spec.span
    if not spec.lo - slack <= x <= spec.hi + slack:
        raise Reject(f"{x:g} is outside {spec.name}'s range {spec.lo:g}..{spec.hi:g}")
    return min(spec.hi, max(spec.lo, x))


def _pressed(args: Sequence[Any]) -> bool:
    """Triggers fire on no argument or a non-zero one; 0 is a button's release."""
    if not args:
        return True
    if len(args) > 1:
        raise Reject(f"expected at most one argument, got {len(args)}")
    a = args[0]
    if isinstance(a, str):
        raise Reject(f"expected no argument or a number, got {a!r:.40}")
    return bool(a) if isinstance(a, bool) else _number(a) != 0


class OscRouter:
    def __init__(self, mapping: Mapping | None = None) -> None:
        self.params = {p.name: p for p in PARAMS}
        self.actions = {a.name: a for a in ACTIONS if a.remote}
        self.routes: dict[str, OscRoute] = {r.address: r for r in (mapping.osc if mapping else ())}
        self._last: dict[str, tuple[tuple[Any, ...], float]] = {}
        self.duplicates = 0

    def route(self, address: str, args: Sequence[Any], now: float | None = None) -> list[Operation]:
        """What ``address args`` asks for, as bus operations; ``Reject`` when it cannot be used."""
        ops = self._route(address, args)
        if ops and ops[0][2] == "set":
            now = time.monotonic() if now is None else now
            key = tuple(args)
            last = self._last.get(address)
            self._last[address] = (key, now)
            if last is not None and last[0] == key and now - last[1] < REPEAT_S:
                self.duplicates += 1
                return []
        return ops

    def _route(self, address: str, args: Sequence[Any]) -> list[Operation]:
        if address in self.routes:
            return self._mapped(self.routes[address], args)
        if address.startswith(NORM):
            name = address[len(NORM) :]
            spec = self.params.get(name)
            if spec is None or spec.kind not in ("float", "int", "bool"):
                raise Reject(f"unknown address (no number parameter '{name}' for {NORM}...)")
            x = self._one_number(args)
            if not -RANGE_SLACK <= x <= 1 + RANGE_SLACK:
                raise Reject(f"{x:g} is outside 0..1")
            if spec.kind == "bool":
                return [(name, x >= 0.5, "set")]
            assert spec.lo is not None and spec.hi is not None
            return [(name, spec.lo + min(1.0, max(0.0, x)) * spec.span, "set")]
        if not address.startswith(PREFIX):
            raise Reject("unknown address (vj listens under /vj/)")
        name = address[len(PREFIX) :]
        if name in self.params:
            return self._param(self.params[name], args)
        if name in self.actions:
            action = self.actions[name]
            if action.arg == "none":
                return [(name, None, "fire")] if _pressed(args) else []
            if len(args) != 1 or not isinstance(args[0], (int, str)) or isinstance(args[0], bool):
                raise Reject(f"{name} needs one whole number or name")
            return [(name, args[0], "set")]
        raise Reject("unknown address")

    @staticmethod
    def _one_number(args: Sequence[Any]) -> float:
        if len(args) != 1:
            raise Reject(f"expected one number, got {len(args)} arguments")
        return _number(args[0])

    def _param(self, spec: ParamSpec, args: Sequence[Any]) -> list[Operation]:
        name = spec.name
        if spec.kind == "trigger":
            return [(name, None, "fire")] if _pressed(args) else []
        if spec.kind == "string":
            if len(args) != 1 or not isinstance(args[0], str):
                raise Reject(f"{name} needs one string")
            if not args[0].strip():
                raise Reject(f"{name} needs some text")
            return [(name, args[0], "set")]
        if spec.kind == "bool":
            if not args:
                return [(name, None, "toggle")]
            if len(args) == 1 and isinstance(args[0], str) and args[0].lower() in ("on", "off", "true", "false"):
                return [(name, args[0], "set")]
            return [(name, self._one_number(args) >= 0.5 if not isinstance(args[0], bool) else args[0], "set")]
        # float / int
        if len(args) == 2 and args[0] in ("+", "-"):
            delta = _number(args[1])
            return [(name, delta if args[0] == "+" else -delta, "add")]
        if len(args) == 2 and args[0] == "a":  # Resolume's explicit absolute form
            args = args[1:]
        return [(name, _in_range(spec, self._one_number(args)), "set")]

    def _mapped(self, route: OscRoute, args: Sequence[Any]) -> list[Operation]:
        target = route.target
        if target.action is not None or (target.param and target.param.kind == "trigger"):
            return [(target.name, None, "fire")] if _pressed(args) else []
        assert target.param is not None
        if route.lo is not None and route.hi is not None:
            x = self._one_number(args)
            if not -RANGE_SLACK <= x <= 1 + RANGE_SLACK:
                raise Reject(f"{x:g} is outside 0..1 (this route maps 0..1 onto {route.lo:g}..{route.hi:g})")
            return [(target.name, route.lo + min(1.0, max(0.0, x)) * (route.hi - route.lo), "set")]
        return self._param(target.param, args)


class OscServer:
    """The OSC source: a UDP socket on its own thread, posting to the bus."""

    name = "osc"

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, mapping: Mapping | None = None) -> None:
        self.host, self.port = host, port
        self.router = OscRouter(mapping)
        self._duplicates = 0  # counted by routers replaced since
        self.packets = 0
        self.messages = 0
        self.malformed = 0
        self.error: str | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    def bind(self) -> None:
        """Open the socket now (so a busy port is known before the show starts)."""
        try:
            info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(info[0], socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # absorb bursts while the GIL is busy
            sock.bind(info[4])
        except OSError as e:
            raise DeviceError(f"cannot listen for OSC on {self.host}:{self.port} ({e.strerror or e})") from None
        sock.settimeout(0.2)
        self._sock = sock
        self.port = sock.getsockname()[1]

    def start(self, bus: ControlBus) -> None:
        if self._sock is None:
            try:
                self.bind()
            except DeviceError as e:
                # The show goes on without OSC; the HUD and the report say why.
                self.error = str(e)
                log.error("%s; the show runs without OSC input", e)
                return
        self._running.set()
        self._thread = threading.Thread(target=self._serve, args=(bus,), name="vj-osc", daemon=True)
        self._thread.start()
        log.info("listening for OSC on %s:%d", self.host, self.port)

    def stop(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(2)
        if self._sock is not None:
            self._sock.close()

    def _serve(self, bus: ControlBus) -> None:
        from pythonosc.osc_packet import OscPacket

        assert self._sock is not None
        while self._running.is_set():
            try:
                data, _ = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                if self._running.is_set():
                    log.exception("OSC socket failed")
                break
            self.packets += 1
            try:
                messages = [m.message for m in OscPacket(data).messages]
            except Exception as e:  # noqa: BLE001 - python-osc raises more than ParseError on random bytes
                self.malformed += 1
                bus.reject("osc", f"a packet that is not valid OSC ({type(e).__name__})", key="<malformed packet>")
                continue
            for message in messages:
                self.messages += 1
                self.handle(bus, message.address, message.params)

    def handle(self, bus: ControlBus, address: str, args: Sequence[Any]) -> None:
        try:
            ops = self.router.route(address, args)
        except Reject as e:
            bus.reject("osc", f"{address}: {e}", key=address)
            return
        for target, value, op in ops:
            bus.post("osc", target, value, op)

    def remap(self, mapping: Mapping) -> None:
        """Take a new mapping (a scene's overrides): one attribute swap, safe while the socket thread runs."""
        self._duplicates += self.router.duplicates
        self.router = OscRouter(mapping)

    def status(self) -> str:
        return f"OSC off ({self.error})" if self.error else f"OSC :{self.port}"

    def report(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "packets": self.packets,
            "messages": self.messages,
            "malformed": self.malformed,
            "duplicates": self._duplicates + self.router.duplicates,
            "error": self.error,
        }


class OscFeedback:
    """Sends every parameter change, from any source, to HOST:PORT as ``/vj/<param> <value>``."""

    name = "osc_out"

    def __init__(self, host: str, port: int) -> None:
        from pythonosc.udp_client import SimpleUDPClient

        self.host, self.port = host, port
        self.client = SimpleUDPClient(host, port)
        self.sent = 0
        self.failed = 0

    def start(self, bus: ControlBus) -> None:
        pass

    def stop(self) -> None:
        pass

    def changed(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            out = int(value) if isinstance(value, bool) else value
            try:
                self.client.send_message(PREFIX + name, out)
                self.sent += 1
            except OSError as e:
                self.failed += 1
                if self.failed == 1:
                    log.warning("OSC out to %s:%d failed (%s); counting further failures", self.host, self.port, e)

    def report(self) -> dict[str, Any]:
        return {"target": f"{self.host}:{self.port}", "sent": self.sent, "failed": self.failed}


def address_table() -> list[tuple[str, str, str]]:
    """(address, arguments, what it does) for every address vj answers, for ``vj osc list``."""
    rows = []
    for p in PARAMS:
        rows.append((PREFIX + p.name, p.describe(), p.doc))
    for p in PARAMS:
        if p.kind in ("float", "int", "bool"):
            rows.append((NORM + p.name, "float 0..1", f"{p.name} from 0..1 onto {p.describe()}"))
    for a in ACTIONS:
        if a.remote:
            rows.append((PREFIX + a.name, "(no argument)" if a.arg == "none" else a.arg, a.doc))
    return rows

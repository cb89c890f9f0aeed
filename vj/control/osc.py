"""OSC in and out, for TouchDesigner, Resolume, TouchOSC and anything else that speaks it.

Addresses (every parameter and remote action of the spec tables, see ``vj osc list``):

    /vj/<param> <value>        set, in the parameter's own units; out of range or not finite: dropped
    /vj/<param> "+"|"-" <x>    Resolume's relative form: move by x ("a" <x>: its absolute form, set to x)
    /vj/norm/<param> <0..1>    for senders that only speak 0..1: mapped onto the parameter's range
    /vj/<bool>                 no argument: flip it
    /vj/pause-gpu              a "-" in a name reads as "_": the same address as /vj/pause_gpu
    /vj/<trigger or action>    no argument, or a non-zero one (a button's press; its release, 0, does nothing)
    mapping routes             [[osc.route]] in a mapping file: any address onto any target

Bundles are unpacked and applied at once (their time tags are ignored: a show cannot wait). A value identical to
the last one from the same address within ``REPEAT_S`` is skipped: TouchDesigner's OSC Out CHOP sends every
channel every frame, and an unchanged fader must not undo what a voice command or a MIDI knob just set.

``OscRouter`` turns one message into bus operations and knows nothing of sockets; ``OscServer`` is the socket
thread around it, using python-osc's parser; ``OscFeedback`` sends parameter changes back out.

Packets come from anyone who can reach the port, so each is checked before python-osc sees it (``check_packet``):
at most ``MAX_PACKET`` bytes (python-osc reads strings a byte at a time: a 64 kB one holds the interpreter for
milliseconds), bundle element sizes positive and inside the packet (python-osc loops forever on a negative one),
bundles nested at most ``MAX_DEPTH`` deep, at most ``MAX_ARGS`` type tags a message and ``MAX_PACKET_ARGS`` a
packet, only the type tags python-osc reads (it logs a line for every other one), arrays nested at most
``MAX_DEPTH`` deep (anything that walks the arguments, a repr or a comparison, recurses per level). A token
bucket caps the work per second (``MAX_PACKETS_PER_S``, ``MAX_BYTES_PER_S``, ``MAX_WORK_PER_S`` seconds of this
thread's CPU time): past it packets are dropped unparsed and counted, so a flood cannot take the interpreter away
from the display.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

from vj.control.actions import ACTIONS
from vj.control.bus import ControlBus, Op
from vj.control.mapping import Mapping, OscRoute
from vj.control.source import Source
from vj.errors import DeviceError
from vj.params import PARAMS, ParamSpec

log = logging.getLogger(__name__)

PREFIX = "/vj/"
NORM = "/vj/norm/"
REPEAT_S = 2.0
RANGE_SLACK = 1e-6  # float senders round; a hair outside the range is still in it

Operation = tuple[str, Any, Op]  # (target, value, op) for bus.post

MAX_PACKET = 8192  # bytes; real controllers send tens to hundreds. Bigger packets are dropped unparsed.
MAX_DEPTH = 4  # bundles in bundles, arrays in arrays
MAX_ARGS = 64  # type tags in one message
MAX_PACKET_ARGS = 1024  # type tags in one packet: T, F, N and [ ] take no bytes, so size alone does not bound them
MAX_ELEMENTS = 256  # messages in one bundle, all levels together
MAX_TEXT = 1000  # characters in a string argument (a prompt)
MAX_PACKETS_PER_S = 2000
MAX_BYTES_PER_S = 1 << 20
MAX_WORK_PER_S = 0.25  # seconds of CPU time a second for checking, parsing and routing: a quarter of one core
# "?" answers go to whatever address a packet claims to come from: a few per packet and a bounded rate, so vj
# cannot be made to send out many times what it was sent.
MAX_ANSWERS_PER_PACKET = 4
MAX_ANSWERS_PER_S = 200
MAX_ANSWER_BYTES_PER_S = 64 << 10
TYPE_TAGS = frozenset("ihfdsbrmtTFNI[]")  # what python-osc parses, and I; it logs one line per tag for any other


class Reject(Exception):
    """A message that cannot be used; the text says why. ``kind`` names the trouble without the numbers in the text,
    so the log gets one line per kind, not one per size or count a sender can vary."""

    def __init__(self, why: str, kind: str | None = None) -> None:
        super().__init__(why)
        self.kind = kind or why


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Reject(f"expected a number, got {type(value).__name__} {value!r:.40}")
    x = float(value)
    if not math.isfinite(x):
        raise Reject(f"expected a finite number, got {x}")
    # Most senders use OSC's 32-bit floats: 0.2 arrives as 0.20000000298. Keep the 7 digits that were meant.
    return float(f"{x:.7g}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _last_number(args: Sequence[Any]) -> float:
    """One number from a message of numbers: the last (TouchDesigner's Time Slice mode sends every sample of the
    slice in one message, oldest first)."""
    if not args:
        raise Reject("expected a number, got no argument")
    if len(args) > 1 and not all(_is_number(a) for a in args):
        raise Reject(f"expected numbers, got {len(args)} arguments of mixed types")
    return _number(args[-1])


def _in_range(spec: ParamSpec, x: float) -> float:
    assert spec.lo is not None and spec.hi is not None
    slack = RANGE_SLACK * spec.span
    if not spec.lo - slack <= x <= spec.hi + slack:
        raise Reject(f"{x:g} is outside {spec.name}'s range {spec.lo:g}..{spec.hi:g}")
    return min(spec.hi, max(spec.lo, x))


def _pressed(args: Sequence[Any]) -> bool:
    """Triggers fire on no argument, nil or impulse, true, or a non-zero number (the last of several); 0 and false
    are a button's release."""
    if all(a is None for a in args):  # nothing, or nil/impulse (any number of them)
        return True
    a = args[-1]
    if isinstance(a, bool):
        return a
    if not _is_number(a):
        raise Reject(f"expected no argument or a number, got {a!r:.40}")
    return _last_number(args) != 0


def _plain(value: Any) -> Any:
    """An argument as the router reads it: a blob is UTF-8 text (senders that cannot send strings send bytes)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("a blob that is not UTF-8 text") from None
    return value


def _text(value: Any) -> str:
    """A string argument, or a number given for one: "/vj/prompt ,i 1999" is the text "1999"."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return f"{_number(value):.7g}"


def _is_midi(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 4 and all(isinstance(b, int) for b in value)


def _string_end(data: bytes, start: int) -> int:
    """Offset just past the padded OSC string that starts at ``start``."""
    end = data.find(b"\0", start)
    if end < 0:
        raise Reject("a string without its terminating zero")
    return start + ((end - start) // 4 + 1) * 4


def check_packet(data: bytes) -> list[int]:
    """``Reject`` unless ``data`` is an OSC packet python-osc can parse in bounded time and stack. Returns where its
    ``I`` (impulse) type tags are: python-osc does not know them, so they are read as ``N`` (nil), a trigger."""
    if len(data) > MAX_PACKET:
        raise Reject(f"{len(data)} bytes is more than {MAX_PACKET}", "oversize")
    counts = [0, 0]  # messages, type tags
    impulses: list[int] = []

    def element(start: int, end: int, depth: int) -> None:
        if data.startswith(b"#bundle\0", start):
            if depth >= MAX_DEPTH:
                raise Reject(f"bundles nested more than {MAX_DEPTH} deep")
            pos = start + 16  # "#bundle\0" and the time tag
            if pos > end:
                raise Reject("a bundle shorter than its header")
            while pos < end:
                if pos + 4 > end:
                    raise Reject("a bundle element without its size")
                (size,) = struct.unpack_from(">i", data, pos)
                pos += 4
                if size <= 0 or size % 4 or pos + size > end:
                    raise Reject(f"a bundle element of size {size} at byte {pos}", "a bad bundle element size")
                element(pos, pos + size, depth + 1)
                pos += size
            return
        if data[start : start + 1] != b"/":
            raise Reject("not an OSC message or bundle")
        counts[0] += 1
        if counts[0] > MAX_ELEMENTS:
            raise Reject(f"more than {MAX_ELEMENTS} messages in one bundle")
        tags_at = _string_end(data, start)
        if tags_at >= end or data[tags_at : tags_at + 1] != b",":
            return  # no type tags: python-osc reads it as a message without arguments
        tags_end = data.find(b"\0", tags_at, end)
        tags = data[tags_at + 1 : tags_end if tags_end >= 0 else end]
        if len(tags) > MAX_ARGS:
            raise Reject(f"{len(tags)} type tags is more than {MAX_ARGS}", "too many type tags")
        counts[1] += len(tags)
        if counts[1] > MAX_PACKET_ARGS:
            raise Reject(f"more than {MAX_PACKET_ARGS} type tags in one packet")
        if not set(tags.decode("latin-1")) <= TYPE_TAGS:
            raise Reject("unknown type tags")
        impulses.extend(tags_at + 1 + i for i, tag in enumerate(tags) if tag == ord("I"))
        nesting = 0
        for tag in tags:
            nesting += (tag == ord("[")) - (tag == ord("]"))
            if nesting > MAX_DEPTH or nesting < 0:
                raise Reject(f"arrays nested more than {MAX_DEPTH} deep, or unbalanced")

    element(0, len(data), 0)
    return impulses


class Budget:
    """Token buckets for the OSC thread's work: packets, bytes and seconds of CPU time per second. The time is
    charged after the work (``spend``), so a packet shape that is cheap in bytes but dear to parse still pays."""

    def __init__(
        self, packets: float = MAX_PACKETS_PER_S, nbytes: float = MAX_BYTES_PER_S, work: float = MAX_WORK_PER_S
    ) -> None:
        self.rate = (packets, nbytes, work)
        self.tokens = [packets, nbytes, work]
        self.at = time.monotonic()

    def take(self, size: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        elapsed, self.at = now - self.at, now
        for i, rate in enumerate(self.rate):
            self.tokens[i] = min(rate, self.tokens[i] + elapsed * rate)  # at most one second's worth saved up
        if self.tokens[0] < 1 or self.tokens[1] < size or self.tokens[2] <= 0:
            return False
        self.tokens[0] -= 1
        self.tokens[1] -= size
        return True

    def spend(self, seconds: float) -> None:
        """Charge work already done; a debt holds packets back until time pays it off."""
        self.tokens[2] -= seconds


class OscRouter:
    """Messages into bus operations. Knows the loop's current values (from ``changed`` mail) only to answer "?"."""

    def __init__(self, mapping: Mapping | None = None) -> None:
        from vj.control.midi import MidiRouter  # the MIDI mapping, for MIDI carried in OSC messages ("m")

        self.params = {p.name: p for p in PARAMS}
        self.actions = {a.name: a for a in ACTIONS if a.remote}
        self.routes: dict[str, OscRoute] = {r.address: r for r in (mapping.osc if mapping else ())}
        self.midi = MidiRouter(mapping or Mapping())
        self.values: dict[str, Any] = {}
        self.answers: list[tuple[str, Any]] = []  # replies to "?" queries: (address, value), taken by the server
        self._last: dict[str, tuple[tuple[Any, ...], float]] = {}
        self.duplicates = 0

    def changed(self, values: dict[str, Any]) -> None:
        self.values.update(values)
        self.midi.targets.update(values)

    def route(self, address: str, args: Sequence[Any], now: float | None = None) -> list[Operation]:
        """What ``address args`` asks for, as bus operations; ``Reject`` when it cannot be used (and nothing else:
        a sender must not be able to raise anything else out of here)."""
        if any(isinstance(a, (str, bytes)) and len(a) > MAX_TEXT for a in args):
            raise Reject(f"a string longer than {MAX_TEXT} characters")
        try:
            args = [_plain(a) for a in args]
            ops = self._midi(args) if args and all(_is_midi(a) for a in args) else self._route(address, args)
        except Reject:
            raise
        except Exception as e:  # noqa: BLE001 - odd values (huge ints, nested lists) must only ever be rejected
            raise Reject(f"unusable arguments ({type(e).__name__})") from None
        if ops and ops[0][2] == "set":
            now = time.monotonic() if now is None else now
            key = tuple(args)
            last = self._last.get(address)
            self._last[address] = (key, now)
            if last is not None and last[0] == key and now - last[1] < REPEAT_S:
                self.duplicates += 1
                return []
        return ops

    def _midi(self, args: Sequence[Any]) -> list[Operation]:
        """MIDI in an OSC message (type ``m``: port, status, data 1, data 2), through the MIDI mapping."""
        import mido

        ops: list[Operation] = []
        for _port, *data in args:
            status = data[0]
            # Channel messages only, data bytes below 128: anything else is a broken bridge, not a controller.
            size = 2 if 0xC0 <= status <= 0xDF else 3
            if not 0x80 <= status <= 0xEF or any(not 0 <= b <= 0x7F for b in data[1:size]):
                raise Reject(f"MIDI bytes that make no channel message: {bytes(b & 0xFF for b in data).hex(' ')}")
            message = mido.parse(bytes(data[:size]))
            if message is None:
                raise Reject(f"MIDI bytes that make no message: {bytes(data).hex(' ')}")
            ops.extend(self.midi.handle(message))
        return ops

    def _route(self, address: str, args: Sequence[Any]) -> list[Operation]:
        if address in self.routes:
            return self._mapped(address, self.routes[address], args)
        if address.startswith(NORM):
            name = address[len(NORM) :].replace("-", "_")
            spec = self.params.get(name)
            if spec is None or spec.kind not in ("float", "int", "bool"):
                raise Reject(f"unknown address (no number parameter '{name}' for {NORM}...)")
            if args == ["?"]:
                return self._answer(address, spec, normalised=True)
            x = _last_number(args)
            if not -RANGE_SLACK <= x <= 1 + RANGE_SLACK:
                raise Reject(f"{x:g} is outside 0..1")
            if spec.kind == "bool":
                return [(name, x >= 0.5, "set")]
            assert spec.lo is not None and spec.hi is not None
            return [(name, spec.lo + min(1.0, max(0.0, x)) * spec.span, "set")]
        if not address.startswith(PREFIX):
            raise Reject("unknown address (vj listens under /vj/)")
        name = address[len(PREFIX) :].replace("-", "_")  # /vj/pause-gpu is /vj/pause_gpu
        if name in self.params:
            return self._param(address, self.params[name], args)
        if name in self.actions:
            action = self.actions[name]
            if action.arg == "none":
                return [(name, None, "fire")] if _pressed(args) else []
            return [(name, self._choice(name, args), "set")]
        raise Reject("unknown address")

    @staticmethod
    def _choice(name: str, args: Sequence[Any]) -> int | str:
        """A scene's number or name: ``f 3.0`` is scene 3 (osc.js, Node-RED and TouchOSC send floats)."""
        if len(args) != 1 or isinstance(args[0], bool) or not isinstance(args[0], (int, float, str)):
            raise Reject(f"{name} needs one whole number or name")
        value = args[0]
        if value == "?":
            raise Reject(f"{name} cannot be asked for (--osc-out sends every change)")
        if isinstance(value, float):
            if not value.is_integer():
                raise Reject(f"{name} needs a whole number, got {value:g}")
            return int(value)
        return value

    def _answer(self, address: str, spec: ParamSpec, normalised: bool = False) -> list[Operation]:
        """Resolume's "?": the value goes back to the sender, nothing changes."""
        if spec.name not in self.values:
            return []  # the show is still starting (values come with its first frame): no answer, nothing wrong
        value = self.values[spec.name]
        if normalised and spec.kind != "bool":
            assert spec.lo is not None
            value = (float(value) - spec.lo) / spec.span
        elif isinstance(value, bool):
            value = int(value)
        self.answers.append((address, value))
        return []

    def _param(self, address: str, spec: ParamSpec, args: Sequence[Any]) -> list[Operation]:
        name = spec.name
        if args == ["?"]:
            if spec.kind == "trigger":
                raise Reject(f"{name} is a trigger: it has no value to ask for")
            return self._answer(address, spec)
        if spec.kind == "trigger":
            return [(name, None, "fire")] if _pressed(args) else []
        if spec.kind == "string":
            if len(args) != 1 or not isinstance(args[0], (str, int, float)) or isinstance(args[0], bool):
                raise Reject(f"{name} needs one string")
            text = _text(args[0])
            if not text.strip() and not spec.empty:
                raise Reject(f"{name} needs some text")
            return [(name, text, "set")]
        if spec.kind == "bool":
            if not args or args == [None]:
                return [(name, None, "toggle")]
            if len(args) == 1 and isinstance(args[0], str) and args[0].lower() in ("on", "off", "true", "false"):
                return [(name, args[0], "set")]
            if isinstance(args[-1], bool):
                return [(name, args[-1], "set")]
            return [(name, _last_number(args) >= 0.5, "set")]
        # float / int: Resolume's string-first forms, else the value (the last of several)
        if len(args) == 2 and isinstance(args[0], str):
            form, x = args[0], _number(args[1])
            if form in ("+", "-"):
                return [(name, x if form == "+" else -x, "add")]
            if form == "*":
                return [(name, x, "scale")]
            if form == "a":
                return [(name, _in_range(spec, x), "set")]
            raise Reject(f'unknown form {form!r:.10}: use "+", "-", "*", "a" or "?"')
        return [(name, _in_range(spec, _last_number(args)), "set")]

    def _mapped(self, address: str, route: OscRoute, args: Sequence[Any]) -> list[Operation]:
        target = route.target
        if route.value is not None:  # a button that sets a value: TouchOSC's push sends 1 on press, 0 on release
            return [(target.name, route.value, "set")] if _pressed(args) else []
        if target.action is not None or (target.param and target.param.kind == "trigger"):
            if target.action is not None and target.action.arg != "none":
                return [(target.name, self._choice(target.name, args), "set")]
            return [(target.name, None, "fire")] if _pressed(args) else []
        assert target.param is not None
        if route.more:  # an XY pad: one value per target, in order
            targets = (target, *route.more)
            if args == ["?"]:
                return self._answer_route(address, route, targets)
            if len(args) != len(targets):
                raise Reject(f"expected {len(targets)} values, one each for {', '.join(t.name for t in targets)}")
            return [op for t, a in zip(targets, args, strict=True) for op in self._one(address, route, t, [a])]
        return self._one(address, route, target, args)

    def _one(self, address: str, route: OscRoute, target: Any, args: Sequence[Any]) -> list[Operation]:
        spec = target.param
        if route.lo is None or route.hi is None:
            return self._param(address, spec, args)
        # The sender speaks 0..1: its forms are in its units too ("+" 0.1 is a tenth of the route's span).
        span = route.hi - route.lo
        if args == ["?"]:
            return self._answer_route(address, route, (target,))
        if len(args) == 2 and isinstance(args[0], str):
            form, x = args[0], _number(args[1])
            if form in ("+", "-") and spec.kind != "bool":
                return [(target.name, (x if form == "+" else -x) * span, "add")]
            if form == "*" and spec.kind != "bool":
                return [(target.name, x, "scale")]
            if form != "a":
                raise Reject(f'unknown form {form!r:.10} here: use "+", "-", "*", "a" or "?"')
            args = args[1:]
        x = _last_number(args)
        if not -RANGE_SLACK <= x <= 1 + RANGE_SLACK:
            raise Reject(f"{x:g} is outside 0..1 (this route maps 0..1 onto {route.lo:g}..{route.hi:g})")
        value = route.lo + min(1.0, max(0.0, x)) * span
        return [(target.name, value >= 0.5 if spec.kind == "bool" else value, "set")]

    def _answer_route(self, address: str, route: OscRoute, targets: Sequence[Any]) -> list[Operation]:
        """ "?" on an alias: the values as the control sends them (0..1 when the route has a range), in order."""
        if any(t.name not in self.values for t in targets):
            return []
        out: list[Any] = []
        for t in targets:
            value = self.values[t.name]
            if isinstance(value, bool):
                out.append(int(value))
            elif route.lo is not None and route.hi is not None and route.hi != route.lo:
                out.append((float(value) - route.lo) / (route.hi - route.lo))
            else:
                out.append(value)
        self.answers.append((address, out if len(out) > 1 else out[0]))
        return []


class OscServer(Source):
    """The OSC source: a UDP socket on its own (guarded) thread, posting to the bus."""

    name = "osc"
    listens = frozenset({"remap", "changed"})

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, mapping: Mapping | None = None) -> None:
        super().__init__()
        self.host, self.port = host, port
        self.router = OscRouter(mapping)
        self._duplicates = 0  # counted by routers replaced since
        self.packets = 0
        self.messages = 0
        self.malformed = 0
        self.oversize = 0
        self.dropped = 0  # over the per-second budget: not even parsed
        self.answered = 0  # "?" queries answered
        self.unanswered = 0  # past the answer limits
        self.answer_budget = Budget(MAX_ANSWERS_PER_S, MAX_ANSWER_BYTES_PER_S, 1.0)
        self.error: str | None = None
        self.budget = Budget()
        self._sock: socket.socket | None = None
        self._bus: ControlBus | None = None

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
        self._bus = bus
        self.spawn(self._serve, "vj-osc")
        log.info("listening for OSC on %s:%d", self.host, self.port)

    def stop(self) -> None:
        super().stop()
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        sock, bus = self._sock, self._bus
        assert sock is not None and bus is not None
        while not self.stopping:
            self.deliver()  # mail from the loop (a remap) is handled here, on the thread that routes
            try:
                data, sender = sock.recvfrom(65536)
            except (TimeoutError, ConnectionResetError):
                # Windows reports an earlier answer's "port unreachable" on the next read: nothing to do with this one
                continue
            except OSError:
                if self.stopping:
                    break
                raise  # the guard logs it, counts a restart and serves again
            self.receive(bus, data, sender)
        self.deliver()  # a remap that came as the show ended still applies: the router is right after stop()

    def receive(self, bus: ControlBus, data: bytes, sender: Any = None) -> None:
        """One datagram: within the budget, checked, parsed, routed; answers to queries go back to ``sender``."""
        self.packets += 1
        size = len(data)
        # An oversize packet is refused unread: it costs a packet token but no bytes, as none of it is parsed.
        if not self.budget.take(size if size <= MAX_PACKET else 0):
            self.dropped += 1  # a flood: not even looked at, and not logged per packet
            if self.dropped == 1:
                log.warning(
                    "osc: packets come faster than they are parsed (%d or 1 MB a second, %.2f s of CPU time); "
                    "the excess is dropped unread and counted (osc.dropped)",
                    MAX_PACKETS_PER_S,
                    MAX_WORK_PER_S,
                )
            return
        started = time.thread_time()
        try:
            self._receive(bus, data)
            self._answer(sender)
        finally:
            self.budget.spend(time.thread_time() - started)

    def _answer(self, sender: Any) -> None:
        answers, self.router.answers = self.router.answers, []
        if not answers or sender is None or self._sock is None:
            return
        from pythonosc.osc_message_builder import OscMessageBuilder

        self.unanswered += max(0, len(answers) - MAX_ANSWERS_PER_PACKET)
        for address, value in answers[:MAX_ANSWERS_PER_PACKET]:
            builder = OscMessageBuilder(address)
            for v in value if isinstance(value, list) else [value]:
                builder.add_arg(v)
            dgram = builder.build().dgram
            if not self.answer_budget.take(len(dgram)):
                self.unanswered += 1
                continue
            try:
                self._sock.sendto(dgram, sender)
                self.answered += 1
            except OSError as e:
                log.debug("cannot answer %s at %s (%s)", address, sender, e)

    def _receive(self, bus: ControlBus, data: bytes) -> None:
        from pythonosc.osc_packet import OscPacket

        try:
            impulses = check_packet(data)
        except Reject as e:
            if len(data) > MAX_PACKET:
                self.oversize += 1
            self.malformed += 1
            bus.reject("osc", f"a packet that is not usable OSC ({e})", key=f"<{e.kind}>")
            return
        if impulses:
            patched = bytearray(data)
            for at in impulses:
                patched[at] = ord("N")
            data = bytes(patched)
        try:
            messages = [m.message for m in OscPacket(data).messages]
        except Exception as e:  # noqa: BLE001 - python-osc raises more than ParseError on random bytes
            self.malformed += 1
            bus.reject("osc", f"a packet that is not valid OSC ({type(e).__name__})", key="<malformed packet>")
            return
        for message in messages:
            self.messages += 1
            self.handle(bus, message.address, message.params)

    def handle(self, bus: ControlBus, address: str, args: Sequence[Any]) -> None:
        try:
            ops = self.router.route(address, args)
        except Reject as e:
            bus.reject("osc", f"{address[:80]}: {e}", key=address[:80])
            return
        for target, value, op in ops:
            bus.post("osc", target, value, op)

    def on_remap(self, mapping: Mapping) -> None:
        """A scene's mapping overrides, on the socket thread that routes with it."""
        self._duplicates += self.router.duplicates
        old = self.router
        self.router = OscRouter(mapping)
        self.router.changed(old.values)
        self.router._last = old._last  # a sender streaming an unchanged value must not undo the scene's values

    def on_changed(self, values: dict[str, Any]) -> None:
        self.router.changed(values)

    def status(self) -> str:
        if self.error:
            return f"OSC off ({self.error})"
        # Trouble only: a quiet line when all is well, the counts a VJ can act on (a flooding or broken sender).
        return (
            f"OSC :{self.port}"
            + (f"  dropped {self.dropped}" if self.dropped else "")
            + (f"  malformed {self.malformed}" if self.malformed else "")
        )

    def report(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "packets": self.packets,
            "messages": self.messages,
            "malformed": self.malformed,
            "oversize": self.oversize,
            "dropped": self.dropped,
            "duplicates": self._duplicates + self.router.duplicates,
            "answered": self.answered,
            "unanswered": self.unanswered,
            "error": self.error,
        }


class OscFeedback(Source):
    """Sends every parameter change, from any source, to HOST:PORT as ``/vj/<param> <value>`` (from its own thread:
    the loop only posts the changes to its mailbox)."""

    name = "osc_out"
    listens = frozenset({"changed"})

    def __init__(self, host: str, port: int) -> None:
        from pythonosc.udp_client import SimpleUDPClient

        super().__init__()
        self.host, self.port = host, port
        self.client = SimpleUDPClient(host, port)
        self.sent = 0
        self.failed = 0

    def start(self, bus: ControlBus) -> None:
        self.spawn(self._run, "vj-osc-out")

    def _run(self) -> None:
        while not self.stopping:
            self.wait_mail(0.2)
            self.deliver()
        self.deliver()  # the last changes before the show ended still go out

    def on_changed(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            out = int(value) if isinstance(value, bool) else value
            try:
                self.client.send_message(PREFIX + name, out)
                self.sent += 1
            except Exception as e:  # noqa: BLE001 - a network error or a value OSC cannot carry: skip this one
                self.failed += 1
                if self.failed == 1:
                    log.warning("OSC out to %s:%d failed (%s); counting further failures", self.host, self.port, e)

    def report(self) -> dict[str, Any]:
        return {"target": f"{self.host}:{self.port}", "sent": self.sent, "failed": self.failed}


FORMS = {
    "float": '{range} | "+"|"-"|"*"|"a" x | "?"',
    "int": '{range} | "+"|"-"|"*"|"a" x | "?"',
    "bool": 'T|F | 1|0 | "on"|"off" | N or nothing: flip | "?"',
    "string": 'string | blob (UTF-8) | number | "?"',
    "trigger": "nothing | N|I | T | non-zero (0 and F: a release)",
}


def address_table() -> list[tuple[str, str, str]]:
    """(address, what it takes, what it does) for every address vj answers, for ``vj osc list``."""
    rows = []
    for p in PARAMS:
        rows.append((PREFIX + p.name, FORMS[p.kind].format(range=p.describe()), p.doc))
    for p in PARAMS:
        if p.kind in ("float", "int", "bool"):
            rows.append((NORM + p.name, 'float 0..1 | "?"', f"{p.name} from 0..1 onto {p.describe()}"))
    for a in ACTIONS:
        if a.remote:
            takes = FORMS["trigger"] if a.arg == "none" else "int | whole float (3.0) | string"
            rows.append((PREFIX + a.name, takes, a.doc))
    return rows


LEGEND = """\
Numbers may come as i, h (int64), f or d (double); a message of several numbers counts its last (TouchDesigner's
Time Slice mode). Resolume's forms: "+"/"-" x moves by x, "*" x multiplies, "a" x sets, "?" asks: the answer
/vj/<param> <value> goes back to the sender's address and port. Bundles are applied at once (time tags ignored).
A "-" in a name reads as "_" (/vj/pause-gpu is /vj/pause_gpu).
MIDI in OSC (type m: port, status, data 1, data 2), at any address, goes through the MIDI mapping.
Mapping files add aliases ([[osc.route]]: any address onto any target; target = ["pan_x", "pan_y"] for XY pads)."""

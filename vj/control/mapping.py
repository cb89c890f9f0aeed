"""Mapping files: which MIDI control or OSC address drives which parameter or action.

A mapping is a TOML file (see ``mappings/`` and the README). It is checked completely at load: every error names
the file, the key path and the fix, e.g. ``mappings/apc.toml: midi.cc[3].target: unknown parameter 'zom' (did you
mean 'zoom'?)`` (entries count from 0, in file order). Loading returns plain frozen routes; the MIDI and OSC
routers apply them.

    [midi]                  device = "nanoKONTROL2" (port name or part of it), takeover = "pickup" | "jump"
    [[midi.cc]]             channel, control, target, range, mode, bits, step, takeover, value, led, led_channel
    [[midi.note]]           channel, note, target, mode, value, release, led, led_channel
    [[midi.program]]        channel (optional), target ("scene", or an int parameter)
    [[osc.route]]           address, target (a list for an XY pad), range (the sender's 0..1 onto it), value
    quantize = "bar"        scene switches wait for the next "beat" or "bar" (a scene's own quantize wins)

``led = [on, off]`` are the values sent to the feedback port (``--midi-out``) when a button's on/off target
changes: the velocity of a note-on, or the value of a CC, on the entry's own channel. ``led_channel`` (1..16)
sends them on another channel instead: the APC mini mk2 takes a pad's brightness from the note-on's channel
(1 = 10%, 7 = 100%) and its colour from the velocity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator
from pydantic.json_schema import JsonDict

from vj.control.actions import ACTIONS, ActionSpec
from vj.errors import ConfigError, ParamError
from vj.params import PARAMS, ParamSpec, unknown
from vj.schema import Table, check, invalid
from vj.tempo import Quantize
from vj.tomlfile import read_toml

CcMode = Literal["absolute", "relative-twos", "relative-signed", "relative-offset", "trigger", "toggle", "hold"]
ButtonMode = Literal["trigger", "toggle", "hold"]
Takeover = Literal["jump", "pickup"]
CC_MODES: tuple[str, ...] = get_args(CcMode)
RELATIVE = CC_MODES[1:4]
BUTTON_MODES: tuple[str, ...] = get_args(ButtonMode)
TAKEOVERS: tuple[str, ...] = get_args(Takeover)

MAPPINGS_DIR = Path(__file__).resolve().parent.parent / "data" / "mappings"  # package data (mappings/ links here)


@dataclass(frozen=True, slots=True)
class Target:
    """A parameter or an action, resolved from its name."""

    name: str
    param: ParamSpec | None = None
    action: ActionSpec | None = None

    @property
    def kind(self) -> str:
        return self.param.kind if self.param else "action"


@dataclass(frozen=True, slots=True)
class CcRoute:
    channel: int  # 0..15
    control: int
    target: Target
    mode: str = "absolute"
    lo: float = 0.0  # the target value at CC 0 ...
    hi: float = 1.0  # ... and at CC 127 (or 16383)
    bits: int = 7
    step: float = 0.0  # relative modes: change per tick
    takeover: str = "jump"
    value: Any = None  # trigger / hold: the value to set instead of firing / True
    release: Any = None  # hold: the value on release
    led: tuple[int, int] | None = None  # feedback values (on, off) for buttons
    led_channel: int | None = None  # 0..15: the channel LED messages go out on (None: the entry's own)


@dataclass(frozen=True, slots=True)
class NoteRoute:
    channel: int
    note: int
    target: Target
    mode: str = "trigger"
    value: Any = None
    release: Any = None
    led: tuple[int, int] | None = None
    led_channel: int | None = None


@dataclass(frozen=True, slots=True)
class ProgramRoute:
    channel: int | None
    target: Target


@dataclass(frozen=True, slots=True)
class OscRoute:
    address: str
    target: Target
    lo: float | None = None
    hi: float | None = None
    more: tuple[Target, ...] = ()  # an XY pad's second value (and on): target = ["pan_x", "pan_y"]
    value: Any = None  # a button: a press (non-zero) sets the target to this (scene 3, a prompt...)


@dataclass(frozen=True)
class Mapping:
    file: str = "(built in)"
    device: str | None = None
    cc: tuple[CcRoute, ...] = ()
    notes: tuple[NoteRoute, ...] = ()
    programs: tuple[ProgramRoute, ...] = ()
    osc: tuple[OscRoute, ...] = ()
    summary: dict[str, int] = field(default_factory=dict)
    quantize: str | None = None


# -- the shape of a mapping file, as models ------------------------------------------------------------------------
Channel = Annotated[int, Field(ge=1, le=16)]
Byte = Annotated[int, Field(ge=0, le=127)]
TWO_NUMBERS: JsonDict = {"expected": "two numbers [low, high]"}
LED: JsonDict = {"expected": "[on, off] values 0..127"}


def _tables(section: str) -> Any:
    return Field(default_factory=list, json_schema_extra={"expected": f"an array of tables ([[{section}]])"})


class CcTable(Table):
    channel: Channel
    control: Byte
    target: str = Field(json_schema_extra={"missing": "name a parameter or an action, see `vj osc list`"})
    range: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        None, min_length=2, max_length=2, json_schema_extra=TWO_NUMBERS
    )
    mode: CcMode = "absolute"
    bits: Literal[7, 14] = 7
    step: float | None = Field(None, allow_inf_nan=False)
    takeover: Takeover | None = None
    value: Any = None
    release: Any = None
    led: list[Byte] | None = Field(None, min_length=2, max_length=2, json_schema_extra=LED)
    led_channel: int | None = Field(None, ge=1, le=16)  # bounds on the field itself, for the error's "use 1..16"


class NoteTable(Table):
    channel: Channel
    note: Byte
    target: str = Field(json_schema_extra={"missing": "name a parameter or an action, see `vj osc list`"})
    mode: ButtonMode = "trigger"
    value: Any = None
    release: Any = None
    led: list[Byte] | None = Field(None, min_length=2, max_length=2, json_schema_extra=LED)
    led_channel: int | None = Field(None, ge=1, le=16)


class ProgramTable(Table):
    channel: Channel | None = None
    target: str = Field(json_schema_extra={"missing": 'use target = "scene"'})


class OscRouteTable(Table):
    address: str = Field(json_schema_extra={"missing": 'add address = "/1/fader1"'})
    target: Any = Field(json_schema_extra={"missing": "name a parameter or an action, see `vj osc list`"})
    value: Any = None
    range: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        None, min_length=2, max_length=2, json_schema_extra=TWO_NUMBERS
    )

    @field_validator("address")
    @classmethod
    def _address(cls, address: str) -> str:
        if not address.startswith("/") or " " in address:
            raise invalid(f'expected an OSC address like "/1/fader1", got {address!r}')
        return address

    @field_validator("target")
    @classmethod
    def _target(cls, target: Any) -> str | list[str]:
        names = [target] if isinstance(target, str) else target
        if not isinstance(names, list) or not 1 <= len(names) <= 8 or not all(isinstance(n, str) for n in names):
            raise invalid(
                f"expected a name, or a list of names for a control that sends several values, got {target!r:.60}",
                'e.g. target = "zoom", or target = ["pan_x", "pan_y"] for an XY pad',
            )
        return target


class MidiTable(Table):
    device: str | None = Field(None, json_schema_extra={"expected": "a port name (or part of one)"})
    takeover: Takeover = "jump"
    cc: list[CcTable] = _tables("midi.cc")
    note: list[NoteTable] = _tables("midi.note")
    program: list[ProgramTable] = _tables("midi.program")

    @field_validator("device")
    @classmethod
    def _device(cls, device: str | None) -> str | None:
        if device is not None and not device.strip():
            raise invalid(f"expected a port name (or part of one), got {device!r}")
        return device


class OscTable(Table):
    route: list[OscRouteTable] = _tables("osc.route")


class MappingTable(Table):
    midi: MidiTable = MidiTable()
    osc: OscTable = OscTable()
    quantize: Quantize | None = None


# -- what the shape cannot say: targets, their ranges and values, and how buttons use them ----------------------------
class _Checker:
    def __init__(self, file: str, prefix: str = "") -> None:
        self.file, self.prefix = file, prefix

    def fail(self, key: str, message: str, fix: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, key=".".join(k for k in (self.prefix, key) if k), fix=fix)

    def target(self, name: str, key: str) -> Target:
        params = {p.name: p for p in PARAMS}
        actions = {a.name: a for a in ACTIONS}
        if name in params:
            return Target(name, param=params[name])
        if name in actions:
            if not actions[name].remote:
                raise self.fail(
                    f"{key}.target",
                    f"'{name}' cannot be reached from a controller or the network (one stray message would end it)",
                    "use the keyboard for it (Esc or Q)",
                )
            return Target(name, action=actions[name])
        err = unknown(name, [*params, *(a for a in actions if actions[a].remote)], "parameter or action")
        raise self.fail(f"{key}.target", str(err))

    def range(self, value: list[float] | None, key: str, target: Target) -> tuple[float, float] | None:
        if value is None:
            return None
        lo, hi = value
        spec = target.param
        if spec is None or spec.kind not in ("float", "int"):
            raise self.fail(f"{key}.range", f"{target.name} has no numeric range", "remove range")
        assert spec.lo is not None and spec.hi is not None
        for v in (lo, hi):
            if not spec.lo <= v <= spec.hi:
                raise self.fail(
                    f"{key}.range",
                    f"{v:g} is outside {target.name}'s range {spec.describe()}",
                    f"keep both ends within {spec.lo:g}..{spec.hi:g}",
                )
        return float(lo), float(hi)

    def value(self, value: Any, key: str, name: str, target: Target) -> Any:
        if value is None:
            return None
        if target.param is not None:
            try:
                return target.param.check(value)
            except ParamError as e:
                raise self.fail(f"{key}.{name}", str(e)) from None
        if target.action is not None and target.action.arg == "none":
            raise self.fail(f"{key}.{name}", f"{target.name} takes no value", f"remove {name}")
        return value


def _led(c: _Checker, t: CcTable | NoteTable, key: str) -> dict[str, Any]:
    """The route's LED fields; a channel for LEDs that are never sent is a mistake worth saying."""
    if t.led_channel is not None and t.led is None:
        raise c.fail(f"{key}.led_channel", "there is no led to send", "add led = [on, off] or remove led_channel")
    return {
        "led": (t.led[0], t.led[1]) if t.led is not None else None,
        "led_channel": t.led_channel - 1 if t.led_channel is not None else None,
    }


def _button_target(c: _Checker, key: str, target: Target, mode: str, value: Any) -> None:
    """Buttons fire triggers and actions, flip bools, or set a value they carry."""
    spec, action = target.param, target.action
    if mode == "toggle" and (spec is None or spec.kind != "bool"):
        raise c.fail(
            f"{key}.mode", f"toggle needs an on/off parameter; {target.name} is {target.kind}", 'use mode = "trigger"'
        )
    if mode == "trigger" and value is None:
        if action is not None and action.arg != "none":
            raise c.fail(f"{key}.value", f"{target.name} needs a value to trigger with", "add value = ...")
        if spec is not None and spec.kind not in ("trigger", "bool"):
            raise c.fail(
                f"{key}.value", f"a button on {target.name} ({spec.describe()}) needs a value to set", "add value = ..."
            )
    if mode == "hold" and value is None and (spec is None or spec.kind != "bool"):
        raise c.fail(
            f"{key}.mode",
            f"hold needs an on/off parameter or a value; {target.name} is {target.kind}",
            "add value = ... and release = ...",
        )


def _cc(c: _Checker, t: CcTable, key: str, takeover_default: str) -> CcRoute:
    if t.bits == 14 and t.mode != "absolute":
        raise c.fail(f"{key}.bits", "14-bit pairs are for absolute controls", 'remove bits or use mode = "absolute"')
    if t.bits == 14 and t.control > 31:
        raise c.fail(f"{key}.control", f"{t.control} is out of range", "use 0..31")
    target = c.target(t.target, key)
    spec = target.param
    route = CcRoute(t.channel - 1, t.control, target, t.mode, bits=t.bits, **_led(c, t, key))
    if t.mode in BUTTON_MODES:
        value = c.value(t.value, key, "value", target)
        _button_target(c, key, target, t.mode, value)
        return replace(route, value=value, release=c.value(t.release, key, "release", target))
    if spec is None or spec.kind not in ("float", "int", "bool"):
        raise c.fail(
            f"{key}.target",
            f"a knob or fader cannot drive {target.name} ({target.kind})",
            "use a number or on/off parameter, or a button mode (trigger, toggle, hold)",
        )
    if t.mode in RELATIVE and spec.kind == "bool":
        raise c.fail(
            f"{key}.mode",
            f"{target.name} is on/off: a relative encoder cannot turn it",
            'use mode = "absolute" or "toggle"',
        )
    whole = (spec.lo, spec.hi) if spec.lo is not None and spec.hi is not None else (0.0, 1.0)
    lo, hi = c.range(t.range, key, target) or whole
    step = t.step if t.step is not None else (spec.span / 100 if spec.kind != "bool" else 0)
    return replace(route, lo=float(lo), hi=float(hi), step=float(step), takeover=t.takeover or takeover_default)


def _note(c: _Checker, t: NoteTable, key: str) -> NoteRoute:
    target = c.target(t.target, key)
    value = c.value(t.value, key, "value", target)
    _button_target(c, key, target, t.mode, value)
    release = c.value(t.release, key, "release", target)
    return NoteRoute(t.channel - 1, t.note, target, t.mode, value, release, **_led(c, t, key))


def _program(c: _Checker, t: ProgramTable, key: str) -> ProgramRoute:
    target = c.target(t.target, key)
    ok = (target.action is not None and target.action.arg != "none") or (target.param and target.param.kind == "int")
    if not ok:
        raise c.fail(
            f"{key}.target",
            f"program change gives a number; {target.name} cannot take one",
            'use target = "scene" or a whole-number parameter',
        )
    return ProgramRoute(t.channel - 1 if t.channel is not None else None, target)


def _osc(c: _Checker, t: OscRouteTable, key: str) -> OscRoute:
    names = [t.target] if isinstance(t.target, str) else t.target
    targets = [c.target(name, key) for name in names]
    if len(targets) > 1:
        for target in targets:
            if target.param is None or target.param.kind not in ("float", "int", "bool"):
                raise c.fail(
                    f"{key}.target",
                    f"{target.name} is {target.kind}: a control with several values drives numbers or on/off",
                    "name number or on/off parameters, one per value the control sends",
                )
    ranges = {c.range(t.range, key, target) for target in targets}
    lo, hi = ranges.pop() or (None, None)
    value = c.value(t.value, key, "value", targets[0])
    if value is not None and (len(targets) > 1 or lo is not None):
        raise c.fail(f"{key}.value", "a button sets one value; this route maps a control's values", "remove value")
    return OscRoute(t.address, targets[0], lo, hi, more=tuple(targets[1:]), value=value)


def parse_mapping(data: dict[str, Any], file: str, prefix: str = "") -> Mapping:
    """A mapping from parsed TOML; ``prefix`` is the key path of a mapping inside another file (a scene's)."""
    t = check(MappingTable, data, file, prefix)
    c = _Checker(file, prefix)
    found: dict[str, list[Any]] = {
        "cc": [_cc(c, e, f"midi.cc[{i}]", t.midi.takeover) for i, e in enumerate(t.midi.cc)],
        "notes": [_note(c, e, f"midi.note[{i}]") for i, e in enumerate(t.midi.note)],
        "programs": [_program(c, e, f"midi.program[{i}]") for i, e in enumerate(t.midi.program)],
        "osc": [_osc(c, e, f"osc.route[{i}]") for i, e in enumerate(t.osc.route)],
    }
    _no_duplicates(c, found)
    return Mapping(
        file=file,
        device=t.midi.device,
        cc=tuple(found["cc"]),
        notes=tuple(found["notes"]),
        programs=tuple(found["programs"]),
        osc=tuple(found["osc"]),
        summary={k: len(v) for k, v in found.items()},
        quantize=t.quantize,
    )


def _no_duplicates(c: _Checker, found: dict[str, list[Any]]) -> None:
    seen: dict[Any, str] = {}
    keyed = [
        *((f"midi.cc[{i}]", ("cc", r.channel, r.control)) for i, r in enumerate(found["cc"])),
        *((f"midi.cc[{i}]", ("cc", r.channel, r.control + 32)) for i, r in enumerate(found["cc"]) if r.bits == 14),
        *((f"midi.note[{i}]", ("note", r.channel, r.note)) for i, r in enumerate(found["notes"])),
        *((f"midi.program[{i}]", ("program", r.channel)) for i, r in enumerate(found["programs"])),
        *((f"osc.route[{i}]", ("osc", r.address)) for i, r in enumerate(found["osc"])),
    ]
    for key, ident in keyed:
        if ident in seen:
            raise c.fail(key, f"the same control as {seen[ident]}", "give each control one entry")
        seen[ident] = key


def merge(base: Mapping, over: Mapping) -> Mapping:
    """``base`` with ``over``'s entries on top: an entry for the same control or address replaces base's."""

    def keep(old: tuple[Any, ...], new: tuple[Any, ...], ident: Callable[[Any], Any]) -> tuple[Any, ...]:
        taken = {ident(r) for r in new}
        return tuple(r for r in old if ident(r) not in taken) + new

    return Mapping(
        file=f"{base.file} + {over.file}",
        device=over.device or base.device,
        cc=keep(base.cc, over.cc, lambda r: (r.channel, r.control)),
        notes=keep(base.notes, over.notes, lambda r: (r.channel, r.note)),
        programs=keep(base.programs, over.programs, lambda r: r.channel),
        osc=keep(base.osc, over.osc, lambda r: r.address),
        quantize=over.quantize or base.quantize,
    )


def resolve(name: str) -> Path:
    """A mapping file from a path, or from a bare name in ``mappings/`` (``--mapping nanokontrol2``)."""
    path = Path(name)
    candidates = (
        [path]
        if path.suffix or path.parent != Path(".")
        else [path, Path("mappings") / f"{name}.toml", MAPPINGS_DIR / f"{name}.toml"]
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    shipped = ", ".join(sorted(p.stem for p in MAPPINGS_DIR.glob("*.toml"))) or "none"
    raise ConfigError("no such mapping file", file=name, fix=f"give a path, or one of: {shipped}")


def load_mapping(name: str | Path) -> Mapping:
    path = resolve(str(name))
    return parse_mapping(read_toml(path), str(path))


def default_mapping() -> Mapping:
    path = MAPPINGS_DIR / "default.toml"
    return load_mapping(path) if path.is_file() else Mapping()

"""Mapping files: which MIDI control or OSC address drives which parameter or action.

A mapping is a TOML file (see ``mappings/`` and the README). It is checked completely at load: every error names
the file, the key path and the fix, e.g. ``mappings/apc.toml: midi.cc[3].target: unknown parameter 'zom' (did you
mean 'zoom'?)`` (entries count from 0, in file order). Loading returns plain frozen routes; the MIDI and OSC
routers apply them.

    [midi]                  device = "nanoKONTROL2" (port name or part of it), takeover = "pickup" | "jump"
    [[midi.cc]]             channel, control, target, range, mode, bits, step, takeover, value, led
    [[midi.note]]           channel, note, target, mode, value, release, led
    [[midi.program]]        channel (optional), target ("scene", or an int parameter)
    [[osc.route]]           address, target, range (the sender sends 0..1, mapped onto this range)
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vj.control.actions import ACTIONS, ActionSpec
from vj.errors import ConfigError, ParamError
from vj.params import PARAMS, ParamSpec, unknown
from vj.tomlfile import read_toml

CC_MODES = ("absolute", "relative-twos", "relative-signed", "relative-offset", "trigger", "toggle", "hold")
RELATIVE = CC_MODES[1:4]
BUTTON_MODES = ("trigger", "toggle", "hold")
TAKEOVERS = ("jump", "pickup")

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


@dataclass(frozen=True, slots=True)
class NoteRoute:
    channel: int
    note: int
    target: Target
    mode: str = "trigger"
    value: Any = None
    release: Any = None
    led: tuple[int, int] | None = None


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


@dataclass(frozen=True)
class Mapping:
    file: str = "(built in)"
    device: str | None = None
    cc: tuple[CcRoute, ...] = ()
    notes: tuple[NoteRoute, ...] = ()
    programs: tuple[ProgramRoute, ...] = ()
    osc: tuple[OscRoute, ...] = ()
    summary: dict[str, int] = field(default_factory=dict)


# -- small check functions, one per kind of value ---------------------------------------------------------------


class _Checker:
    def __init__(self, file: str, prefix: str = "") -> None:
        self.file, self.prefix = file, prefix

    def fail(self, key: str, message: str, fix: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, key=".".join(k for k in (self.prefix, key) if k), fix=fix)

    def table(self, data: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, f"expected a table, got {_type(data)}")
        for name in data:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(allowed)}"
                raise self.fail(f"{key}.{name}" if key else name, f"unknown key '{name}'", hint)
        return data

    def array(self, data: Any, key: str) -> list[Any]:
        if not isinstance(data, list):
            raise self.fail(key, f"expected an array of tables ([[{key}]]), got {_type(data)}")
        return data

    def integer(
        self, data: dict[str, Any], key: str, name: str, lo: int, hi: int, *, default: int | None = None
    ) -> int:
        if name not in data:
            if default is not None:
                return default
            raise self.fail(key, f"'{name}' is missing", f"add {name} = <{lo}..{hi}>")
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key}.{name}", f"expected a whole number {lo}..{hi}, got {_type(value)} {value!r}")
        if not lo <= value <= hi:
            raise self.fail(f"{key}.{name}", f"{value} is out of range", f"use {lo}..{hi}")
        return value

    def choice(self, data: dict[str, Any], key: str, name: str, choices: tuple[str, ...], default: str) -> str:
        value = data.get(name, default)
        if value not in choices:
            raise self.fail(f"{key}.{name}", f"unknown {name} {value!r}", f"choose {' | '.join(choices)}")
        return str(value)

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {_type(value)} {value!r}")
        return float(value)

    def target(self, data: dict[str, Any], key: str) -> Target:
        name = data.get("target")
        if not isinstance(name, str):
            raise self.fail(
                f"{key}.target",
                "'target' is missing" if name is None else "target must be a name",
                "name a parameter or an action, see `vj osc list`",
            )
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

    def range(self, data: dict[str, Any], key: str, target: Target) -> tuple[float, float] | None:
        if "range" not in data:
            return None
        value = data["range"]
        if not isinstance(value, list) or len(value) != 2:
            raise self.fail(f"{key}.range", f"expected two numbers [low, high], got {value!r}")
        lo, hi = (self.number(v, f"{key}.range") for v in value)
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
        return lo, hi

    def value(self, data: dict[str, Any], key: str, name: str, target: Target) -> Any:
        if name not in data:
            return None
        value = data[name]
        if target.param is not None:
            try:
                return target.param.check(value)
            except ParamError as e:
                raise self.fail(f"{key}.{name}", str(e)) from None
        if target.action is not None and target.action.arg == "none":
            raise self.fail(f"{key}.{name}", f"{target.name} takes no value", f"remove {name}")
        return value

    def led(self, data: dict[str, Any], key: str) -> tuple[int, int] | None:
        if "led" not in data:
            return None
        value = data["led"]
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 127 for v in value)
        ):
            raise self.fail(f"{key}.led", f"expected [on, off] values 0..127, got {value!r}")
        return int(value[0]), int(value[1])


def _type(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


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


def _cc(c: _Checker, data: Any, key: str, takeover_default: str) -> CcRoute:
    data = c.table(
        data,
        key,
        ("channel", "control", "target", "range", "mode", "bits", "step", "takeover", "value", "release", "led"),
    )
    channel = c.integer(data, key, "channel", 1, 16) - 1
    mode = c.choice(data, key, "mode", CC_MODES, "absolute")
    bits = data.get("bits", 7)
    if bits not in (7, 14):
        raise c.fail(f"{key}.bits", f"bits must be 7 or 14, got {bits!r}")
    if bits == 14 and mode != "absolute":
        raise c.fail(f"{key}.bits", "14-bit pairs are for absolute controls", 'remove bits or use mode = "absolute"')
    control = c.integer(data, key, "control", 0, 31 if bits == 14 else 127)
    target = c.target(data, key)
    spec = target.param
    route = CcRoute(channel, control, target, mode, bits=bits, led=c.led(data, key))
    if mode in BUTTON_MODES:
        value = c.value(data, key, "value", target)
        _button_target(c, key, target, mode, value)
        return replace(route, value=value, release=c.value(data, key, "release", target))
    if spec is None or spec.kind not in ("float", "int", "bool"):
        raise c.fail(
            f"{key}.target",
            f"a knob or fader cannot drive {target.name} ({target.kind})",
            "use a number or on/off parameter, or a button mode (trigger, toggle, hold)",
        )
    if mode in RELATIVE and spec.kind == "bool":
        raise c.fail(
            f"{key}.mode",
            f"{target.name} is on/off: a relative encoder cannot turn it",
            'use mode = "absolute" or "toggle"',
        )
    whole = (spec.lo, spec.hi) if spec.lo is not None and spec.hi is not None else (0.0, 1.0)
    rng = c.range(data, key, target) or whole
    step = c.number(data["step"], f"{key}.step") if "step" in data else (spec.span / 100 if spec.kind != "bool" else 0)
    takeover = c.choice(data, key, "takeover", TAKEOVERS, takeover_default)
    return replace(route, lo=float(rng[0]), hi=float(rng[1]), step=step, takeover=takeover)


def _note(c: _Checker, data: Any, key: str) -> NoteRoute:
    data = c.table(data, key, ("channel", "note", "target", "mode", "value", "release", "led"))
    channel = c.integer(data, key, "channel", 1, 16) - 1
    note = c.integer(data, key, "note", 0, 127)
    target = c.target(data, key)
    mode = c.choice(data, key, "mode", BUTTON_MODES, "trigger")
    value = c.value(data, key, "value", target)
    _button_target(c, key, target, mode, value)
    return NoteRoute(channel, note, target, mode, value, c.value(data, key, "release", target), c.led(data, key))


def _program(c: _Checker, data: Any, key: str) -> ProgramRoute:
    data = c.table(data, key, ("channel", "target"))
    channel = c.integer(data, key, "channel", 1, 16) - 1 if "channel" in data else None
    target = c.target(data, key)
    ok = (target.action is not None and target.action.arg != "none") or (target.param and target.param.kind == "int")
    if not ok:
        raise c.fail(
            f"{key}.target",
            f"program change gives a number; {target.name} cannot take one",
            'use target = "scene" or a whole-number parameter',
        )
    return ProgramRoute(channel, target)


def _osc(c: _Checker, data: Any, key: str) -> OscRoute:
    data = c.table(data, key, ("address", "target", "range"))
    address = data.get("address")
    if not isinstance(address, str) or not address.startswith("/") or " " in address:
        raise c.fail(f"{key}.address", f'expected an OSC address like "/1/fader1", got {address!r}')
    target = c.target(data, key)
    rng = c.range(data, key, target)
    return OscRoute(address, target, *(rng or (None, None)))


_SECTIONS: dict[str, tuple[str, Callable[..., Any]]] = {
    "midi.cc": ("cc", _cc),
    "midi.note": ("notes", _note),
    "midi.program": ("programs", _program),
    "osc.route": ("osc", _osc),
}


def parse_mapping(data: dict[str, Any], file: str, prefix: str = "") -> Mapping:
    """A mapping from parsed TOML; ``prefix`` is the key path of a mapping inside another file (a scene's)."""
    c = _Checker(file, prefix)
    c.table(data, "", ("midi", "osc"))
    midi = c.table(data.get("midi", {}), "midi", ("device", "takeover", "cc", "note", "program"))
    osc = c.table(data.get("osc", {}), "osc", ("route",))
    device = midi.get("device")
    if device is not None and (not isinstance(device, str) or not device.strip()):
        raise c.fail("midi.device", f"expected a port name (or part of one), got {device!r}")
    takeover = c.choice(midi, "midi", "takeover", TAKEOVERS, "jump")
    found: dict[str, list[Any]] = {}
    for section, (attr, parse) in _SECTIONS.items():
        group, name = section.split(".")
        entries = c.array((midi if group == "midi" else osc).get(name, []), section)
        extra = (takeover,) if attr == "cc" else ()
        found[attr] = [parse(c, entry, f"{section}[{i}]", *extra) for i, entry in enumerate(entries)]
    _no_duplicates(c, found)
    return Mapping(
        file=file,
        device=device,
        cc=tuple(found["cc"]),
        notes=tuple(found["notes"]),
        programs=tuple(found["programs"]),
        osc=tuple(found["osc"]),
        summary={k: len(v) for k, v in found.items()},
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

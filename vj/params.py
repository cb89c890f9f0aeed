"""Parameters as data: one spec table, one store that never holds a bad value.

Every knob of the engine is one ``ParamSpec`` row in ``PARAMS``. OSC addresses, MIDI targets, voice commands,
scene files, the HUD and the report all read this table, so adding a row adds the parameter everywhere.

The ``ParamStore`` validates on every write: wrong types and non-finite numbers are refused with a ``ParamError``,
numbers outside the range are clamped. Floats with ``smoothing`` glide toward their target (an exponential
approach with that time constant, in seconds) so a jump from a knob or a voice command never jerks the picture.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from vj.errors import ParamError, UnknownParam

Kind = Literal["float", "int", "bool", "string", "trigger"]

PROMPT_MAX = 300


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    kind: Kind
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    smoothing: float = 0.0  # seconds; 0 = jumps at once
    step: float = 0.0  # one nudge ("zoom in", an arrow key): how far it moves the target
    doc: str = ""
    empty: bool = False  # strings: whether "" is a value (it means "none")
    look: bool = False  # part of a scene's look: a scene that does not set it puts it back to its default

    def check(self, value: Any) -> Any:
        """``value`` made valid for this parameter (clamped into range), or ``ParamError``."""
        return _CHECKS[self.kind](self, value)

    @property
    def span(self) -> float:
        return (self.hi - self.lo) if self.lo is not None and self.hi is not None else 1.0

    def describe(self) -> str:
        """Type and range, as ``vj osc list`` and error messages print them."""
        if self.kind in ("float", "int"):
            return f"{self.kind} {_fmt(self.lo)}..{_fmt(self.hi)}"
        return {"bool": "bool 0|1", "string": "string", "trigger": "trigger (no argument)"}[self.kind]


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "zoom", "float", 0.15, -1.0, 1.0, 0.3, 0.1, "zoom rate: + flies in, - pulls out, 0 holds still", look=True
    ),
    ParamSpec("pan_x", "float", 0.0, -1.0, 1.0, 0.3, 0.1, "sideways drift: + moves the view right", look=True),
    ParamSpec("pan_y", "float", 0.0, -1.0, 1.0, 0.3, 0.1, "vertical drift: + moves the view up", look=True),
    ParamSpec("rotate", "float", 0.0, -1.0, 1.0, 0.3, 0.05, "rotation rate: + turns clockwise", look=True),
    ParamSpec("speed", "float", 1.0, 0.0, 4.0, 0.5, 0.25, "master speed of all motion", look=True),
    ParamSpec("strength", "float", 0.45, 0.0, 1.0, 0.2, 0.05, "how much each frame is re-imagined", look=True),
    ParamSpec("chaos", "float", 0.3, 0.0, 1.0, 0.3, 0.1, "turbulence and randomness", look=True),
    ParamSpec(
        "control_strength",
        "float",
        0.6,
        0.0,
        2.0,
        0.2,
        0.1,
        "how firmly a depth ControlNet (lcm --controlnet) holds the previous frame's forms (0: off, no cost)",
        look=True,
    ),
    ParamSpec("brightness", "float", 1.0, 0.0, 1.0, 0.1, 0.1, "output level, the master fader"),
    ParamSpec("blackout", "bool", False, doc="fade the output to black (and back)"),
    ParamSpec("freeze", "bool", False, doc="hold the picture: no motion, no new frames"),
    ParamSpec("record", "bool", False, doc="record the program output to a file (see --record)"),
    ParamSpec("ptt", "bool", False, doc="push-to-talk: the voice listens while this is on"),
    ParamSpec(
        "pause_gpu", "bool", False, doc="free the GPU: the model is closed and the CPU stand-in dreams until off"
    ),
    ParamSpec("prompt", "string", "a luminous dream of drifting nebulae", doc="what the dream is about"),
    ParamSpec("prompt_b", "string", "", doc="a second prompt to blend toward (empty: none)", empty=True, look=True),
    ParamSpec("prompt_blend", "float", 0.0, 0.0, 1.0, 0.3, 0.1, "fader from prompt (0) to prompt_b (1)", look=True),
    ParamSpec("seed", "int", 1, 0, 2**31 - 1, 0.0, 1, "the dream's random seed"),
    ParamSpec("spark", "trigger", doc="bloom a fresh image in from the centre"),
    ParamSpec("save", "trigger", doc="keep the current frame in the dream store"),
    ParamSpec(
        "spark_sensitivity", "float", 0.5, 0.0, 1.0, 0.0, 0.1, "how readily a stale dream sparks by itself (0: never)"
    ),
    ParamSpec("bpm", "float", 120.0, 20.0, 300.0, 0.5, 1, "tempo in beats per minute (tap, MIDI clock, Link set it)"),
    ParamSpec("tap", "trigger", doc="tap the tempo: three taps or more, the first on a downbeat"),
    ParamSpec("spark_frames", "int", 30, 4, 240, 0.0, 5, "generated frames a spark takes to bloom"),
    ParamSpec("spark_cooldown", "float", 2.0, 0.0, 60.0, 0.0, 0.5, "seconds before another spark may start"),
    *(
        ParamSpec(f"layer{n}_opacity", "float", 0.5, 0.0, 1.0, 0.1, 0.1, f"opacity of overlay layer {n}")
        for n in range(1, 5)
    ),
)


def _fmt(x: float | None) -> str:
    return "" if x is None else (str(int(x)) if float(x).is_integer() else f"{x:g}")


def _number(spec: ParamSpec, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError(f"{spec.name} needs a number ({spec.describe()}), got {type(value).__name__} {value!r:.40}")
    x = float(value)
    if not math.isfinite(x):
        raise ParamError(f"{spec.name} needs a finite number, got {x}")
    return x


def _clamp(spec: ParamSpec, x: float) -> float:
    lo = -math.inf if spec.lo is None else spec.lo
    hi = math.inf if spec.hi is None else spec.hi
    return min(hi, max(lo, x))


def _check_float(spec: ParamSpec, value: Any) -> float:
    return _clamp(spec, _number(spec, value))


def _check_int(spec: ParamSpec, value: Any) -> int:
    return round(_clamp(spec, _number(spec, value)))


_TRUE = {"1", "on", "true", "yes"}
_FALSE = {"0", "off", "false", "no"}


def _check_bool(spec: ParamSpec, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise ParamError(f"{spec.name} needs on/off, 1/0 or true/false, got {value!r:.40}")
    return _number(spec, value) >= 0.5


def _check_string(spec: ParamSpec, value: Any) -> str:
    if not isinstance(value, str):
        raise ParamError(f"{spec.name} needs text, got {type(value).__name__} {value!r:.40}")
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
    if not text and not spec.empty:
        raise ParamError(f"{spec.name} needs some text, got an empty string")
    return text[:PROMPT_MAX]


def _check_trigger(spec: ParamSpec, value: Any) -> None:
    return None


_CHECKS: dict[str, Callable[[ParamSpec, Any], Any]] = {
    "float": _check_float,
    "int": _check_int,
    "bool": _check_bool,
    "string": _check_string,
    "trigger": _check_trigger,
}


def unknown(name: str, known: Iterable[str], what: str = "parameter") -> UnknownParam:
    """The error for a misspelt name, with the nearest known names as a hint."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UnknownParam(f"unknown {what} '{name}'{hint}")


class ParamStore:
    """Current values and targets of every parameter. Owned and written by the loop thread alone."""

    def __init__(self, specs: Iterable[ParamSpec] = PARAMS) -> None:
        self.specs: dict[str, ParamSpec] = {s.name: s for s in specs}
        self._target: dict[str, Any] = {n: s.default for n, s in self.specs.items() if s.kind != "trigger"}
        self._value: dict[str, Any] = dict(self._target)
        self._fired: list[str] = []
        self._changed: dict[str, None] = {}
        # Timed glides (scene transitions): name -> [seconds, seconds so far, value at the start].
        self._glide: dict[str, list[float]] = {}

    def spec(self, name: str) -> ParamSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise unknown(name, self.specs) from None

    def __contains__(self, name: object) -> bool:
        return name in self.specs

    def __getitem__(self, name: str) -> Any:
        """The current (smoothed) value."""
        if name not in self._value:
            self.spec(name)  # raises UnknownParam for a misspelt name
            raise ParamError(f"{name} is a trigger and has no value")
        return self._value[name]

    def target(self, name: str) -> Any:
        self.spec(name)
        return self._target[name]

    def values(self) -> dict[str, Any]:
        """A copy of every current value: a snapshot another thread may keep."""
        return dict(self._value)

    def set(self, name: str, value: Any, glide: float | None = None) -> Any:
        """Set the target (validated, clamped); smoothed floats glide there, others jump. Returns the new target.

        ``glide`` (seconds, floats only) overrides the parameter's own smoothing for this change: the value eases
        from where it is to the target and arrives exactly ``glide`` seconds later (a scene transition).
        """
        spec = self.spec(name)
        if spec.kind == "trigger":
            self.fire(name)
            return None
        new = spec.check(value)
        if glide is not None and glide > 0 and spec.kind == "float":
            self._glide[name] = [glide, 0.0, self._value[name]]
        else:
            self._glide.pop(name, None)
        if new != self._target[name]:
            self._target[name] = new
            self._changed[name] = None
        if spec.kind != "float" or (spec.smoothing <= 0 and name not in self._glide):
            self._value[name] = new
        return new

    def jump(self, name: str, value: Any) -> Any:
        """Set the target and the value at once, skipping the glide."""
        new = self.set(name, value)
        if name in self._value:
            self._value[name] = self._target[name]
        return new

    def nudge(self, name: str, steps: float = 1.0) -> Any:
        """Move the target by ``steps`` times the parameter's step (numbers), or flip it (bools)."""
        spec = self.spec(name)
        if spec.kind == "bool":
            return self.set(name, not self._target[name])
        if spec.kind not in ("float", "int"):
            raise ParamError(f"{name} is {spec.describe()}: it cannot be nudged")
        return self.set(name, self._target[name] + _number(spec, steps) * (spec.step or spec.span / 20))

    def add(self, name: str, delta: float) -> Any:
        """Move a number's target by ``delta`` in its own units (relative controls: encoders, Resolume's +/-)."""
        spec = self.spec(name)
        if spec.kind not in ("float", "int"):
            raise ParamError(f"{name} is {spec.describe()}: it cannot be moved by an amount")
        return self.set(name, self._target[name] + _number(spec, delta))

    def scale(self, name: str, factor: float) -> Any:
        """Multiply a number's target by ``factor`` (Resolume's "*" form)."""
        spec = self.spec(name)
        if spec.kind not in ("float", "int"):
            raise ParamError(f"{name} is {spec.describe()}: it cannot be multiplied")
        x = self._target[name] * _number(spec, factor)
        return self.set(name, max(-1e300, min(1e300, x)))  # past any range: clamped there, not "infinite"

    def fire(self, name: str) -> None:
        spec = self.spec(name)
        if spec.kind != "trigger":
            raise ParamError(f"{name} is {spec.describe()}, not a trigger")
        self._fired.append(name)

    def take_fired(self) -> list[str]:
        fired, self._fired = self._fired, []
        return fired

    def take_changed(self) -> list[str]:
        """Names whose target changed since the last call, in order of first change."""
        changed, self._changed = list(self._changed), {}
        return changed

    def step(self, dt: float) -> None:
        """Advance every glide by ``dt`` seconds."""
        dt = max(dt, 0.0)
        for name, glide in list(self._glide.items()):
            glide[1] += dt
            u = min(1.0, glide[1] / glide[0])
            start, target = glide[2], self._target[name]
            self._value[name] = start + (target - start) * u * u * (3 - 2 * u)  # eased in and out
            if u >= 1.0:
                self._value[name] = target
                del self._glide[name]
        for name, spec in self.specs.items():
            if spec.kind != "float" or spec.smoothing <= 0 or name in self._glide:
                continue
            v, t = self._value[name], self._target[name]
            if v == t:
                continue
            v += (t - v) * (1.0 - math.exp(-dt / spec.smoothing))
            self._value[name] = t if abs(t - v) < 1e-3 * spec.span else v  # close enough to be invisible

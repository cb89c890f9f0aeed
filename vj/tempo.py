"""Tempo: one beat clock, owned by the loop, set by one source at a time.

The loop keeps a running beat count (``Tempo.beat``: 0.0 at the start, 1.0 a beat later, bars of four). It moves
at the ``bpm`` parameter, which glides to a new value like any smoothed parameter, so a tempo change never jumps.
What sets the tempo:

* tap (key T, ``/vj/tap``, a mapped pad): three taps or more, the first on a downbeat (a tap within
  ``TAP_BOUNCE_S`` of the last is a switch bouncing, not a tap);
* ``/vj/bpm 128`` or any other source setting ``bpm``;
* an external clock — MIDI clock in, Ableton Link — which posts ``TempoSync`` messages to the bus target
  ``tempo_sync``: the tempo, and where the beat was at a given time. The loop steers its beat toward that phase
  over a quarter of a second (never a jump, except when the clock starts the song over).

While MIDI clock is running (a sync in the last ``LIVE_S``), it owns the tempo: taps and manual tempo changes are
refused with a reason. Link is a shared session, so there a tap changes the session's tempo instead (the Link
source sees the new ``bpm`` and passes it on).

Beat-aware control reads ``beat``: scene switches quantised to the next beat or bar (``next_boundary``), LFOs
(``wave``), sparks on the downbeat every N bars (``bars_crossed``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import median
from typing import Any, Literal

BEATS_PER_BAR = 4
LIVE_S = 1.0  # an external clock that has not spoken for this long has stopped leading
STEER_S = 0.25  # phase errors are steered out over about this long
STEER_MIN = 0.2  # beats a second: the tail of a correction does not crawl
TAP_GAP_S = 3.0  # a pause longer than this (20 BPM) ends a tap sequence: the next tap starts a new one
TAP_BOUNCE_S = 0.05  # taps closer than this are one press bouncing (1,200 BPM): the later one is ignored
TAP_MIN = 3  # taps before the tempo follows them
TAP_KEEP = 8  # the last intervals that count: their median, so from the fourth tap on one flub does not
BPM_RANGE = (20.0, 300.0)  # the bpm parameter's range: taps outside it are refused, not clamped

Quantize = Literal["none", "beat", "bar"]
QUANTIZE: tuple[str, ...] = ("none", "beat", "bar")
Shape = Literal["sine", "triangle", "saw", "square", "random"]
SHAPES: tuple[str, ...] = ("sine", "triangle", "saw", "square", "random")


@dataclass(frozen=True, slots=True)
class TempoSync:
    """What an external clock says: at ``at`` (``time.perf_counter()``) the beat count was ``beat``.

    ``beat`` None: the tempo only (a clock that has not told where the bar starts). ``running`` False: the clock
    stopped (MIDI stop); the beat holds still until it starts again. ``restart``: the song starts over (MIDI start,
    song position): the beat is set, not steered."""

    source: str
    bpm: float
    beat: float | None = None
    at: float = 0.0
    peers: int = 0
    running: bool = True
    restart: bool = False


def beats_per_second(bpm: float) -> float:
    return bpm / 60.0


class TapTempo:
    """Tap intervals into a tempo: the median of the last ``TAP_KEEP`` intervals."""

    def __init__(self) -> None:
        self.taps: list[float] = []  # the last TAP_KEEP + 1 taps of the sequence
        self.count = 0  # taps in the current sequence, all of them

    def tap(self, t: float) -> float | None:
        """A tap at time ``t``; the tempo once there are ``TAP_MIN`` taps in a sequence, else None. A bounce (a tap
        right after the last) is dropped; a tempo outside ``BPM_RANGE`` raises ``ValueError``, saying why."""
        if self.taps and 0 <= t - self.taps[-1] < TAP_BOUNCE_S:
            return None
        if self.taps and not 0 < t - self.taps[-1] <= TAP_GAP_S:
            self.taps, self.count = [], 0
        self.taps.append(t)
        self.taps = self.taps[-(TAP_KEEP + 1) :]
        self.count += 1
        if len(self.taps) < TAP_MIN:
            return None
        intervals = [b - a for a, b in zip(self.taps, self.taps[1:], strict=False)]
        bpm = 60.0 / median(intervals)
        if not BPM_RANGE[0] <= bpm <= BPM_RANGE[1]:
            self.taps, self.count = [t], 1  # this tap starts the next try
            raise ValueError(f"taps {median(intervals):.2f} s apart make {bpm:.0f} BPM, outside 20..300")
        return bpm

    def recent(self, t: float) -> bool:
        """Whether a tap sequence is under way at time ``t``."""
        return bool(self.taps) and t - self.taps[-1] <= TAP_GAP_S


class Tempo:
    """The loop's beat clock. Only the loop thread calls it."""

    def __init__(self, bpm: float = 120.0) -> None:
        self.beat = 0.0
        self.bpm = bpm
        self.source = "default"
        self.peers = 0
        self.running = True
        self.taps = TapTempo()
        self._error = 0.0  # phase error still to steer out, in beats
        # Where a clock or the taps put the beat now: (beat, wrap period or 0, set rather than steer). Taken after
        # this frame's move, since the beat before it is the last frame's and "now" is this frame's.
        self._aim: tuple[float, float, bool] | None = None
        self._last_sync: dict[str, float] = {}  # source -> loop time of its last sync
        self._tap_origin: float | None = None  # the beat of the first tap in the sequence
        self.syncs = 0

    # -- the loop's frame ------------------------------------------------------------------------------------------
    def advance(self, dt: float, bpm: float) -> float:
        """Move on by ``dt`` seconds at ``bpm`` (the parameter's gliding value); the beat before the move."""
        before = self.beat
        self.bpm = bpm
        if not self.running:
            return before
        step = beats_per_second(bpm) * dt
        if self._error:
            # A share of the error each frame, and at least STEER_MIN beats a second, so it ends, exactly.
            size = min(abs(self._error), max(abs(self._error) * dt / STEER_S, STEER_MIN * dt))
            take = math.copysign(size, self._error)
            # Steering never runs the beat backwards: at worst it holds still for a moment.
            take = max(take, -step)
            self._error -= take
            step += take
        self.beat += step
        if self._aim is not None:
            there, period, restart = self._aim
            self._aim = None
            if restart:
                self.beat, self._error = there, 0.0
            else:
                self._error = _wrapped(there - self.beat, period) if period else there - self.beat
        return before

    # -- who sets it -----------------------------------------------------------------------------------------------
    def leader(self, now: float) -> str | None:
        """The external clock leading now (a recent sync), or None."""
        live = [s for s, t in self._last_sync.items() if now - t <= LIVE_S]
        return live[0] if live else None

    def sync(self, s: TempoSync, now: float, real_now: float) -> None:
        """Follow an external clock: its phase, converted from its time ``s.at`` to now (both on the real clock)."""
        self._last_sync[s.source] = now
        self.source, self.peers, self.syncs = s.source, s.peers, self.syncs + 1
        if not s.running:
            self.running = False
            self._error, self._aim = 0.0, None
            return
        self.running = True
        if s.beat is None:
            return
        there = s.beat + beats_per_second(s.bpm) * (real_now - s.at)
        self._aim = (there, BEATS_PER_BAR if s.source == "link" else 1, s.restart)

    def tap(self, t: float) -> float | None:
        """A tap at real time ``t`` (the loop's beat is now). The new tempo once the taps agree, else None; the
        taps also set the phase: the first of the sequence is a downbeat, each tap a beat."""
        try:
            bpm = self.taps.tap(t)
        finally:
            if (self.taps.count == 1 and self.taps.taps[-1] == t) or self._tap_origin is None:  # a sequence starts
                self._tap_origin = float(math.ceil(self.beat / BEATS_PER_BAR - 0.5) * BEATS_PER_BAR)
        if bpm is None:
            return None
        self.source = "tap"
        self._aim = (self._tap_origin + (self.taps.count - 1), 0.0, False)  # steered to, not jumped to
        return bpm

    # -- what beat-aware control reads -----------------------------------------------------------------------------
    @property
    def bar(self) -> int:
        return math.floor(self.beat / BEATS_PER_BAR)

    @property
    def phase(self) -> float:
        """Where in the bar, in beats: 0.0 .. 3.999."""
        return self.beat % BEATS_PER_BAR

    def next_boundary(self, quantize: str) -> float:
        """The beat count of the next beat or bar (now, if exactly on one)."""
        unit = BEATS_PER_BAR if quantize == "bar" else 1
        return math.ceil(self.beat / unit - 1e-9) * unit

    def report(self) -> dict[str, Any]:
        return {
            "bpm": round(self.bpm, 2),
            "source": self.source,
            "beat": round(self.beat, 3),
            "bar": self.bar + 1,  # counted from 1, as musicians do (and the HUD)
            "peers": self.peers,
            "running": self.running,
        }


def _wrapped(error: float, period: float) -> float:
    """``error`` moved by whole periods into [-period/2, period/2): the nearest way to the same phase."""
    return (error + period / 2) % period - period / 2


def bars_crossed(before: float, after: float, every: int) -> bool:
    """Whether the downbeat of bar 0, every, 2 * every... lies in (before, after]."""
    if every <= 0 or after <= before:
        return False
    span = BEATS_PER_BAR * every
    return math.floor(after / span) > math.floor(before / span)


def wave(shape: str, phase: float, seed: int = 0) -> float:
    """An LFO's value at ``phase`` (cycles, any real): -1..1. ``random`` holds one value per cycle."""
    x = phase % 1.0
    if shape == "sine":
        return math.sin(2 * math.pi * x)
    if shape == "triangle":
        return 4 * x if x < 0.25 else (2 - 4 * x if x < 0.75 else 4 * x - 4)  # in step with sine
    if shape == "saw":
        return 2 * x - 1
    if shape == "square":
        return 1.0 if x < 0.5 else -1.0
    if shape == "random":
        return random.Random(hash((seed, math.floor(phase)))).uniform(-1, 1)
    raise ValueError(f"unknown LFO shape {shape!r}")

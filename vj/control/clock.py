"""MIDI clock: follow a drum machine's or a DAW's tempo and beat (``MidiClockIn``), or lead others (``MidiClockOut``).

MIDI clock is 24 ticks (0xF8) per beat plus transport: start (0xFA, the song from the top), continue (0xFB), stop
(0xFC) and song position (0xF2, in sixteenths). ``ClockFollower`` knows nothing of ports: fed the bytes with their
times, it fits a line through the last two beats of ticks (least squares: the tempo is its slope, and each beat's
time comes off the line, so one late tick moves neither) and says, once a beat, where the beat was and when —
``TempoSync`` messages for the loop, which steers its own beat toward them.

Software clocks on busy machines stall. So ticks sent late in a burst are left out of the fit; a beat whose fit
lands far from where the beats before it said (the sender or the MIDI system was starved) is not posted, until
three fits in a row agree on a new tempo or phase; and the tempo posted is the median of the last three beats.

Tick times come from the MIDI system's own timestamps (rtmidi's delta times), not from when the thread got round to
reading them: a busy machine delays the reading, not the timestamps. ``Timeline`` ties those timestamps to
``time.perf_counter()``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Sequence
from itertools import pairwise
from statistics import median
from typing import Any

from vj.control.bus import ControlBus
from vj.control.midi import UNREACHABLE_S, PortLister, match_port, rtmidi_api, use_backend
from vj.control.midi_port import alsa_quiet
from vj.control.source import Source
from vj.errors import DeviceError
from vj.tempo import TempoSync
from vj.threads import raise_priority

log = logging.getLogger(__name__)

PPQN = 24  # MIDI clock ticks per beat (per quarter note)
FIT_TICKS = 2 * PPQN  # the tempo is fitted over the last two beats
MIN_FIT = PPQN // 2  # ticks before the fit is trusted enough to post a tempo
GAP_S = 0.5  # a pause this long breaks the line (the clock stopped; it may come back at another tempo)...
GAP_TICKS = 4  # ... or, at a very slow tempo, one of this many ticks
TRIM_ROUNDS = 3  # fit, drop the ticks far off the line, fit again
PHASE_TOL = 0.1  # beats: a beat this far from where the last one posted said it would be is not trusted...
TEMPO_TOL = 0.015  # ... unless the last SETTLE_BEATS fits agree with each other, at tempos this close
SETTLE_BEATS = 3
RECENT_BEATS = 3  # the tempo posted is the median of the last beats' fits: one fit a little off moves nothing
OUTLIER_MIN_S = 0.003  # ticks this close to the line always count (JACK delivers MIDI in periods of a few ms)
CLOCK, START, CONTINUE, STOP, SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
SOURCE = "midi-clock"
POLL_S = 0.002
RECONNECT_S = 0.25

DRIFT = 2e-4  # how fast (s/s) the MIDI system's clock may drift from perf_counter; 200 ppm is far beyond a real one


class ClockFollower:
    """MIDI real-time messages in, ``TempoSync`` out. Times are in ``time.perf_counter()`` seconds.

    The song position is counted in ticks: start sets the next tick to 0, song position to 6 per sixteenth; each
    tick while running moves it on. A clock already running when we join (no start seen) counts from its first tick.
    """

    def __init__(self, source: str = SOURCE) -> None:
        self.source = source
        self.running: bool | None = None  # None: no transport seen yet; the ticks count as running
        self.next_pos = 0  # the song position, in ticks, of the next tick
        self.restart = False  # a start or song position waits for the next tick to be posted
        self.resumed = False  # a continue: the next beat is posted as it is
        self.window: deque[tuple[int, float]] = deque(maxlen=FIT_TICKS)
        self.ticks = 0
        self.syncs = 0
        self.bpm: float | None = None  # the tempo last posted
        self.jitter_s: float | None = None  # std dev of tick times around the fitted line
        self.glitches = 0  # beats not posted: their fit agreed with nothing before it
        self._accepted: tuple[float, float, float] | None = None  # the last beat posted: beat, time, tempo
        self._fitted: deque[tuple[float, float, float]] = deque(maxlen=SETTLE_BEATS)  # the last beats fitted
        self._recent: deque[float] = deque(maxlen=RECENT_BEATS)  # the tempos of the last beats posted
        self.beat: float | None = None  # the song position of the last tick, in beats

    def feed(self, data: Sequence[int], t: float) -> list[TempoSync]:
        """One MIDI message received at ``t``; what to post (often nothing)."""
        if not data:
            return []
        status = data[0]
        if status == CLOCK:
            return self._tick(t)
        if status == START:
            self.running, self.next_pos, self.restart = True, 0, True
        elif status == CONTINUE:
            self.running, self.resumed = True, True
        elif status == STOP:
            was = self.running
            self.running = False
            if was is not False and self.bpm is not None:
                self.syncs += 1
                return [TempoSync(self.source, self.bpm, running=False, at=t)]
        elif status == SONG_POSITION and len(data) >= 3:
            self.next_pos = ((data[2] << 7) | data[1]) * (PPQN // 4)
            self.restart = True
        return []

    def _tick(self, t: float) -> list[TempoSync]:
        self.ticks += 1
        if self.window:
            gap = t - self.window[-1][1]
            if gap < 0 or gap > max(GAP_S, GAP_TICKS * 60 / (self.bpm or 60.0) / PPQN):
                self.window.clear()  # the clock paused: what follows may be another tempo
                self._accepted = None
                self._fitted.clear()
                self._recent.clear()
        self.window.append((self.ticks, t))
        if self.running is False:
            if self.ticks % PPQN == 0 and (fit := self._fit()) is not None:
                self.bpm = fit[0]  # a stopped clock still ticks: the tempo is kept known, the song position stays
            return []
        pos = self.next_pos
        self.next_pos += 1
        self.beat = pos / PPQN
        if not (self.restart or pos % PPQN == 0):
            return []
        fit = self._fit()
        if fit is None:
            return []
        bpm, at = fit
        beat = pos / PPQN
        restart, self.restart = self.restart, False
        resumed, self.resumed = self.resumed, False  # after a pause, the beat before says nothing of this one
        self._fitted.append((beat, at, bpm))
        fitted = list(self._fitted)
        if restart or resumed or _agrees(self._accepted, beat, at, bpm):
            if len(self.window) == FIT_TICKS:  # a shorter window's tempo is rough: it is posted, not kept
                self._recent.append(bpm)
        elif len(fitted) == SETTLE_BEATS and all(
            _agrees(a, b[0], b[1], b[2], same_tempo=True) for a, b in pairwise(fitted)
        ):
            self._recent.clear()  # the clock settled on another tempo or phase: the tempos before it are gone
            self._recent.extend(f[2] for f in fitted)
        else:
            # A fit that agrees with nothing before it: the clock or the MIDI system was starved for a moment.
            # Nothing is posted; the loop's beat runs on by itself meanwhile.
            self.glitches += 1
            return []
        self._accepted = (beat, at, bpm)
        self.bpm = median(self._recent) if self._recent else bpm  # one beat's fit a little off moves nothing
        self.syncs += 1
        return [TempoSync(self.source, self.bpm, beat=beat, at=at, restart=restart)]

    def _fit(self) -> tuple[float, float] | None:
        """The tempo and the time of the last tick, off a line through the window's ticks.

        A sender on a busy machine stalls, then sends the ticks it owes in a burst: those ticks' times say nothing
        of the beat, so a tick followed at once by the next (a quarter of the usual interval) does not count.
        Then a least-squares line, fitted again without the ticks far off it (one late read, a glitch).
        """
        n = len(self.window)
        if n < MIN_FIT:
            return None
        i0, t0 = self.window[0]
        xs = [float(i - i0) for i, _ in self.window]
        ys = [t - t0 for _, t in self.window]  # relative: perf_counter's magnitude would eat the precision
        gaps = [b - a for a, b in pairwise(ys)]  # each tick's gap to the next
        usual = median(gaps)
        pts = [(x, y) for x, y, gap in zip(xs, ys, [*gaps, usual], strict=True) if gap >= usual / 4]
        line = _line(pts)
        if line is None:
            return None
        slope, offset = line
        for _ in range(TRIM_ROUNDS):
            off_line = [abs(y - offset - slope * x) for x, y in pts]
            near = max(OUTLIER_MIN_S, 4 * 1.4826 * median(off_line))  # 4 sigma, sigma from the median deviation
            kept = [p for p, d in zip(pts, off_line, strict=True) if d <= near]
            if len(kept) == len(pts) or len(kept) < MIN_FIT or (line := _line(kept)) is None:
                break
            pts, (slope, offset) = kept, line
        residuals = [y - offset - slope * x for x, y in pts]
        self.jitter_s = math.sqrt(sum(r * r for r in residuals) / max(1, len(pts) - 2))
        if slope <= 0:
            return None
        return 60.0 / (slope * PPQN), t0 + offset + slope * xs[-1]


def _agrees(
    before: tuple[float, float, float] | None, beat: float, at: float, bpm: float, same_tempo: bool = False
) -> bool:
    """Whether beat ``beat`` at ``at`` is where ``before`` (a beat, its time, the tempo then) puts it."""
    if before is None:
        return False
    beat0, at0, bpm0 = before
    off = (at - (at0 + (beat - beat0) * 60 / bpm0)) * bpm / 60
    return abs(off) <= PHASE_TOL and (not same_tempo or abs(bpm / bpm0 - 1) <= TEMPO_TOL)


def _line(pts: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares slope and offset through ``pts``, or None when they do not make a line."""
    k = len(pts)
    if k < 2:
        return None
    mx, my = sum(x for x, _ in pts) / k, sum(y for _, y in pts) / k
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx <= 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return slope, my - slope * mx


class Timeline:
    """rtmidi's delta times laid end to end, in ``time.perf_counter()`` terms.

    A message is never read before it arrived, so the smallest (read time - timestamp) seen is the offset between
    the two clocks. It may only creep up slowly (``DRIFT``), so one late read does not move the timeline, while a
    MIDI clock that runs a little slow against ours is still followed.
    """

    def __init__(self) -> None:
        self.t: float | None = None  # the last message's time, on the MIDI system's clock
        self.offset = 0.0

    def place(self, delta: float, read_at: float) -> float:
        if self.t is None:
            self.t, self.offset = 0.0, read_at
        else:
            self.t += delta
            self.offset = min(self.offset + DRIFT * delta, read_at - self.t)
        return self.t + self.offset


def _rtmidi_api(backend: str) -> int:
    api = rtmidi_api(backend)
    if api is None:
        raise DeviceError(f"MIDI clock needs an rtmidi backend (for its timestamps), not {backend}")
    return api


class MidiClockIn(Source):
    """Follow MIDI clock from an input port: tempo, beat and transport, posted to the bus as ``tempo_sync``.

    One thread polls the port (never rtmidi's callback: see ``vj.control.midi_port``), and reopens it when the
    device vanishes and comes back.
    """

    name = "clock_in"

    def __init__(self, query: str, *, backend: str | None = None) -> None:
        super().__init__()
        self.query = query
        self.backend = use_backend(backend)
        self.api = _rtmidi_api(self.backend)
        self.follower = ClockFollower()
        self.port_name: str | None = None
        self.connects = 0
        self._ports = PortLister(self.backend, f"MIDI clock port '{query}'")
        self._in: Any = None
        self._timeline = Timeline()
        self._bus: ControlBus | None = None
        self.connected_at_end: bool | None = None

    def start(self, bus: ControlBus) -> None:
        self._bus = bus
        self._check()
        if self._in is None and not self._ports.away:
            log.warning(
                "MIDI clock port '%s' not found; waiting for it (ports now: %s)",
                self.query,
                ", ".join(self._ports.names()) or "none",
            )
        self.spawn(self._run, "vj-clock-in")

    def stop(self) -> None:
        super().stop()
        self.connected_at_end = self._in is not None
        self._close()
        self._ports.close()

    def _run(self) -> None:
        next_check = time.monotonic() + RECONNECT_S
        while not self.stopping:
            port = self._in
            got = 0
            if port is not None:
                while got < 1000:  # a burst in one go, then a look at the port
                    event = port.get_message()
                    if event is None:
                        break
                    got += 1
                    self._handle(event[0], event[1], time.perf_counter())
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + RECONNECT_S
                self._check()
            if not got:
                self._stopping.wait(POLL_S)

    def _handle(self, data: list[int], delta: float, read_at: float) -> None:
        t = self._timeline.place(delta, read_at)
        bus = self._bus
        for sync in self.follower.feed(data, t):
            log.debug("MIDI clock: %s (jitter %.2f ms)", sync, (self.follower.jitter_s or 0.0) * 1000)
            if bus is not None:
                bus.post(SOURCE, "tempo_sync", sync, "set")

    def _check(self) -> None:
        """Open the port if it has appeared; close it if it has vanished."""
        import rtmidi

        names = self._ports.names()
        if self._in is not None and self.port_name not in names:
            log.warning("MIDI clock port '%s' went away; waiting for it to come back", self.port_name)
            self._close()
        if self._in is not None:
            return
        name = match_port(self.query, names)
        if name is None:
            return
        port = rtmidi.MidiIn(self.api, name=f"vj-clock-{os.getpid()}", queue_size_limit=4096)
        try:
            port.ignore_types(sysex=True, timing=False, active_sense=True)
            index = port.get_ports().index(name)
            port.open_port(index, name="clock")
        except Exception as e:  # noqa: BLE001 - a port can vanish between listing and opening
            port.delete()
            log.warning("cannot open MIDI clock port '%s' (%s); trying again", name, e)
            return
        self._in, self.port_name = port, name
        self._timeline = Timeline()  # a new port's first delta time is zero: a new timeline
        self.connects += 1
        log.info("MIDI clock in: %s", name)

    def _close(self) -> None:
        port, self._in = self._in, None
        if port is not None:
            try:
                port.close_port()
                port.delete()
            except Exception:
                log.debug("closing the MIDI clock port failed", exc_info=True)

    def status(self) -> str:
        f = self.follower
        if self._in is None:
            return f"CLOCK waiting for '{self.query}'"
        if f.bpm is None:
            return f"CLOCK {self.port_name}: no clock yet"
        state = {True: "running", False: "stopped", None: "running"}[f.running]
        return f"CLOCK {self.port_name}: {f.bpm:.1f} BPM {state}"

    def report(self) -> dict[str, Any]:
        f = self.follower
        return {
            "port": self.port_name,
            "connected": self._in is not None if self.connected_at_end is None else self.connected_at_end,
            "connects": self.connects,
            "ticks": f.ticks,
            "bpm": round(f.bpm, 3) if f.bpm is not None else None,
            "jitter_ms": round(f.jitter_s * 1000, 3) if f.jitter_s is not None else None,
            "running": bool(f.running) or (f.running is None and f.ticks > 0),
            "syncs": f.syncs,
            "glitches": f.glitches,
            "backend": self.backend,
        }


class MidiClockOut(Source):
    """Send MIDI clock at vj's tempo: start, 24 ticks a beat, stop, on a virtual port (or an existing output).

    Ticks are scheduled against an absolute timeline — each one at the previous one's time plus a tick at the
    current tempo, however late the thread woke — so a busy machine makes ticks jitter but never drift.
    """

    name = "clock_out"
    listens = frozenset({"changed"})
    LATE_S = 0.25  # woken this late (a stalled machine), the timeline starts over rather than send a burst

    def __init__(self, port_name: str, *, backend: str | None = None, bpm: float = 120.0) -> None:
        super().__init__()
        self.query = port_name
        self.backend = use_backend(backend)
        self.api = _rtmidi_api(self.backend)
        self.bpm = bpm
        self.port_name: str | None = None
        self.virtual = False
        self.ticks_sent = 0
        self.restarts_late = 0
        self.priority = "normal"  # what its thread got: realtime, nice -10 or normal (see vj.threads)
        self.problem: str | None = None  # why the port is not open
        self.started_at: float | None = None  # when the first tick was due (perf_counter): beat 0 of our clock
        self._out: Any = None

    def start(self, bus: ControlBus) -> None:
        if not self._open():
            log.warning("MIDI clock out '%s': %s (trying again every %g s)", self.query, self.problem, UNREACHABLE_S)
        self.spawn(self._run, "vj-clock-out")

    def _open(self) -> bool:
        """Open the port: an existing output whose name holds the query, else a new virtual one."""
        import rtmidi

        try:
            with alsa_quiet():
                out = rtmidi.MidiOut(self.api, name=f"vj-clock-out-{os.getpid()}")
        except Exception as e:  # noqa: BLE001 - rtmidi reports a missing MIDI system in many ways
            self.problem = f"cannot reach the MIDI system ({e})"
            return False
        try:
            existing = match_port(self.query, list(out.get_ports()))
            if existing is not None:
                out.open_port(out.get_ports().index(existing), name="clock")
                log.info("MIDI clock out: to the existing port %s", existing)
                self.port_name = existing
            else:
                out.open_virtual_port(self.query)
                log.info("MIDI clock out: on a new virtual port %s", self.query)
                self.port_name, self.virtual = self.query, True
        except Exception as e:  # noqa: BLE001
            out.delete()
            self.problem = f"cannot open the port ({e})"
            return False
        self.problem = None
        self._out = out
        return True

    def stop(self) -> None:
        super().stop()
        out, self._out = self._out, None
        if out is not None:
            try:
                out.send_message([STOP])
                out.close_port()
                out.delete()
            except Exception:
                log.debug("closing the MIDI clock output failed", exc_info=True)

    def on_changed(self, values: dict[str, Any]) -> None:
        bpm = values.get("bpm")
        if isinstance(bpm, (int, float)) and bpm > 0:
            self.bpm = float(bpm)

    def _run(self) -> None:
        self.priority = raise_priority()
        while self._out is None:
            if self._stopping.wait(UNREACHABLE_S):
                return
            if self._open():
                log.warning("MIDI clock out: the port is open now")
        out = self._out
        self.wait_mail(0.5)  # the loop's first mail, sent once every source has started, holds the tempo
        self.deliver()
        out.send_message([START])
        next_tick = self.started_at = time.perf_counter()
        while not self.stopping:
            now = time.perf_counter()
            if now - next_tick > self.LATE_S:
                self.restarts_late += 1
                next_tick = now
            elif next_tick > now:
                if self._stopping.wait(next_tick - now):
                    break
                continue
            out.send_message([CLOCK])
            self.ticks_sent += 1
            self.deliver()
            next_tick += 60.0 / (self.bpm * PPQN)

    def status(self) -> str:
        if self._out is None:
            return f"CLOCK OUT '{self.query}' not open: {self.problem}"
        return f"CLOCK OUT {self.port_name}: {self.bpm:.1f} BPM"

    def report(self) -> dict[str, Any]:
        return {
            "port": self.port_name,
            "virtual": self.virtual,
            "ticks_sent": self.ticks_sent,
            "bpm": round(self.bpm, 3),
            "late_restarts": self.restarts_late,
            "priority": self.priority,
        }

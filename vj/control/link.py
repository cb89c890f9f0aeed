"""Ableton Link: join the tempo and beat shared by the Link apps on the network (DAWs, phones, other VJs).

Link is a session of equals: no one leads. vj follows the session's tempo and bar phase (posted to the bus as
``tempo_sync`` 20 times a second), and when the tempo is set in vj — a tap, ``/vj/bpm``, a knob — vj sets the
session's tempo, so every peer follows.

Link's clock is its own (``Clock.micros()``); a beat read off it is tied to ``time.perf_counter()`` by reading
both clocks at the same moment, every time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from vj.control.bus import ControlBus
from vj.control.source import Source
from vj.errors import DeviceError
from vj.params import PARAMS
from vj.tempo import BEATS_PER_BAR, TempoSync

log = logging.getLogger(__name__)

SOURCE = "link"
POLL_S = 0.05
SAME_BPM = 0.01  # a tempo this close to the session's is the session's own, echoed back by the loop
STALE_S = 0.5  # after vj sets the session's tempo, the old one coming back this soon is a sync that was on its way
_BPM = next(s for s in PARAMS if s.name == "bpm")


class LinkSource(Source):
    name = "link"
    listens = frozenset({"changed"})

    def __init__(self, bpm: float = 120.0) -> None:
        super().__init__()
        try:
            import link
        except ImportError:
            raise DeviceError("Ableton Link needs LinkPython-extern: pip install 'vj[link]'") from None
        self._module: Any = link
        self._link: Any = None
        self.start_bpm = bpm
        self.bpm: float | None = None  # the session's tempo, as Link last reported it
        self.beat: float | None = None
        self.peers = 0
        self.syncs = 0
        self.tempo_sets = 0
        self._told = False  # the loop's first mail (every value, vj's start state) has come
        self._replaced: tuple[float, float] | None = None  # the tempo vj replaced, and until when it may echo
        self._bus: ControlBus | None = None

    def start(self, bus: ControlBus) -> None:
        self._bus = bus
        self._link = self._module.Link(self.start_bpm)
        self._link.enabled = True
        log.info("Ableton Link: joined (a session of its own until peers are found)")
        self.spawn(self._run, "vj-link")

    def stop(self) -> None:
        super().stop()
        if self._link is not None:
            self._link.enabled = False  # leave the session now, not whenever the object is collected
            self._link = None

    def _run(self) -> None:
        next_poll = 0.0
        while not self.stopping:
            self.deliver()
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + POLL_S
                self._poll()
            self.wait_mail(max(0.0, next_poll - time.monotonic()))

    def _poll(self) -> None:
        lk = self._link
        if lk is None:
            return
        state = lk.captureAppSessionState()
        clock = lk.clock()
        before = time.perf_counter()
        micros = clock.micros()
        at = (before + time.perf_counter()) / 2  # the moment Link's clock read ``micros``, on ours
        bpm = float(state.tempo())
        beat = float(state.beatAtTime(micros, BEATS_PER_BAR))
        peers = int(lk.numPeers())
        if peers != self.peers:
            log.info("Ableton Link: %d peer%s", peers, "" if peers == 1 else "s")
        self.bpm, self.beat, self.peers = bpm, beat, peers
        self.syncs += 1
        if self._bus is not None:
            self._bus.post(SOURCE, "tempo_sync", TempoSync(SOURCE, bpm, beat=beat, at=at, peers=peers), "set")

    def on_changed(self, values: dict[str, Any]) -> None:
        bpm = values.get("bpm")
        first, self._told = not self._told, True
        lk = self._link
        if first or not isinstance(bpm, (int, float)) or lk is None or self.bpm is None:
            return  # joining a session never changes its tempo: vj's tempo at the start is not a tempo set
        # The loop echoes every tempo we post (clamped to vj's range): only a tempo set in vj goes to the session.
        if abs(bpm - _BPM.check(self.bpm)) <= SAME_BPM:
            return
        replaced = self._replaced
        if replaced is not None and abs(bpm - replaced[0]) <= SAME_BPM and time.monotonic() < replaced[1]:
            return
        state = lk.captureAppSessionState()
        state.setTempo(float(bpm), lk.clock().micros())
        lk.commitAppSessionState(state)
        self.tempo_sets += 1
        self._replaced = (_BPM.check(self.bpm), time.monotonic() + STALE_S)
        self.bpm = float(bpm)
        log.info("Ableton Link: session tempo set to %.2f", bpm)

    def status(self) -> str:
        if self.bpm is None:
            return "LINK joining"
        return f"LINK {self.bpm:.1f} BPM, {self.peers} peer{'' if self.peers == 1 else 's'}"

    def report(self) -> dict[str, Any]:
        return {
            "bpm": round(self.bpm, 3) if self.bpm is not None else None,
            "beat": round(self.beat, 3) if self.beat is not None else None,
            "peers": self.peers,
            "syncs": self.syncs,
            "tempo_sets": self.tempo_sets,
        }

"""The control bus: every outside voice (keys, OSC, MIDI, speech, scenes) posts here; the loop drains it.

``post()`` is safe from any thread and never blocks for long. Events are coalesced as they arrive, per target:
a newer absolute value replaces an older one (the newest wins), relative moves add up, two toggles cancel, and a
trigger fires once per frame however often it was hit. So the loop applies at most a handful of events per
target per frame, and a flood of messages costs bounded memory. ``drain()`` hands the loop what arrived since the
last frame, in the order the targets were last touched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Literal

log = logging.getLogger(__name__)

# set: absolute value (with ``glide`` seconds: ease there, a scene transition).  jump: absolute, skipping any
# smoothing.  add: relative, in the parameter's units.  nudge: relative, in the parameter's steps.
# scale: multiply (Resolume's "*").  toggle: flip a bool.  fire: a trigger or an action without a value.
Op = Literal["set", "jump", "add", "nudge", "scale", "toggle", "fire"]

# Sources the report always lists, even at zero.
SOURCES = ("keys", "osc", "midi", "voice", "scene")

_MAX_PER_TARGET = 16  # alternating relative ops on one target in one frame; beyond this the oldest is dropped
_MAX_LOGGED = 20  # distinct kinds of reject logged per source; a fuzzer or a broken sender must not flood the log


@dataclass(frozen=True, slots=True)
class Event:
    source: str
    target: str
    value: Any = None
    op: Op = "set"
    glide: float | None = None
    posted: float = field(default_factory=time.monotonic)

    def describe(self) -> str:
        if self.op in ("set", "jump"):
            return f"{self.source}: {self.target} = {_short(self.value)}"
        if self.op in ("add", "nudge"):
            return f"{self.source}: {self.target} {self.value:+g}{'' if self.op == 'add' else ' step'}"
        if self.op == "scale":
            return f"{self.source}: {self.target} x{self.value:g}"
        return f"{self.source}: {self.target} ({self.op})"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _merge(queue: list[Event], event: Event) -> None:
    """Fold ``event`` into the events already waiting for the same target."""
    last = queue[-1] if queue else None
    if event.op in ("set", "jump"):
        queue[:] = [event]
    elif last is not None and last.op == event.op and event.op in ("add", "nudge"):
        queue[-1] = replace(event, value=last.value + event.value)
    elif last is not None and last.op == event.op == "scale":
        queue[-1] = replace(event, value=last.value * event.value)
    elif last is not None and last.op == "toggle" and event.op == "toggle":
        queue.pop()
    elif event.op == "fire" and any(e.op == "fire" for e in queue):
        return
    else:
        queue.append(event)
        if len(queue) > _MAX_PER_TARGET:
            del queue[0]


class ControlBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[Event]] = {}
        self.posted: Counter[str] = Counter(dict.fromkeys(SOURCES, 0))
        self.rejected: Counter[str] = Counter(dict.fromkeys(SOURCES, 0))
        self._reported: set[tuple[str, str]] = set()

    def post(self, source: str, target: str, value: Any = None, op: Op = "set", glide: float | None = None) -> None:
        """Queue a change from ``source``. Safe from any thread."""
        if op in ("add", "nudge", "scale") and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"{op} needs a number, got {value!r}")
        event = Event(source, target, value, op, glide)
        with self._lock:
            self.posted[source] += 1
            queue = self._pending.pop(target, [])
            _merge(queue, event)
            if queue:
                self._pending[target] = queue  # re-inserted: targets keep the order they were last touched

    def reject(self, source: str, reason: str, key: str | None = None) -> None:
        """Count a message from ``source`` that was dropped; log the first one of each ``key`` (e.g. address)."""
        with self._lock:
            self.rejected[source] += 1
            logged = sum(1 for s, _ in self._reported if s == source)
            first = (source, key or reason) not in self._reported and logged <= _MAX_LOGGED
            if first:
                self._reported.add((source, key or reason))
        if first and logged < _MAX_LOGGED:
            log.warning("%s: dropped %s (further ones like it are counted, not logged)", source, reason)
        elif first:
            log.warning("%s: more kinds of bad messages; from now on they are only counted", source)

    def drain(self) -> list[Event]:
        """Everything posted since the last drain, coalesced. Called by the loop once per frame."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return [e for queue in pending.values() for e in queue]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.posted)

    def rejected_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.rejected)

"""The show's clock, passed into the loop so time can be driven from outside.

The loop asks its clock for ``now()`` and ``sleep(seconds)`` and passes ``step(now, dt)`` on to everything that
moves. ``RealClock`` is the wall clock. ``SteppedClock`` jumps instead of sleeping: every frame is exactly on time,
however long it took to make, so tests and offline renders get the same frames on a busy machine as on a quiet one.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class SteppedClock:
    """Time that passes only when the loop sleeps: frame k starts at exactly ``start + k / fps``.

    ``paced=True`` also sleeps for real, so threads that run on the wall clock (the generator) keep about the pace
    they have in a show; the loop's own time still advances by exactly one frame per frame."""

    def __init__(self, start: float = 0.0, paced: bool = False) -> None:
        self.t = start
        self.paced = paced

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        if self.paced and seconds > 0:
            time.sleep(seconds)
        self.t += max(0.0, seconds)

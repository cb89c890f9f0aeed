"""Thread priorities: the display first, then the voice, then the generator."""

from __future__ import annotations

import contextlib
import os
import threading

BACKGROUND_NICE = 10  # the generator; the voice recogniser runs at 5, the display at 0


def lower_priority(nice: int) -> None:
    """Give this thread (and threads it starts, which inherit it) less of the CPU than the display thread.

    The display must never miss a frame, a spoken command should land within a second, and the generator can
    give way for those moments (the display timewarps the last frame meanwhile). Linux gives each thread its own
    nice value, and raising it needs no privileges. Elsewhere this does nothing.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)

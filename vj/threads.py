"""Threads and the process: priorities (the display first, then the voice, then the generator), and malloc arenas."""

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


def raise_priority() -> str:
    """Have this thread woken before the others when it is due: round-robin real time at the lowest real-time
    priority, else a nice of -10. For a thread whose timing other machines hear (the MIDI clock vj sends): on a
    busy machine a late tick is a late beat in every synth that follows. Both need privileges (root,
    CAP_SYS_NICE or an rtprio limit); without them nothing changes. Returns what it got."""
    tid = threading.get_native_id()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(tid, os.SCHED_RR, os.sched_param(1))
        return "realtime"
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, tid, -10)
        return "nice -10"
    return "normal"


M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Have glibc share a few malloc arenas between all threads instead of growing one per thread.

    Frames are large buffers freed on one thread and made on another, and every restarted generator thread is a
    new thread: with one arena each, a night's show keeps growing memory it no longer uses (+8 to +12 % over half
    an hour in the soak test; with two arenas it stays flat). Call it before the threads start. True if it took.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        return False

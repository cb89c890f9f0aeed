"""Source: the base of everything that turns the outside world into bus events (OSC, MIDI, voice, OSC out).

One owner: only the loop thread writes engine state. A source's threads only ``bus.post()``; the loop talks back to
a source only through the source's mailbox (``tell``), never by calling into it, so a source's own state (a MIDI
router's pick-up table, an OSC router) is touched by one thread — the source's — and nothing needs a lock.

    loop thread                        source's thread
    -----------                        ---------------
    source.tell("changed", values) --> [mailbox] --> deliver() -> on_changed(values)
    source.tell("remap", mapping)  --> [mailbox] --> deliver() -> on_remap(mapping)
    source.status() / report()     <-- plain attributes the source's thread keeps (reads of ints and strings)

Threads a source starts with ``spawn`` are guarded: a thread that raises is logged, counted and started again
after a short back-off (up to ``MAX_RESTARTS``), and ``health()`` says so, for the HUD and the report. A source
that dies for good says that too; the show goes on without it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from vj.control.bus import ControlBus

log = logging.getLogger(__name__)

MAX_RESTARTS = 20
BACKOFF_S = (0.05, 0.2, 1.0)  # waits before the 1st, 2nd and later restarts


class Source:
    """A control source. Subclasses set ``name`` and implement ``start``/``stop``; hooks are optional."""

    name: ClassVar[str] = "source"
    listens: ClassVar[frozenset[str]] = frozenset()  # mail kinds the loop sends: "changed", "remap"
    wants_frames: ClassVar[bool] = False  # True: the loop calls offer(picture, now) after each presented frame

    def __init__(self) -> None:
        self._mailbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.restarts = 0
        self.dead = False  # a guarded thread gave up after MAX_RESTARTS
        self.last_error: str | None = None

    # -- the loop's side -------------------------------------------------------------------------------------
    def start(self, bus: ControlBus) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Ask the source's threads to end and wait briefly for them."""
        self._stopping.set()
        self.join()

    def tell(self, kind: str, payload: Any) -> None:
        """Post mail for the source's own thread. Never blocks; ignored for kinds the source does not listen to."""
        if kind in self.listens:
            self._mailbox.put((kind, payload))

    def offer(self, picture: Any, now: float) -> None:
        """The latest presented picture (BGRA, not to be changed), for sources with ``wants_frames``."""

    def status(self) -> str | None:
        """A line for the HUD (read on the loop thread: plain attributes only)."""
        return None

    def report(self) -> dict[str, Any] | None:
        """A section of the report, under ``name``."""
        return None

    def health(self) -> dict[str, Any]:
        running = any(t.is_alive() for t in self.threads) if self.threads and not self.stopping else True
        alive = running and not self.dead  # after a stop, alive means it did not die before it
        return {"alive": alive, "restarts": self.restarts, "error": self.last_error}

    # -- the source's side -----------------------------------------------------------------------------------
    def deliver(self) -> int:
        """Run the hooks for the mail that came in (on the source's thread). ``changed`` values coalesce (newest
        wins per name), only the newest ``remap`` counts. Returns how many letters were read."""
        changed: dict[str, Any] = {}
        remap: Any = None
        n = 0
        while True:
            try:
                kind, payload = self._mailbox.get_nowait()
            except queue.Empty:
                break
            n += 1
            if kind == "changed":
                changed.update(payload)
            elif kind == "remap":
                remap = payload
        if remap is not None:
            self.on_remap(remap)
        if changed:
            self.on_changed(changed)
        return n

    def wait_mail(self, timeout: float) -> None:
        """Block until mail comes or ``timeout`` passes (for a source thread with nothing else to wait on)."""
        try:
            item = self._mailbox.get(timeout=timeout)
        except queue.Empty:
            return
        self._mailbox.put(item)  # deliver() reads it with the rest, in order enough: changed values coalesce anyway

    def on_changed(self, values: dict[str, Any]) -> None:
        """Parameters whose target changed (and all of them once at the start)."""

    def on_remap(self, mapping: Any) -> None:
        """A new mapping (a scene's overrides laid over the show's)."""

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        """Run ``target`` on a guarded daemon thread: restarted after an exception until the source stops."""
        thread = threading.Thread(target=self._guard, args=(target, name), name=name, daemon=True)
        self.threads.append(thread)
        thread.start()
        return thread

    def _guard(self, target: Callable[[], None], name: str) -> None:
        while not self._stopping.is_set():
            try:
                target()
                return
            except BaseException as e:
                self.last_error = f"{type(e).__name__}: {e}"[:200]
                if self._stopping.is_set():
                    return
                if self.restarts >= MAX_RESTARTS:
                    self.dead = True
                    log.error("%s: %s failed %d times; the show goes on without it", self.name, name, self.restarts)
                    return
                self.restarts += 1
                log.error("%s: %s failed (%s); restarting it", self.name, name, self.last_error, exc_info=True)
                if self._stopping.wait(BACKOFF_S[min(self.restarts, len(BACKOFF_S)) - 1]):
                    return

    def join(self, timeout: float = 3.0) -> None:
        end = time.monotonic() + timeout
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(max(0.0, end - time.monotonic()))


def health_line(sources: list[Source]) -> str | None:
    """A HUD warning for sources that restarted or died, or None when all are well."""
    bad = []
    for s in sources:
        h = s.health()
        if not h["alive"]:
            bad.append(f"{s.name.upper()} DEAD ({h['error']})")
        elif h["restarts"]:
            bad.append(f"{s.name} restarted {h['restarts']}x ({h['error']})")
    return ("   ".join(bad))[:160] if bad else None

"""The dream keeper: a thread that decides which frames to keep and writes them, so the display never waits.

The loop hands it candidates: once per ``every`` seconds the best-scoring generated frame of that window, and
every frame the performer saves. The keeper adds novelty (and CLIP's opinion, when there is a CLIP model) to the
frame's aesthetic score; a candidate that beats the session's K-th best is kept and the one that falls out is
removed. Saved frames are always kept; only the session's oldest hand-saved ones go beyond ``max_saved``.

Nothing the keeper does may stall or stop the show:

- The loop's side never waits. Candidates go through a bounded queue with non-blocking puts; when the thread is
  behind, a candidate is dropped and counted (``dropped``).
- Saves are rate-limited (one per ``save_every`` seconds; refusals are counted as ``saves_refused``), and a
  session keeps at most ``max_saved`` hand-saved dreams, so a save button held down cannot fill the disk.
- Frames from generators whose frames are not dreams (a class attribute named in ``NOT_DREAMS``: a diagnostic,
  or the replay of stored dreams) are never kept, so noise and copies of copies stay out of the store.
- The thread survives every failure. A damaged store turns dreams off for the rest of the show: the keeper stops
  accepting, logs it once, and says so in ``status()`` (for the HUD) and ``report()["error"]``. A full disk (or
  less than ``min_free`` bytes left, or a run of failed writes) pauses writing for ``retry`` seconds; candidates
  meanwhile are counted as ``unwritten``. A failed write leaves nothing behind in the store.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vj.dreams.store import DB, DreamStore, broken, new_session, trouble
from vj.errors import ConfigError
from vj.frame.aesthetics import Score, aesthetics, features, novelty, score
from vj.frame.compose import cover
from vj.gen.base import find

log = logging.getLogger(__name__)

# Class attributes that mark a generator whose frames are not dreams: a diagnostic (decay's coloured noise scores
# higher than any real dream) or a replay of stored dreams (keeping its frames would store copies of copies).
NOT_DREAMS = ("diagnostic", "replays_dreams")

QUEUE = 64  # candidates waiting for the keeper's thread
SAVE_EVERY = 0.5  # seconds: a save button held down keeps two pictures a second, not two hundred
MAX_SAVED = 200  # hand-saved dreams per session; beyond that the session's oldest hand-saved one goes
MIN_FREE = 64 * 2**20  # bytes: below this much free space the keeper pauses rather than fill the disk
RETRY = 60.0  # seconds a paused keeper (disk full, writes failing) waits before it tries again
FAILURES_TO_PAUSE = 5  # failed writes in a row, of any kind, that pause the keeper
FETCH = "fetch"  # a queue item: load the best dreams for a replay scene that feeds them


@functools.lru_cache(maxsize=128)
def makes_dreams(generator: str) -> bool:
    """Whether frames from the generator registered (or imported) as ``generator`` are worth keeping."""
    try:
        cls = find(generator)
    except Exception:  # noqa: BLE001 - a name no generator answers to: nothing says its frames are not dreams
        return True
    return not any(getattr(cls, mark, False) for mark in NOT_DREAMS)


@dataclass(frozen=True)
class Candidate:
    image: np.ndarray
    params: dict[str, Any]
    base: float  # the frame's aesthetic mean, as measured on the generator's thread
    scene: str | None
    generator: str
    saved: bool
    latent: Any = None


class DreamKeeper:
    def __init__(
        self,
        folder: Path,
        *,
        keep: int = 24,
        every: float = 1.0,
        clip: Any = None,
        session: str | None = None,
        save_every: float = SAVE_EVERY,
        max_saved: int = MAX_SAVED,
        min_free: int = MIN_FREE,
        retry: float = RETRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder, self.keep, self.every = Path(folder), keep, every
        self.session = session or new_session()
        self.clip = clip  # a vj.dreams.clip.ClipScorer, or None
        self.save_every, self.max_saved, self.min_free, self.retry = save_every, max_saved, min_free, retry
        self.clock = clock
        self.written = 0
        self.by_hand = 0
        self.evicted = 0
        self.dropped = 0  # candidates the thread had no room for
        self.saves_refused = 0  # saves too soon after the last one, or while dreams are off
        self.skipped = 0  # frames offered by generators whose frames are not dreams
        self.unwritten = 0  # candidates lost to a failed write or thrown away while paused
        self.errors = 0
        self.rows = 0  # this session's dreams in the store, as of the last write
        self.last_error: str | None = None
        self.fetched: list[np.ndarray] = []  # the best stored dreams, loaded for a replay scene that feeds them
        self._queue: queue.Queue[Candidate | str | None] = queue.Queue(maxsize=QUEUE)
        self._window_end = 0.0
        self._best: Candidate | None = None
        self._last_save = -float("inf")
        self._fetch_wanted: tuple[int, tuple[int, int]] | None = None
        self._off: tuple[str, str] | None = None  # (for the HUD, the whole story) once dreams are off for good
        self._paused: tuple[float, str, str] | None = None  # (until, for the HUD, the whole story)
        self._failures = 0  # failed writes in a row
        self._told: set[str] = set()  # what has been logged once already
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loop's side (cheap: comparisons and a non-blocking queue put) --------------------------------------
    def offer(
        self,
        image: np.ndarray,
        params: dict[str, Any],
        base: float,
        *,
        scene: str | None,
        generator: str,
        now: float,
        latent: Any = None,
    ) -> None:
        if self._off is not None or self._closing.is_set():
            return
        if not makes_dreams(generator):
            self.skipped += 1
            self._once(f"skip {generator}", logging.INFO, "dreams: frames from %s are not kept", generator)
            return
        if self._best is None or base > self._best.base:
            self._best = Candidate(image, params, base, scene, generator, False, latent)
        if now >= self._window_end:
            self._window_end = now + self.every
            if self._best is not None:
                self._put(self._best)
            self._best = None

    def save(
        self,
        image: np.ndarray,
        params: dict[str, Any],
        base: float,
        *,
        scene: str | None,
        generator: str,
        latent: Any = None,
        now: float | None = None,
    ) -> bool:
        """Keep this frame whatever its score. False when it is refused (and counted): too soon after the last
        save, dreams off, a generator whose frames are not dreams, or the keeper too far behind."""
        now = self.clock() if now is None else now
        why = None
        if self._off is not None or self._closing.is_set():
            why = "dreams are off"
        elif not makes_dreams(generator):
            why = f"frames from {generator} are not kept"
        elif now - self._last_save < self.save_every:
            why = f"at most one save every {self.save_every:g} s"
        if why is not None:
            self.saves_refused += 1
            self._once(f"refused {why}", logging.WARNING, "save refused: %s (repeats are counted)", why)
            return False
        self._last_save = now
        return self._put(Candidate(image, params, base, scene, generator, True, latent))

    def fetch(self, count: int, size: tuple[int, int]) -> None:
        """Load the ``count`` best stored dreams (all sessions) into ``fetched``, on the keeper's thread."""
        self._fetch_wanted = (count, size)  # stays wanted even when the queue has no room for the nudge
        self._put(FETCH)

    def _put(self, item: Candidate | str | None) -> bool:
        try:
            self._queue.put(item, block=False)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def status(self) -> str | None:
        """One line for the HUD when dreams are not being kept; None while all is well."""
        if self._off is not None:
            return f"DREAMS OFF: {self._off[0]}"
        paused = self._paused
        if paused is not None:
            return f"DREAMS PAUSED: {paused[1]}; trying again in {max(0.0, paused[0] - self.clock()):.0f} s"
        return None

    @property
    def error(self) -> str | None:
        """Why dreams are off or paused, with what to do about it; None while all is well."""
        if self._off is not None:
            return self._off[1]
        paused = self._paused
        return paused[2] if paused is not None else None

    # -- the thread --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vj-dreams", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (for up to ``timeout`` seconds) and end the thread. Never waits for room."""
        self._closing.set()
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):  # a full queue: the thread stops once it has emptied it
            self._queue.put(None, block=False)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("dreams: still writing after %g s; %d candidates left unwritten", timeout, self._queue.qsize())

    def _run(self) -> None:
        store: DreamStore | None = None
        try:
            store = self._open()
            if store is not None:
                self._serve(store)
        except BaseException as e:  # nothing here may take the show down: dreams go off instead
            self._turn_off(f"keeper failed ({type(e).__name__}: {e})", f"the dream keeper failed: {e!r}")
            log.debug("the dream keeper failed", exc_info=True)
        finally:
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()

    def _open(self) -> DreamStore | None:
        try:
            return DreamStore(self.folder)
        except Exception as e:  # noqa: BLE001 - a store that cannot open must not stop the show
            self.errors += 1
            self.last_error = str(e)
            if trouble(e) == "broken":
                self._turn_off(f"store broken; move {self.folder} aside (see the log)", str(e))
            else:
                self._turn_off(f"cannot open the store in {self.folder}", str(e))
            return None

    def _next(self) -> Candidate | str | None:
        while True:
            try:
                return self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closing.is_set():
                    return None

    def _serve(self, store: DreamStore) -> None:
        kept: list[np.ndarray] = []
        with contextlib.suppress(Exception):  # novelty starts from scratch if the session's dreams cannot be read
            kept = [d.features for d in store.top(session=self.session) if d.features is not None]
        while True:
            item = self._next()
            if item is None:
                return
            try:
                if self._fetch_wanted is not None:
                    self._fetch(store)
                if isinstance(item, Candidate):
                    self._write(store, item, kept)
            except Exception as e:  # noqa: BLE001 - counted, and the show goes on (with dreams or without)
                if isinstance(item, Candidate):
                    self.unwritten += 1
                if not self._trouble(e):
                    return

    def _write(self, store: DreamStore, c: Candidate, kept: list[np.ndarray]) -> None:
        paused = self._paused
        if paused is not None:
            if self.clock() < paused[0]:
                self.unwritten += 1
                return
            self._paused = None  # time to try again
        if self.min_free and shutil.disk_usage(self.folder).free < self.min_free:
            raise OSError(errno.ENOSPC, f"less than {self.min_free / 2**20:g} MiB free", str(self.folder))
        result = keep_if_good(
            store,
            self.session,
            self.keep,
            c.image,
            params=c.params,
            generator=c.generator,
            kept=kept,
            scene=c.scene,
            saved=c.saved,
            latent=c.latent,
            clip=self.clip,
        )
        if result is not None:
            self.written += 1
            self.by_hand += int(c.saved)
            self.evicted += result[1]
        if c.saved:
            gone = store.evict_saved(self.session, self.max_saved)
            if gone:
                self.evicted += len(gone)
                kept[:] = [d.features for d in store.top(session=self.session) if d.features is not None]
        self.rows = store.count(self.session)
        self._failures = 0

    def _fetch(self, store: DreamStore) -> None:
        wanted, self._fetch_wanted = self._fetch_wanted, None
        if wanted is None:
            return
        count, size = wanted
        unkept = [g for g in store.generators() if not makes_dreams(g)]
        images = []
        for d in store.top(count, exclude=unkept):
            with contextlib.suppress(ConfigError):  # a picture gone missing: replay the others
                images.append(cover(store.image(d), size))
        self.fetched = images

    def _trouble(self, e: Exception) -> bool:
        """Count a failure and decide what it means. False: dreams are off, the thread ends."""
        self.errors += 1
        self.last_error = f"{type(e).__name__}: {e}"
        kind = trouble(e)
        if kind == "broken":
            full = str(e) if isinstance(e, ConfigError) else str(broken(self.folder / DB, str(e)))
            self._turn_off(f"store broken; move {self.folder} aside (see the log)", full)
            return False
        self._failures += 1
        if kind == "full":
            self._pause(
                f"disk full ({self.folder})",
                f"disk full: {e}; dreams are not kept until there is room (free some space, or vj dreams prune)",
            )
        elif self._failures >= FAILURES_TO_PAUSE:
            self._pause(f"writing fails ({self.last_error})"[:100], f"keeping dreams keeps failing: {self.last_error}")
        else:
            self._once(type(e).__name__, logging.ERROR, "keeping a dream failed: %s (repeats are counted)", e)
        return True

    def _pause(self, short: str, full: str) -> None:
        self._paused = (self.clock() + self.retry, short, full)
        self._once(f"pause {short}", logging.ERROR, "dreams paused: %s; trying again every %g s", full, self.retry)

    def _turn_off(self, short: str, full: str) -> None:
        if self._off is None:
            self._off = (short, full)
            log.error("dreams off for the rest of the show: %s", full)

    def _once(self, key: str, level: int, message: str, *args: Any) -> None:
        if key not in self._told:
            self._told.add(key)
            log.log(level, message, *args)

    def report(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "session": self.session,
            "rows": self.rows,
            "written": self.written,
            "saved_by_hand": self.by_hand,
            "evicted": self.evicted,
            "dropped": self.dropped,
            "saves_refused": self.saves_refused,
            "skipped": self.skipped,
            "unwritten": self.unwritten,
            "errors": self.errors,
            "last_error": self.last_error,
            "error": self.error,
            "clip": self.clip is not None,
        }


def keep_if_good(
    store: DreamStore,
    session: str,
    keep: int,
    image: np.ndarray,
    *,
    params: dict[str, Any],
    generator: str,
    kept: list[np.ndarray],
    scene: str | None = None,
    saved: bool = False,
    latent: Any = None,
    clip: Any = None,
    scored: tuple[Score, np.ndarray] | None = None,
) -> tuple[Any, int] | None:
    """Score ``image`` (aesthetics, novelty against ``kept``, CLIP); keep it if it is among the session's ``keep``
    best (or saved by hand), dropping the one that falls out. Returns (the dream, how many were evicted) or None.
    ``kept`` (the features of the session's kept dreams) is brought up to date. ``scored``: (score, features) when
    the caller has them already."""
    if scored is None:
        feats = features(image)
        clip_score = clip.score(image, str(params.get("prompt", ""))) if clip is not None else None
        s = score(aesthetics(image), novelty(feats, kept), clip_score)
    else:
        s, feats = scored
    if not saved:
        ranked = store.top(keep, session=session, saved=False)
        if len(ranked) >= keep and s.total <= ranked[-1].score:
            return None
    if latent is not None and not isinstance(latent, np.ndarray):
        latent = latent.detach().float().cpu().numpy()  # a tensor from the generator
    dream = store.add(
        image,
        session=session,
        prompt=str(params.get("prompt", "")),
        seed=int(params.get("seed", 0)),
        params=params,
        score=s.total,
        scores=s.parts(),
        generator=generator,
        scene=scene,
        saved=saved,
        latent=latent,
        features=feats,
    )
    kept.append(feats)
    evicted = 0
    if not saved:
        gone = store.evict(session, keep)
        evicted = len(gone)
        if gone:
            kept[:] = [d.features for d in store.top(session=session) if d.features is not None]
    return dream, evicted

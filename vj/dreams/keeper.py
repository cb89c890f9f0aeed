"""The dream keeper: a thread that decides which frames to keep and writes them, so the display never waits.

The loop hands it candidates: once per ``every`` seconds the best-scoring generated frame of that window, and
every frame the performer saves. The keeper adds novelty (and CLIP's opinion, when there is a CLIP model) to the
frame's aesthetic score; a candidate that beats the session's K-th best is kept and the one that falls out is
removed. Saved frames are always kept and never removed.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vj.dreams.store import DreamStore, new_session
from vj.frame.aesthetics import Score, aesthetics, features, novelty, score
from vj.frame.compose import cover

log = logging.getLogger(__name__)


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
        self, folder: Path, *, keep: int = 24, every: float = 1.0, clip: Any = None, session: str | None = None
    ) -> None:
        self.folder, self.keep, self.every = folder, keep, every
        self.session = session or new_session()
        self.clip = clip  # a vj.dreams.clip.ClipScorer, or None
        self.written = 0
        self.by_hand = 0
        self.evicted = 0
        self.dropped = 0
        self.errors = 0
        self.rows = 0  # this session's dreams in the store, as of the last write
        self.last_error: str | None = None
        self._queue: queue.Queue[Candidate | tuple[int, tuple[int, int]] | None] = queue.Queue(maxsize=64)
        self.fetched: list[np.ndarray] = []  # the best stored dreams, loaded for a replay scene that feeds them
        self._window_end = 0.0
        self._best: Candidate | None = None
        self._thread: threading.Thread | None = None

    # -- the loop's side (cheap: comparisons and a queue put) ---------------------------------------------------
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
    ) -> None:
        self._put(Candidate(image, params, base, scene, generator, True, latent), block=True)

    def fetch(self, count: int, size: tuple[int, int]) -> None:
        """Load the ``count`` best stored dreams (all sessions) into ``fetched``, on the keeper's thread."""
        self._put((count, size), block=True)

    def _put(self, c: Any, block: bool = False) -> None:
        try:
            self._queue.put(c, block=block, timeout=1.0 if block else None)
        except queue.Full:
            self.dropped += 1

    # -- the thread --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vj-dreams", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            store = DreamStore(self.folder)
        except Exception as e:  # noqa: BLE001 - a store that cannot open must not stop the show
            self.errors += 1
            self.last_error = str(e)
            log.error("dreams will not be kept: %s", e)
            while self._queue.get() is not None:
                pass
            return
        kept = [d.features for d in store.top(session=self.session) if d.features is not None]
        try:
            while True:
                c = self._queue.get()
                if c is None:
                    break
                try:
                    if isinstance(c, tuple):
                        count, size = c
                        self.fetched = [cover(store.image(d), size) for d in store.top(count)]
                        continue
                    self._consider(store, c, kept)
                except Exception as e:
                    self.errors += 1
                    self.last_error = f"{type(e).__name__}: {e}"
                    log.exception("keeping a dream failed")
        finally:
            store.close()

    def _consider(self, store: DreamStore, c: Candidate, kept: list[np.ndarray]) -> None:
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
        self.rows = store.count(self.session)

    def report(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "session": self.session,
            "rows": self.rows,
            "written": self.written,
            "saved_by_hand": self.by_hand,
            "evicted": self.evicted,
            "dropped": self.dropped,
            "errors": self.errors,
            "last_error": self.last_error,
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

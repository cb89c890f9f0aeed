"""The generator's own thread, so the display never waits for it.

The loop hands work over through two one-slot mailboxes, newest wins in both directions:

    loop --Job(params snapshot, camera)--> [inbox]  --> worker: warp previous frame, generate
    loop <--------------Frame-------------  [outbox] <-- (a frame not yet picked up is replaced by a newer one)

The worker dreams on continuously from the latest job it has seen. Each step: warp the previous frame to the job's
camera, mix in the layers that go into the loop, blend in a spark's bloom if one is growing, generate, measure the
new frame's vitals (for the loop's stagnation check). A generator that raises is counted, closed and
built again after a short back-off; one that hangs past its ``frame_timeout`` is abandoned (its thread is left to
finish on its own and its late result is thrown away) and a fresh worker thread takes over. After ``max_failures``
failures in a row without a good frame, the worker switches to the fallback generator, if it has one. Through all
of it the window keeps showing and moving the last good frame.

A generator that loads slowly (a model on the GPU) is built on a helper thread while the fallback stands in. The
same stand-in takes over when the job's ``pause_gpu`` is on: the model is closed (its GPU memory freed, so another
program can have the GPU) and the fallback dreams on from its last frame; when ``pause_gpu`` goes off the model is
loaded again the same way, and takes over once it is ready.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from vj.frame.aesthetics import Aesthetics, aesthetics
from vj.frame.compose import LayerInput, weights
from vj.frame.vitals import Bloom, Vitals, measure
from vj.gen.base import Generator, GeneratorFactory, check_frame
from vj.threads import BACKGROUND_NICE, lower_priority

log = logging.getLogger(__name__)

T = TypeVar("T")


class Mailbox(Generic[T]):
    """One slot; ``put`` replaces what is there. ``take`` empties it, ``latest`` leaves it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None

    def put(self, item: T) -> None:
        with self._cond:
            self._item = item
            self._cond.notify_all()

    def take(self) -> T | None:
        with self._cond:
            item, self._item = self._item, None
            return item

    def latest(self, timeout: float | None = None) -> T | None:
        """The item in the slot, waiting up to ``timeout`` for one to arrive."""
        with self._cond:
            if self._item is None and timeout:
                self._cond.wait(timeout)
            return self._item


@dataclass(frozen=True, slots=True)
class Job:
    params: dict[str, Any]
    camera: np.ndarray
    spark: int = 0  # a new number asks for a spark
    layers: tuple[LayerInput, ...] = ()  # mixed into the generator's input
    spark_image: np.ndarray | None = None  # bloom this (a stored dream) instead of a fresh image


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray  # H x W x 3 uint8 RGB
    camera: np.ndarray  # where the camera was when this frame's job was taken
    index: int
    params: dict[str, Any]
    made: float  # time.monotonic() when it was finished
    ms: float  # time spent in generate()
    vitals: Vitals | None = None
    bloom: float | None = None  # a spark's progress 0..1 while one is blooming
    aesthetics: Aesthetics | None = None  # the frame's dream score before novelty (see vj.dreams.score)
    latent: Any = None  # the generator's latent for this frame, when it has one


STAND_IN_INTERVAL = 1 / 12  # seconds between stand-in frames while a generator loads
STAND_IN_TIMEOUT = 10.0  # seconds a stand-in frame may take before it counts as hung
BUILD_TIMEOUT = 5.0  # seconds a generator's constructor may take on the worker thread (slow loads use a loader)
LOAD_TIMEOUT = 600.0  # seconds a slow load on the loader thread may take before the show gives up on it


@dataclass
class WorkerStats:
    name: str
    generated: int = 0
    errors: int = 0
    restarts: int = 0
    hangs: int = 0
    fallback: str | None = None
    last_error: str | None = None
    fps: float = 0.0  # of the generator named (or its fallback), never of a stand-in
    stand_in_fps: float = 0.0
    state: str = "starting"  # starting, loading, running, failed, paused
    stand_in: str | None = None  # what dreams while the generator loads
    generated_by: dict[str, int] = field(default_factory=dict)  # frames per generator that made them
    load_s: float | None = None  # how long the last load on a helper thread took
    node: dict[str, Any] | None = None  # a remote generator's node: address, round trip, reconnects...
    engine: dict[str, Any] | None = None  # what the model generator runs (family, steps, stream batch...)
    gpu_paused: bool = False  # pause_gpu is on and the slow-loading generator is closed: the stand-in dreams

    @property
    def producing(self) -> str:
        """The name of the generator whose frames come out now."""
        return self.stand_in or self.fallback or self.name

    def describe(self) -> str:
        """One line for the HUD: who makes the frames now, and how fast."""
        if self.gpu_paused:
            return f"GPU paused: {self.name} closed, {self.stand_in} {self.stand_in_fps:.1f} fps meanwhile"
        if self.stand_in:
            return f"{self.name} loading, {self.stand_in} {self.stand_in_fps:.1f} fps meanwhile"
        if self.fallback:
            return f"{self.name} failed, {self.fallback} {self.fps:.1f} fps"
        return f"{self.name} {self.fps:.1f} fps" + (f" ({self.state})" if self.state != "running" else "")

    error_kinds: dict[str, int] = field(default_factory=dict)


class GeneratorWorker:
    def __init__(
        self,
        build: GeneratorFactory,
        size: tuple[int, int],
        *,
        name: str,
        fallback: GeneratorFactory | None = None,
        fallback_name: str = "sketch",
        max_failures: int = 3,
        max_fps: float | None = None,
    ) -> None:
        self.inbox: Mailbox[Job] = Mailbox()
        self.outbox: Mailbox[Frame] = Mailbox()
        self.size = size
        self.stats = WorkerStats(name)
        self._build, self._fallback, self._fallback_name = build, fallback, fallback_name
        self._max_failures = max_failures
        self._min_interval = 1.0 / max_fps if max_fps else 0.0
        self._lock = threading.Lock()
        self._epoch = 0
        self._running = False
        self._busy_since: float | None = None
        self._busy_building = False  # the thread is in a generator's constructor, not in generate()
        self._timeout = 10.0
        self._thread: threading.Thread | None = None
        # The dream carries on across restarts from the last good frame.
        self._prev: Any = None
        self._prev_camera: np.ndarray | None = None
        self._index = 0
        self._failures = 0  # in a row, since the last good frame
        # in a row from the generator asked for itself (not its stand-in): a model that loads and then fails every
        # frame must fall back, not be loaded again and again while the stand-in's good frames clear _failures
        self._model_failures = 0
        self._picture: np.ndarray | None = None  # the last good frame as a picture: what any generator can adopt
        self._last_done = 0.0
        self._spark_seen = 0
        self._loader: _Loader | None = None
        self._stand_in = False  # the generator running is the fallback, dreaming while the real one loads
        self._switch: tuple[GeneratorFactory, str] | None = None
        self._pause_asked = False  # the last job's pause_gpu: the worker thread acts when it changes
        self._bloom: Bloom | None = None
        self._small: np.ndarray | None = None  # the last frame's vitals-size luminance

    # -- the loop's side ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._spawn()

    def stop(self, timeout: float = 2.0) -> None:
        self._running = False
        with self._lock:
            self._epoch += 1
        self.inbox.put(self.inbox.latest() or Job({}, np.zeros(4)))  # wake a thread waiting for its first job
        if self._thread is not None:
            self._thread.join(timeout)

    def switch(self, build: GeneratorFactory, name: str) -> None:
        """Change generator (a scene asked for another): the dream carries on from the last frame."""
        self._switch = (build, name)

    def submit(self, job: Job) -> None:
        self.inbox.put(job)

    def poll(self) -> Frame | None:
        return self.outbox.take()

    def check(self, now: float | None = None) -> None:
        """The watchdog, called by the loop each frame: abandon a generate() that runs past its timeout."""
        busy = self._busy_since
        now = time.monotonic() if now is None else now
        loader = self._loader
        if loader is not None and not loader.done.is_set() and now - loader.started > LOAD_TIMEOUT:
            self._loader = None
            loader.abandon()
            self._fail(f"loading did not finish within {LOAD_TIMEOUT:g} s")
            self._fall_back("did not load")
            self._stand_in, self.stats.stand_in, self.stats.state = False, None, "running"
        if busy is None or not self._running:
            return
        building = self._busy_building
        limit = BUILD_TIMEOUT if building else self._timeout
        if now - busy <= limit:
            return
        with self._lock:
            if self._busy_since != busy:
                return
            self._busy_since = None
            self._epoch += 1
        self.stats.hangs += 1
        # the hung generator's own frame (a tensor on its device...) is no input for the next one: the picture is
        self._prev = self._picture
        what = "building the generator" if building else "generate()"
        self._fail(f"{what} hung for more than {limit:g} s")
        if building:
            self._fall_back("hung while building")  # a constructor that hung once will hang again
        log.error("generator %s hung; starting a fresh one (the stuck thread is left to finish)", self.stats.name)
        self._spawn()

    # -- the worker thread ------------------------------------------------------------------------------------
    def _spawn(self) -> None:
        with self._lock:
            epoch = self._epoch
        self._thread = threading.Thread(target=self._run, args=(epoch,), name=f"vj-gen-{epoch}", daemon=True)
        self._thread.start()

    def _current(self, epoch: int) -> bool:
        return self._running and epoch == self._epoch

    def _fail(self, message: str) -> int:
        stats = self.stats
        stats.errors += 1
        stats.last_error = message
        kind = message.split(":", 1)[0]
        first = kind not in stats.error_kinds
        stats.error_kinds[kind] = stats.error_kinds.get(kind, 0) + 1
        if first:
            log.error("generator %s failed: %s (kept going; repeats are counted)", stats.name, message)
        self._failures += 1
        return self._failures

    def _fall_back(self, why: str) -> None:
        if self._fallback is not None and self.stats.fallback is None:
            log.error("generator %s %s; falling back to %s", self.stats.name, why, self._fallback_name)
            self._build, self.stats.fallback = self._fallback, self._fallback_name
            if self._loader is not None:
                self._loader.abandon()
                self._loader = None

    def _create(self, epoch: int) -> Generator | None:
        if self._failures >= self._max_failures or self._model_failures >= self._max_failures:
            self._fall_back("keeps failing")
        self.stats.state = "loading"
        stand_in = self._fallback if self._pausable() else None
        self.stats.gpu_paused = stand_in is not None and self._pause_asked
        if stand_in is not None:
            if self.stats.gpu_paused:  # the GPU is wanted elsewhere: nothing loads until pause_gpu goes off
                self.stats.state = "paused"
            elif self._loader is None:  # a stand-in restarted after a hang keeps the load already under way
                # Weights take a while: load them on a helper thread and keep the stand-in dreaming meanwhile.
                self._loader = _Loader(self._build)
            gen = stand_in()
            self._stand_in, self.stats.stand_in = True, self._fallback_name
        else:
            self._stand_in, self.stats.stand_in = False, None
            with self._lock:
                self._busy_since, self._busy_building = time.monotonic(), True
            try:
                gen = self._build()
            finally:
                with self._lock:
                    self._busy_since, self._busy_building = None, False
        self._timeout = float(getattr(gen, "frame_timeout", 10.0))
        if self._stand_in:  # a load competes for the machine: a slow stand-in frame is no hang
            self._timeout = max(self._timeout, STAND_IN_TIMEOUT)
        if not self._current(epoch):
            _close(gen)
            return None
        if not self._stand_in:
            self.stats.state = "running"
        return gen

    def _arrived(self, stand_in: Generator) -> Generator:
        """The generator the loader was building, if it is ready: it takes over from the stand-in."""
        loader = self._loader
        if loader is None or not loader.done.is_set():
            return stand_in
        self._loader = None
        if loader.error is not None:
            e = loader.error
            self._fail(f"{type(e).__name__}: {e}")
            if getattr(e, "permanent", False) or self._failures >= self._max_failures:
                self._fall_back(f"cannot load ({e})" if getattr(e, "permanent", False) else "keeps failing")
                self._stand_in, self.stats.stand_in = False, None
                self.stats.state = "running"
                return stand_in  # the stand-in stays: it is the fallback now
            self._loader = _Loader(self._build)  # try again, still dreaming on the stand-in
            return stand_in
        gen = loader.result
        assert gen is not None
        self.stats.load_s = time.monotonic() - loader.started
        self._prev = gen.adopt(self._picture) if self._picture is not None else None
        _close(stand_in)
        self._stand_in, self.stats.stand_in = False, None
        self._timeout = float(getattr(gen, "frame_timeout", 10.0))
        self.stats.state = "running"
        log.info("generator %s loaded: it takes over", self.stats.name)
        return gen

    def _pausable(self) -> bool:
        """Whether the generator asked for loads slowly (a model, on the GPU) and a stand-in can dream for it."""
        return bool(getattr(self._build, "slow", False)) and self._fallback is not None and self.stats.fallback is None

    def _pause(self, gen: Generator | None) -> Generator | None:
        """pause_gpu came on: close the model (the stand-in takes over) or stop its load. Returns the generator
        that dreams on: the stand-in already running, or None for ``_create`` to build it."""
        stats = self.stats
        if not self._pausable():
            why = "it fell back" if stats.fallback else "it holds no model that loads slowly"
            log.info("pause_gpu: generator %s has nothing to free (%s); ignored", stats.producing, why)
            return gen
        stats.gpu_paused, stats.state, stats.stand_in = True, "paused", self._fallback_name
        if self._loader is not None:  # a load under way is finished on its thread and closed there, unused
            self._loader.abandon()
            self._loader = None
        if gen is not None and not self._stand_in:
            self._prev = self._picture  # the stand-in carries on from the model's last frame
            if self._bloom is not None:
                fresh = _as_picture(gen, self._bloom.fresh)
                if fresh is None:
                    self._bloom = None
                else:
                    self._bloom.fresh = fresh
            _close(gen)
            gen = None
        log.info("GPU paused: generator %s closed, %s dreams meanwhile", stats.name, self._fallback_name)
        return gen

    def _resume(self, gen: Generator | None) -> None:
        """pause_gpu went off: load the model again while the stand-in dreams on (``_arrived`` swaps it in)."""
        if not self.stats.gpu_paused:
            return
        self.stats.gpu_paused = False
        if not self._pausable():
            return
        self.stats.state = "loading"  # now, or as soon as the stand-in is built (frozen: when the show thaws)
        if gen is not None and self._stand_in and self._loader is None:
            self._loader = _Loader(self._build)
        log.info("GPU resumed: loading generator %s again, %s dreams meanwhile", self.stats.name, self._fallback_name)

    def _run(self, epoch: int) -> None:
        _background()
        gen: Generator | None = None
        first_build = epoch == 0
        last_start = 0.0
        try:
            while self._current(epoch):
                job = self.inbox.latest(timeout=0.1)
                if job is None or not self._current(epoch):
                    continue
                if bool(job.params.get("pause_gpu")) != self._pause_asked:  # before freeze: a frozen show frees too
                    self._pause_asked = not self._pause_asked
                    if self._pause_asked:
                        closing, gen = gen, self._pause(gen)
                        if closing is not None and gen is None:
                            first_build = True  # the stand-in taking over is no restart
                    else:
                        self._resume(gen)
                if job.params.get("freeze"):
                    time.sleep(0.02)
                    continue
                # a stand-in leaves most of the machine to a load: a few frames a second stay smooth on screen
                loading = self._stand_in and self._loader is not None
                interval = max(self._min_interval, STAND_IN_INTERVAL) if loading else self._min_interval
                wait = last_start + interval - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                last_start = time.monotonic()
                if self._switch is not None:
                    self._build, self.stats.name = self._switch
                    self._switch, self.stats.fallback, self._failures = None, None, 0
                    if self._loader is not None:
                        self._loader.abandon()  # a load in progress is no longer wanted
                    self._loader, self._stand_in, self.stats.stand_in = None, False, None
                    if gen is not None:
                        self._prev = self._picture
                        _close(gen)
                        gen = None
                        first_build = True  # a switch is not a restart
                try:
                    if gen is None:
                        if not first_build:
                            self.stats.restarts += 1
                        first_build = False
                        gen = self._create(epoch)
                        if gen is None:
                            return
                        if self._prev is not None:
                            self._prev = gen.adopt(self._prev)
                    if self._stand_in:
                        gen = self._arrived(gen)
                    with self._lock:
                        self._busy_since = time.monotonic()
                    prev, prev_cam = self._prev, self._prev_camera
                    x = None if prev is None or prev_cam is None else gen.warp(prev, job.camera - prev_cam)
                    if job.spark != self._spark_seen:
                        self._spark_seen = job.spark
                        self._bloom = self._start_bloom(gen, job)
                    if x is not None:
                        x = self._feed(gen, x, job)
                    t0 = time.perf_counter()
                    out = gen.generate(x, job.params)
                    ms = (time.perf_counter() - t0) * 1000
                    with self._lock:
                        self._busy_since = None
                        if epoch != self._epoch:
                            return  # abandoned as hung while we were busy: this result is stale
                    image = check_frame(gen.to_display(out), self.size)
                    vitals, self._small = measure(image, self._small)
                    looks = aesthetics(image)
                except BaseException as e:  # noqa: BLE001 - a generator may fail in any way, SystemExit too
                    with self._lock:
                        self._busy_since = None
                    if not self._current(epoch):
                        return
                    failures = self._fail(f"{type(e).__name__}: {e}")
                    self._model_failures += not self._stand_in
                    self.stats.state = "failed"
                    if getattr(e, "permanent", False):
                        self._fall_back(f"cannot run ({e})")
                    if gen is not None:
                        self._prev = self._picture  # the next generator adopts a picture, never
                        _close(gen)  # a frame of this one's own kind (a tensor, a remote frame)
                        gen = None
                    time.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))
                    continue
                self._failures = 0
                if not self._stand_in:
                    self._model_failures = 0
                self._prev, self._prev_camera, self._picture = out, job.camera, image
                self._index += 1
                stats = self.stats
                stats.generated += 1
                if gen.name == "remote":
                    stats.node = gen.report()
                else:  # what makes the frames now: the model's settings, None for a CPU generator or a stand-in
                    stats.engine = gen.report()
                made = stats.generated_by[stats.producing] = stats.generated_by.get(stats.producing, 0) + 1
                if made == 1:
                    log.info("first frame from %s", stats.producing)
                now = time.monotonic()
                bloom = self._bloom.progress if self._bloom is not None else None
                if self._bloom is not None and self._bloom.done:
                    self._bloom = None
                self.outbox.put(
                    Frame(image, job.camera, self._index, job.params, now, ms, vitals, bloom, looks, gen.latent(out))
                )
                if stats.generated > 1:
                    interval = max(1e-6, now - self._last_done)
                    if self._stand_in:
                        stats.stand_in_fps = _smooth(stats.stand_in_fps, 1.0 / interval)
                    else:
                        stats.fps = _smooth(stats.fps, 1.0 / interval)
                self._last_done = now
        finally:
            if gen is not None:
                _close(gen)

    def _start_bloom(self, gen: Generator, job: Job) -> Bloom:
        # Each spark gets a seed of its own, so no two look alike.
        if job.spark_image is not None:
            fresh = gen.adopt(job.spark_image)
        else:
            params = {**job.params, "seed": (int(job.params.get("seed", 0)) + 7919 * job.spark) % 2**31}
            fresh = gen.fresh(params)
        return Bloom(fresh, job.camera, int(job.params.get("spark_frames", 30)), self.size)

    def _feed(self, gen: Generator, x: Any, job: Job) -> Any:
        """The generator's input: the warped frame, the loop layers mixed in, the bloom blended in."""
        for layer in job.layers:
            x = gen.mix(x, layer.rgb, weights(layer.opacity, layer.alpha), layer.mode)
        if self._bloom is not None:
            x = self._bloom.apply(x, job.camera, gen)
        return x


def _smooth(fps: float, now: float) -> float:
    return now if fps == 0 else 0.9 * fps + 0.1 * now


LOADER_THREAD = "vj-gen-load"


class _Loader:
    """Builds (and loads) a generator on its own thread."""

    def __init__(self, build: GeneratorFactory) -> None:
        self.done = threading.Event()
        self.result: Generator | None = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._abandoned = False
        self.started = time.monotonic()
        threading.Thread(target=self._run, args=(build,), name=LOADER_THREAD, daemon=True).start()

    def _run(self, build: GeneratorFactory) -> None:
        lower_priority(BACKGROUND_NICE)
        try:
            result = build()
        except Exception as e:  # noqa: BLE001 - reported by the worker, which decides what to do
            self.error = e
            result = None
        with self._lock:
            self.result = result
            self.done.set()
            if self._abandoned and result is not None:
                _close(result)  # nobody will take it: free its memory now

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            if self.result is not None:
                _close(self.result)
                self.result = None


def _as_picture(gen: Generator, frame: Any) -> Any:
    """``frame`` as RGB for whatever generator comes next; None (start afresh) when even that fails."""
    if frame is None or isinstance(frame, np.ndarray):
        return frame
    try:
        return gen.to_display(frame)
    except Exception:  # the generator is failing: its last frame may be lost with it
        log.debug("the failing generator's last frame could not be kept", exc_info=True)
        return None


def _background() -> None:
    """Lower this thread's priority: the generator is background work beside the display and the voice."""
    lower_priority(BACKGROUND_NICE)


def _close(gen: Generator) -> None:
    """Close ``gen`` on a thread of its own: a close() that blocks must never stop the dream."""

    def close() -> None:
        try:
            gen.close()
        except BaseException:
            log.debug("closing generator failed", exc_info=True)

    threading.Thread(target=close, name="vj-gen-close", daemon=True).start()

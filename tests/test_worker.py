import threading
import time

import numpy as np
import pytest

from tests import gens
from vj.engine.worker import GeneratorWorker, Job, Mailbox
from vj.gen import base
from vj.params import ParamStore

SIZE = (64, 64)


def job(camera: np.ndarray | None = None, **kw) -> Job:
    p = ParamStore().values()
    p.update(kw)
    return Job(p, np.zeros(4) if camera is None else camera)


def drive(worker: GeneratorWorker, until, timeout: float = 10.0, moving: bool = False, **params) -> list:
    """Feed jobs and run the watchdog like the loop does, until ``until(frames)`` or the timeout (``moving``: the
    camera zooms in, so every frame is warped)."""
    frames: list = []
    zoom = iter(range(10**9))
    end = time.monotonic() + timeout
    worker.start()
    try:
        while time.monotonic() < end and not until(frames):
            worker.submit(job(np.array([0.001 * next(zoom), 0, 0, 0]) if moving else None, **params))
            worker.check()
            f = worker.poll()
            if f is not None:
                frames.append(f)
            time.sleep(0.005)
    finally:
        # wait for the frame in progress: a thread left inside torch when the tests end aborts the process
        worker.stop(timeout=60)
    return frames


def build(cls):
    return base.factory(f"tests.gens:{cls.__name__}", SIZE)


def test_mailbox_keeps_only_the_newest():
    box: Mailbox[int] = Mailbox()
    assert box.take() is None
    box.put(1)
    box.put(2)
    assert box.latest() == 2 and box.take() == 2 and box.take() is None
    threading.Timer(0.05, box.put, args=(3,)).start()
    assert box.latest(timeout=2) == 3


def test_frames_flow_with_the_job_they_were_made_from():
    w = GeneratorWorker(build(gens.Solid), SIZE, name="solid")
    frames = drive(w, lambda f: len(f) >= 5, prompt="hello")
    assert len(frames) >= 5
    assert all(f.image.shape == (64, 64, 3) for f in frames)
    assert [f.index for f in frames] == sorted({f.index for f in frames})
    assert frames[-1].params["prompt"] == "hello"
    assert w.stats.errors == 0 and w.stats.generated >= 5


def test_a_generator_that_raises_is_counted_rebuilt_and_the_frames_keep_coming():
    w = GeneratorWorker(build(gens.Flaky), SIZE, name="flaky", max_failures=100)
    frames = drive(w, lambda f: len(f) >= 12)
    assert len(frames) >= 12, "frames keep arriving between failures"
    assert w.stats.errors >= 3
    assert w.stats.restarts >= w.stats.errors - 1
    assert "RuntimeError: flaky generator failed on purpose" in (w.stats.last_error or "")
    assert w.stats.fallback is None


def test_a_hung_generator_is_abandoned_and_a_fresh_one_takes_over():
    gens.HangOnce.hung.clear()
    gens.HangOnce.release.clear()
    w = GeneratorWorker(build(gens.HangOnce), SIZE, name="hang")
    try:
        frames = drive(w, lambda f: len(f) >= 6 and gens.HangOnce.hung.is_set())
    finally:
        gens.HangOnce.release.set()
    assert gens.HangOnce.hung.is_set()
    assert w.stats.hangs == 1 and w.stats.restarts >= 1
    assert len(frames) >= 6, "frames came again after the hang"
    assert "hung" in (w.stats.last_error or "")


def test_late_results_of_an_abandoned_thread_are_thrown_away():
    gens.HangOnce.hung.clear()
    gens.HangOnce.release.clear()
    w = GeneratorWorker(build(gens.HangOnce), SIZE, name="hang")
    drive(w, lambda f: w.stats.hangs == 1)
    w.poll()  # whatever the fresh thread made before the stop
    before = w.stats.generated
    gens.HangOnce.release.set()  # the stuck generate() returns now, into an abandoned thread
    time.sleep(0.2)
    assert w.stats.generated == before
    assert w.poll() is None


def test_a_generator_that_cannot_load_falls_back():
    fallback = base.factory("sketch", SIZE)
    w = GeneratorWorker(build(gens.Broken), SIZE, name="broken", fallback=fallback, max_failures=2)
    frames = drive(w, lambda f: len(f) >= 3)
    assert w.stats.fallback == "sketch"
    assert w.stats.errors >= 2 and "OSError: no weights here" in ((w.stats.error_kinds and w.stats.last_error) or "")
    assert len(frames) >= 3


def is_blue(frame) -> bool:
    return bool(frame.image[..., 2].mean() > 200 and frame.image[..., 0].mean() < 30)


def test_a_slow_loading_generator_has_a_stand_in_until_it_is_ready():
    w = GeneratorWorker(build(gens.SlowLoad), SIZE, name="slow-load", fallback=base.factory("sketch", SIZE))
    seen: list[tuple[str | None, str]] = []

    def until(frames):
        seen.append((w.stats.stand_in, w.stats.state))
        return len(frames) >= 2 and is_blue(frames[-1]) and is_blue(frames[-2])

    frames = drive(w, until, timeout=15)
    first_blue = next(i for i, f in enumerate(frames) if is_blue(f))
    assert first_blue >= 1, "the stand-in dreamt while the generator loaded"
    assert not any(is_blue(f) for f in frames[:first_blue]) and all(is_blue(f) for f in frames[first_blue:])
    assert ("sketch", "loading") in seen
    assert w.stats.stand_in is None and w.stats.state == "running" and w.stats.fallback is None
    assert w.stats.generated_by["sketch"] == first_blue and w.stats.generated_by["slow-load"] >= 2
    assert w.stats.load_s is not None and w.stats.load_s >= 1.0
    assert w.stats.errors == 0


def test_a_model_that_is_not_there_falls_back_at_once():
    w = GeneratorWorker(build(gens.NoModel), SIZE, name="no-model", fallback=base.factory("sketch", SIZE))
    frames = drive(w, lambda f: w.stats.fallback is not None and len(f) >= 5, timeout=15)
    assert w.stats.fallback == "sketch" and w.stats.stand_in is None
    assert w.stats.errors == 1, "a missing model is not retried"
    assert "not on this machine" in (w.stats.last_error or "")
    assert len(frames) >= 5 and not any(is_blue(f) for f in frames)


def test_a_stand_in_that_hangs_is_replaced_and_the_load_carries_on(monkeypatch):
    from vj.engine import worker

    monkeypatch.setattr(worker, "STAND_IN_TIMEOUT", 0.3)  # the stand-in's own 0.3 s, not the 10 s a load allows
    gens.SlowLoad.loaded = gens.SlowLoad.closed = 0
    gens.HangOnce.hung.clear()
    gens.HangOnce.release.clear()
    w = GeneratorWorker(build(gens.SlowLoad), SIZE, name="slow-load", fallback=build(gens.HangOnce))
    try:
        frames = drive(w, lambda f: len(f) >= 2 and is_blue(f[-1]), timeout=15)
    finally:
        gens.HangOnce.release.set()
    assert gens.HangOnce.hung.is_set() and w.stats.hangs == 1
    assert is_blue(frames[-1]) and w.stats.stand_in is None
    assert gens.SlowLoad.loaded == 1, "the restarted stand-in did not start a second load"


def test_switching_away_while_loading_abandons_the_load():
    gens.SlowLoad.loaded = gens.SlowLoad.closed = 0
    w = GeneratorWorker(build(gens.SlowLoad), SIZE, name="slow-load", fallback=base.factory("sketch", SIZE))
    w.start()
    try:
        deadline = time.monotonic() + 5
        while w.stats.stand_in is None and time.monotonic() < deadline:
            w.submit(job())
            time.sleep(0.01)
        assert w.stats.stand_in == "sketch"
        w.switch(build(gens.Solid), "solid")
        deadline = time.monotonic() + 5
        while gens.SlowLoad.loaded == 0 and time.monotonic() < deadline:
            w.submit(job())
            w.poll()
            time.sleep(0.01)
        time.sleep(0.1)
        assert w.stats.name == "solid" and w.stats.stand_in is None
        assert gens.SlowLoad.closed == 1, "the generator loaded for nobody was closed"
        frame = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (frame is None or is_blue(frame)):
            w.submit(job())
            frame = w.poll() or frame
            time.sleep(0.01)
        assert not is_blue(frame)
    finally:
        w.stop()


def test_frames_of_the_wrong_shape_are_errors_not_crashes():
    w = GeneratorWorker(build(gens.WrongShape), SIZE, name="wrong", max_failures=100)
    frames = drive(w, lambda f: w.stats.errors >= 2)
    assert frames == []
    assert "expected uint8 (64, 64, 3)" in (w.stats.last_error or "")


def test_freeze_stops_generation():
    w = GeneratorWorker(build(gens.Solid), SIZE, name="solid")
    end = time.monotonic() + 0.3
    frames = drive(w, lambda f: time.monotonic() > end, freeze=True)
    assert frames == [] and w.stats.generated == 0


def test_the_generator_is_capped_at_the_display_rate():
    w = GeneratorWorker(build(gens.Solid), SIZE, name="solid", max_fps=20)
    end = time.monotonic() + 0.5
    drive(w, lambda f: time.monotonic() > end)
    assert w.stats.generated <= 20 * 0.5 + 3


@pytest.mark.parametrize("name", ["nope", "tests.gens:Missing", "no.such.module:X"])
def test_unknown_generators_are_clear_errors(name):
    from vj.errors import GeneratorError

    with pytest.raises(GeneratorError, match="generator"):
        base.factory(name, SIZE)


def test_a_model_that_loads_and_then_fails_every_frame_falls_back_instead_of_reloading_forever():
    gens.LoadsThenFails.loads = 0
    w = GeneratorWorker(build(gens.LoadsThenFails), SIZE, name="model", fallback=base.factory("sketch", SIZE))
    frames = drive(w, lambda f: w.stats.fallback is not None and len(f) >= 5, timeout=120)
    assert w.stats.fallback == "sketch" and len(frames) >= 5
    assert gens.LoadsThenFails.loads == 3, "loaded as often as max_failures allows, then left alone"
    assert "do not fit" in (w.stats.last_error or "")


def test_after_a_hang_the_next_generator_starts_from_the_last_picture_not_the_hung_ones_frame():
    gens.OwnFramesHangOnce.hung.clear()
    gens.OwnFramesHangOnce.release.clear()
    w = GeneratorWorker(build(gens.OwnFramesHangOnce), SIZE, name="model", fallback=base.factory("sketch", SIZE))
    try:
        # after the hang a stand-in dreams (from the last picture) while the model loads again, then it takes over
        frames = drive(
            w,
            lambda f: w.stats.hangs == 1 and w.stats.generated_by.get("model", 0) >= 5,
            timeout=120,
            moving=True,
        )
    finally:
        gens.OwnFramesHangOnce.release.set()
    assert w.stats.hangs == 1 and w.stats.generated_by.get("model", 0) >= 5, w.stats
    assert w.stats.generated_by.get("sketch", 0) >= 1, "the stand-in dreamed while the model loaded again"
    assert w.stats.fallback is None and w.stats.errors == 1, w.stats.last_error
    assert frames[-1].image.shape == (*SIZE[::-1], 3)

"""Every way a generator can break: the worker counts it, replaces it, and frames keep coming — never black."""

from __future__ import annotations

import numpy as np
import pytest

from tests import faults
from tests.test_worker import drive
from vj.engine import worker as worker_module
from vj.engine.worker import GeneratorWorker
from vj.gen import base

SIZE = (64, 64)


@pytest.fixture(autouse=True)
def release_blocked_threads():
    faults.RELEASE.clear()
    yield
    faults.RELEASE.set()  # stuck threads finish and go


def run(cls, until_frames: int = 20, timeout: float = 60.0) -> tuple[list, GeneratorWorker]:
    """The worker driven as the loop drives it (submit, watchdog, poll) until enough frames came."""
    w = GeneratorWorker(
        base.factory(f"tests.faults:{cls.__name__}", SIZE),
        SIZE,
        name=cls.__name__,
        fallback=base.factory("sketch", SIZE),
    )
    return drive(w, lambda frames: len(frames) >= until_frames, timeout=timeout), w


@pytest.mark.parametrize("cls", faults.ALL, ids=lambda c: c.__name__)
def test_frames_keep_coming_and_are_never_black(cls, monkeypatch):
    monkeypatch.setattr(worker_module, "BUILD_TIMEOUT", 0.5)
    monkeypatch.setattr(worker_module, "LOAD_TIMEOUT", 1.0)
    frames, w = run(cls)
    assert len(frames) >= 20, f"frames stopped coming: {w.stats}"
    levels = [float(f.image.mean()) for f in frames]
    assert min(levels) > 5, "no black frame"
    assert all(f.image.dtype == np.uint8 and f.image.shape == (64, 64, 3) for f in frames)


@pytest.mark.parametrize("cls", [faults.ExitsTheInterpreter, faults.RaisesKeyboardInterrupt])
def test_system_exit_and_keyboard_interrupt_from_a_generator_are_failures_not_the_end(cls):
    frames, w = run(cls)
    assert w.stats.errors >= 3 and w.stats.fallback == "sketch"
    assert len(frames) >= 20, "the worker thread lived on"


def test_a_constructor_that_blocks_is_abandoned_and_the_fallback_dreams(monkeypatch):
    monkeypatch.setattr(worker_module, "BUILD_TIMEOUT", 0.5)
    frames, w = run(faults.BlocksInConstructor)
    assert w.stats.hangs == 1 and w.stats.fallback == "sketch"
    assert "building the generator hung" in (w.stats.last_error or "")
    assert {f.params is not None for f in frames} == {True} and w.stats.generated_by.get("sketch", 0) >= 20


def test_a_slow_load_that_never_ends_gives_up_and_the_stand_in_stays(monkeypatch):
    monkeypatch.setattr(worker_module, "LOAD_TIMEOUT", 1.0)
    _, w = run(faults.BlocksInSlowLoad, until_frames=30)
    assert w.stats.fallback == "sketch" and w.stats.stand_in is None
    assert "did not finish" in (w.stats.last_error or "")


def test_a_close_that_blocks_never_stops_generation():
    frames, w = run(faults.BlocksInClose, until_frames=40)
    assert len(frames) >= 40 and w.stats.errors >= 1


def test_the_stand_in_rate_is_not_credited_to_the_model_loading():
    _, w = run(faults.BlocksInSlowLoad, until_frames=15)
    assert w.stats.stand_in == "sketch" and w.stats.stand_in_fps > 0
    assert w.stats.fps == 0.0, "the model made no frame yet"
    assert w.stats.describe().startswith("BlocksInSlowLoad loading, sketch")

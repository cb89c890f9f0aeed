"""Generators that misbehave on purpose, for tests (usable as --generator tests.gens:Name)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from vj.gen.base import Generator


class Solid(Generator):
    """A flat colour that brightens a little each frame: easy to recognise on screen."""

    name = "solid"

    def __init__(self, size: tuple[int, int] = (64, 64), **options: Any) -> None:
        super().__init__(size)
        self.n = 0

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        self.n += 1
        return np.full((self.height, self.width, 3), (200, 40 + self.n % 100, 10), np.uint8)


class Flaky(Solid):
    """Raises on every third frame, counted across rebuilds."""

    name = "flaky"
    calls = itertools.count(1)

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        if next(Flaky.calls) % 3 == 0:
            raise RuntimeError("flaky generator failed on purpose")
        return super().generate(image, params)


class Slow(Solid):
    """Takes 100 ms a frame: a 10 fps generator. Paints stripes, so motion shows."""

    name = "slow"

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        time.sleep(0.1)
        img = super().generate(image, params)
        img[:, (np.arange(self.width) // 8) % 2 == 0] //= 3
        return img


class HangOnce(Solid):
    """Hangs on its second frame (until released); fine after that."""

    name = "hang-once"
    frame_timeout = 0.3
    release = threading.Event()
    hung = threading.Event()

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        if self.n == 1 and not HangOnce.hung.is_set():
            HangOnce.hung.set()
            HangOnce.release.wait(10)
        return super().generate(image, params)


class Broken(Generator):
    """Cannot even be built."""

    name = "broken"

    def __init__(self, size: tuple[int, int] = (64, 64), **options: Any) -> None:
        raise OSError("no weights here")


class WrongShape(Solid):
    name = "wrong-shape"

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        return np.zeros((3, 3), np.uint8)


class SlowLoad(Generator):
    """Takes a second to load (like model weights), then paints blue; tells its loads apart."""

    name = "slow-load"
    loads_slowly = True
    loaded = 0
    closed = 0

    def load(self) -> None:
        time.sleep(1.0)
        SlowLoad.loaded += 1

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        return np.full((self.height, self.width, 3), (10, 20, 230), np.uint8)

    def close(self) -> None:
        SlowLoad.closed += 1


class NoModel(SlowLoad):
    """Its weights are not on this machine: loading fails for good."""

    name = "no-model"

    def load(self) -> None:
        from vj.errors import GeneratorUnusable

        time.sleep(0.2)
        raise GeneratorUnusable("model 'x/y' is not on this machine")


class GpuModel(Generator):
    """Loads slowly like a model on the GPU (as long as ``gate`` stays shut), paints green; counts its loads and
    closes, and says so through events a test can wait on. ``reset()`` before each test."""

    name = "gpu-model"
    loads_slowly = True
    loaded = 0
    closed = 0
    gate = threading.Event()  # a load waits for this (set: loads at once)
    loading = threading.Event()  # set when a load starts waiting at the gate
    closed_once = threading.Event()

    @classmethod
    def reset(cls) -> None:
        cls.loaded = cls.closed = 0
        cls.gate.set()
        cls.loading.clear()
        cls.closed_once.clear()

    def load(self) -> None:
        GpuModel.loading.set()
        GpuModel.gate.wait(30)
        GpuModel.loaded += 1
        self.open = True

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        return np.full((self.height, self.width, 3), (20, 220, 40), np.uint8)

    def close(self) -> None:
        if getattr(self, "open", False):
            self.open = False
            GpuModel.closed += 1
            GpuModel.closed_once.set()


def is_green(image: np.ndarray) -> bool:
    return bool(image[..., 1].mean() > 200 and image[..., 0].mean() < 40 and image[..., 2].mean() < 60)


class OwnFrame:
    """A frame of a generator's own kind (as a tensor on its device is): only that generator can read it."""

    def __init__(self, picture: np.ndarray) -> None:
        self.picture = picture


class LoadsThenFails(SlowLoad):
    """Loads fine, then fails on every frame (a model whose parts do not fit each other); counts its loads."""

    name = "loads-then-fails"
    loads = 0

    def load(self) -> None:
        time.sleep(0.1)
        LoadsThenFails.loads += 1

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        raise RuntimeError("the parts of this model do not fit")


class OwnFramesHangOnce(Generator):
    """Slow to load (the second time); its frames are ``OwnFrame``s; hangs on its third frame (until released)."""

    name = "own-frames"
    loads_slowly = True
    frame_timeout = 0.3
    release = threading.Event()
    hung = threading.Event()

    def __init__(self, size: tuple[int, int] = (64, 64), **options: Any) -> None:
        super().__init__(size)
        self.n = 0

    def load(self) -> None:
        if OwnFramesHangOnce.hung.is_set():  # loading again after the hang: the stand-in dreams meanwhile
            time.sleep(1.0)

    def generate(self, image: Any, params: Mapping[str, Any]) -> OwnFrame:
        self.n += 1
        if self.n == 3 and not OwnFramesHangOnce.hung.is_set():
            OwnFramesHangOnce.hung.set()
            OwnFramesHangOnce.release.wait(10)
        return OwnFrame(np.full((self.height, self.width, 3), (30, 200, 90), np.uint8))

    def adopt(self, image: Any) -> OwnFrame:
        return image if isinstance(image, OwnFrame) else OwnFrame(np.asarray(image))

    def warp(self, frame: Any, delta: Any) -> Any:
        assert isinstance(frame, OwnFrame), "only its own frames"
        return frame

    def to_display(self, frame: Any) -> np.ndarray:
        return frame.picture

"""Fault injection: generators that break in every way a real model can, for the worker and the show to survive.

Each is usable as ``--generator tests.faults:Name``. Blocking ones wait on ``RELEASE`` so a test can let the stuck
thread go at its end.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from tests.gens import Solid
from vj.gen.base import Generator

RELEASE = threading.Event()  # set by tests at the end: blocked threads finish


class RaisesAlways(Solid):
    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        raise RuntimeError("this generator always fails")


class RaisesSometimes(Solid):
    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        out = super().generate(image, params)
        if self.n % 4 == 0:
            raise ValueError("every fourth frame fails")
        return out


class HangsInGenerate(Solid):
    frame_timeout = 0.3

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        out = super().generate(image, params)
        if self.n == 3:
            RELEASE.wait()
        return out


class BlocksInConstructor(Solid):
    def __init__(self, size: tuple[int, int] = (64, 64), **options: Any) -> None:
        RELEASE.wait()
        super().__init__(size)


class BlocksInSlowLoad(Solid):
    loads_slowly = True

    def load(self) -> None:
        RELEASE.wait()


class BlocksInClose(Solid):
    """Fails now and then (so the worker closes it), and its close() never returns."""

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        out = super().generate(image, params)
        if self.n == 2:
            raise RuntimeError("fail, to be closed")
        return out

    def close(self) -> None:
        RELEASE.wait()


class ExitsTheInterpreter(Solid):
    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        raise SystemExit(3)


class RaisesKeyboardInterrupt(Solid):
    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        raise KeyboardInterrupt


class _Garbage(Generator):
    value: Any = None

    def generate(self, image: Any, params: Mapping[str, Any]) -> Any:
        return self.value


class ReturnsNone(_Garbage):
    value = None


class ReturnsAList(_Garbage):
    value: ClassVar[list[list[int]]] = [[1, 2, 3]]


class ReturnsWrongShape(_Garbage):
    value = np.zeros((10, 10), np.uint8)


class ReturnsFloatNaN(_Garbage):
    value = np.full((64, 64, 3), np.nan, np.float32)


class ReturnsWrongDtype(_Garbage):
    value = np.full((64, 64, 3), 7, np.int64)


ALL = [
    RaisesAlways,
    RaisesSometimes,
    HangsInGenerate,
    BlocksInConstructor,
    BlocksInSlowLoad,
    BlocksInClose,
    ExitsTheInterpreter,
    RaisesKeyboardInterrupt,
    ReturnsNone,
    ReturnsAList,
    ReturnsWrongShape,
    ReturnsFloatNaN,
    ReturnsWrongDtype,
]

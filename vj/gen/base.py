"""The generator contract, and where generators are found by name.

A generator turns the previous frame, after the motion warp, into the next one::

    frame = generator.generate(warped_previous_frame, params)   # None on the very first frame

``params`` is a snapshot of every parameter (prompt, strength, seed, chaos...). Frames are whatever the generator
likes to hold (an H x W x 3 uint8 array, or a tensor on its device); ``warp`` moves one by a camera difference and
``to_display`` turns one into H x W x 3 uint8 RGB for the window, ``mix`` blends a layer or a spark into one, and
``fresh`` makes a new image for a spark. The defaults handle numpy frames on the CPU, so a simple generator only
writes ``generate``.

``--generator NAME`` takes a name from ``GENERATORS`` or ``package.module:Class`` for a generator of your own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from vj.errors import GeneratorError
from vj.frame import motion
from vj.gen import GENERATORS


class Generator:
    name = "generator"
    # How long one generate() may run before the worker gives up on it as hung and starts a fresh one.
    frame_timeout = 10.0
    # Loading takes long (model weights): the worker keeps a stand-in dreaming meanwhile.
    loads_slowly = False

    def __init__(self, size: tuple[int, int] = (512, 512), **options: Any) -> None:
        if options:
            raise GeneratorError(f"{self.name} takes no options, got {', '.join(sorted(options))}")
        self.width, self.height = size

    def load(self) -> None:
        """Slow set-up (weights, compilation). Runs on the worker thread while the window keeps going."""

    def generate(self, image: Any, params: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def adopt(self, image: np.ndarray) -> Any:
        """An H x W x 3 uint8 RGB picture (another generator's last frame, a stored dream) as this one's frame."""
        return image

    def fresh(self, params: Mapping[str, Any]) -> Any:
        """A new image of the prompt, owing nothing to the current frame: what a spark blooms in."""
        return self.generate(None, params)

    def warp(self, frame: Any, delta: motion.Camera) -> Any:
        return motion.warp(frame, delta)

    def mix(self, frame: Any, other: Any, weights: float | np.ndarray, mode: str = "normal") -> Any:
        """``frame`` with ``other`` blended in (a layer, a spark); ``weights`` a number or an H x W map 0..1."""
        from vj.frame.compose import blend

        return blend(frame, other, mode, weights)

    def to_display(self, frame: Any) -> np.ndarray:
        return frame

    def latent(self, frame: Any) -> Any:
        """The latent behind ``frame``, kept with a stored dream (None for generators without one)."""
        return None

    def report(self) -> dict[str, Any] | None:
        """Figures of its own for the report's generator section (a remote generator's node), or None."""
        return None

    def close(self) -> None:
        """Free what the generator holds. Must be safe to call twice."""


GeneratorFactory = Callable[[], Generator]


def find(name: str) -> type[Generator]:
    """The generator class for a registered name or a ``module:Class`` path."""
    path = GENERATORS.get(name, (name, ""))[0]
    if ":" not in path:
        known = ", ".join(GENERATORS)
        raise GeneratorError(f"unknown generator '{name}' (choose {known}, or give package.module:Class)")
    module_name, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        raise GeneratorError(f"generator '{name}': cannot import {module_name} ({e})") from e
    except AttributeError:
        raise GeneratorError(f"generator '{name}': {module_name} has no {attr}") from None
    if not callable(cls):
        raise GeneratorError(f"generator '{name}': {path} is not a class")
    return cls


def factory(name: str, size: tuple[int, int], **options: Any) -> GeneratorFactory:
    """A function that builds (and loads) a fresh generator: the worker calls it again after a crash."""
    cls = find(name)

    def build() -> Generator:
        gen = cls(size, **options)
        gen.load()
        return gen

    build.__name__ = f"build_{getattr(cls, 'name', name)}"
    build.slow = bool(getattr(cls, "loads_slowly", False))  # type: ignore[attr-defined]
    return build


def check_frame(image: Any, size: tuple[int, int]) -> np.ndarray:
    """``image`` if it is a displayable frame of ``size``; otherwise a GeneratorError that says what is wrong."""
    w, h = size
    if not isinstance(image, np.ndarray):
        raise GeneratorError(f"frame is {type(image).__name__}, not a numpy array")
    if image.shape != (h, w, 3) or image.dtype != np.uint8:
        raise GeneratorError(f"frame is {image.dtype} {image.shape}, expected uint8 {(h, w, 3)}")
    return image

"""The decay generator: a diagnostic that lets every frame fade toward flat grey.

It does what a tired img2img loop does, only faster: contrast, colour and detail melt away within a few seconds.
Run it to watch sparks rescue a dying dream: ``vj run --generator decay``. A fresh image (its first frame, or a
spark's) is a burst of coloured noise at three scales.

It is marked ``diagnostic``: its frames are never kept as dreams (that noise scores higher than any real dream, and
replaying it would project coloured confetti).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from vj.gen.base import Generator

FADE = 0.006  # of the way to grey, per frame: about four seconds from a fresh image to stale at 60 frames/s


class DecayGenerator(Generator):
    name = "decay"
    frame_timeout = 2.0
    diagnostic = True  # a test pattern, not a dream: the dream keeper leaves its frames alone

    def __init__(self, size: tuple[int, int] = (512, 512), **options: Any) -> None:
        super().__init__(size, **options)
        self._rng = np.random.default_rng(0)

    def generate(self, image: np.ndarray | None, params: Mapping[str, Any]) -> np.ndarray:
        if image is None:
            return self._burst(int(params.get("seed", 0)))
        faded = image.astype(np.float32) * (1.0 - FADE) + 128.0 * FADE
        # Round stochastically: plain rounding would undo a 0.6% step near grey and freeze the fade half way.
        faded += self._rng.random(faded.shape, dtype=np.float32)
        return np.clip(faded, 0, 255).astype(np.uint8)

    def _burst(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        w, h = self.width, self.height
        acc = np.zeros((h, w, 3), np.float32)
        for scale, weight in ((24, 1.0), (8, 0.5), (3, 0.5)):
            small = rng.uniform(0, 255, (max(2, h // scale), max(2, w // scale), 3)).astype(np.float32)
            acc += weight * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        acc = (acc - acc.mean()) * (85.0 / (acc.std() + 1e-6)) + 128
        return np.clip(acc, 0, 255).astype(np.uint8)

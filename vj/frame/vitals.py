"""Frame vitals and the spark's bloom: pure measures and masks on frames, no state of the show.

``measure`` reads a frame at 96x96 (brightness, contrast, detail, colour, change from the previous frame);
``stagnant`` says whether those vitals look like a dying dream; ``Bloom`` grows a fresh image into the feedback
loop through a round, Gaussian-edged mask. The loop's ``vj.engine.spark.Sparks`` decides when to spark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

VITALS_SIZE = 96
# What healthy frames measure (sketch at 512x512, 96 px vitals): contrast ~70, detail ~40, change ~3 per frame.
# Thresholds are fractions of these, scaled by the sensitivity.
HEALTHY_CONTRAST = 50.0
HEALTHY_DETAIL = 25.0
HEALTHY_CHANGE = 1.5


@dataclass(frozen=True, slots=True)
class Vitals:
    brightness: float  # mean luminance 0..255
    contrast: float  # luminance standard deviation
    detail: float  # mean absolute Laplacian of the luminance
    colour: float  # spread of the chroma channels
    change: float  # mean absolute luminance change from the previous frame (0 for the first)


def measure(image: np.ndarray, previous: np.ndarray | None) -> tuple[Vitals, np.ndarray]:
    """The vitals of an RGB frame, and its small luminance for the next call's ``previous``."""
    small = cv2.resize(image, (VITALS_SIZE, VITALS_SIZE), interpolation=cv2.INTER_AREA)
    ycc = cv2.cvtColor(small, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    luma = ycc[..., 0]
    change = 0.0 if previous is None else float(np.abs(luma - previous).mean())
    vitals = Vitals(
        brightness=float(luma.mean()),
        contrast=float(luma.std()),
        detail=float(np.abs(cv2.Laplacian(luma, cv2.CV_32F)).mean()),
        colour=float(math.sqrt(float(ycc[..., 1].var() + ycc[..., 2].var()))),
        change=change,
    )
    return vitals, luma


def stagnant(v: Vitals, sensitivity: float, dreaming: bool = True) -> bool:
    """Whether one frame looks stale. ``sensitivity`` 0 never says so; 1 says so early."""
    if sensitivity <= 0:
        return False
    level = 0.6 * sensitivity
    if v.contrast < level * HEALTHY_CONTRAST or v.detail < level * HEALTHY_DETAIL:
        return True  # flat grey, black or white, or all detail melted away
    # A picture that stopped moving while it should be re-imagining itself is stale too.
    return dreaming and v.change < 0.1 * level * HEALTHY_CHANGE


class Bloom:
    """A fresh image growing into the feedback loop from the centre, one generated frame at a time."""

    START, END = 0.10, 0.80  # mask radius as a fraction of the half diagonal, first and last frame
    EDGE = 0.12  # Gaussian edge width, same units
    STRENGTH = 0.7  # how much of the fresh image each frame takes inside the mask

    def __init__(self, fresh: Any, camera: np.ndarray, frames: int, size: tuple[int, int]) -> None:
        self.fresh, self.camera = fresh, camera
        self.frames = max(1, int(frames))
        self.step = 0
        w, h = size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        # Distance from the centre, 1 at the corners.
        self._r = np.sqrt(((xs - (w - 1) / 2) / (w / 2)) ** 2 + ((ys - (h - 1) / 2) / (h / 2)) ** 2) / math.sqrt(2)

    @property
    def done(self) -> bool:
        return self.step >= self.frames

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.frames)

    def radius(self, step: int) -> float:
        t = step / max(1, self.frames - 1)
        return self.START + (self.END - self.START) * min(1.0, t)

    def mask(self, step: int) -> np.ndarray:
        """Weights 0..1 for one step: 1 inside the radius, a Gaussian fall-off outside."""
        over = np.maximum(self._r - self.radius(step), 0.0)
        return np.exp(-0.5 * (over / self.EDGE) ** 2).astype(np.float32)

    def apply(self, frame: Any, camera: np.ndarray, gen: Any) -> Any:
        """``frame`` with this step of the bloom blended in. The generator warps and mixes its own frames, so the
        fresh image moves with the camera and blooms on whatever device the generator keeps frames on."""
        fresh = gen.warp(self.fresh, camera - self.camera)
        out = gen.mix(frame, fresh, self.mask(self.step) * self.STRENGTH)
        self.step += 1
        return out

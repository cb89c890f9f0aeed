"""Sparks: noticing that the dream is dying, and blooming a fresh image into it.

Recursive img2img loops lose detail and drift toward flat grey or black. Every generated frame gets its
``Vitals`` measured at 96x96 on the generator's thread (a fraction of a millisecond): brightness, contrast
(luminance spread), detail (high-frequency energy), colour variety and change from the previous frame. The
loop's ``Sparks`` reads them: when contrast or detail fall under thresholds set by ``spark_sensitivity`` for a few
frames in a row (or the picture stops changing while it should be dreaming), it asks for a spark. Sparks asked
for by hand (``/vj/spark``, Space, a pad, the voice) come the same way; ``spark_cooldown`` keeps either kind from
storming.

A spark is carried out by the generator worker: it asks the generator for a fresh image of the current prompt
and ``Bloom`` blends it into the feedback loop through a round, Gaussian-edged mask that grows from the centre
(10% to 80% of the frame) over ``spark_frames`` generated frames. No frame is a hard cut and the display never
waits: it keeps showing the loop, which takes the new image in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
HOLD = 6  # stagnant readings in a row before an automatic spark


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


class Sparks:
    """The loop's side: decides when to spark, counts, keeps the cooldown."""

    def __init__(self) -> None:
        self.seq = 0  # the job carries this; the worker starts a bloom when it changes
        self.auto = 0
        self.manual = 0
        self.refused = 0  # asked for by hand during the cooldown
        self.observed = 0
        self.stagnant_frames = 0
        self.last = -math.inf
        self._run = 0
        self.blooming = False

    @property
    def total(self) -> int:
        return self.auto + self.manual

    def request(self, kind: str, now: float, cooldown: float) -> bool:
        if now - self.last < cooldown:
            if kind == "manual":
                self.refused += 1  # automatic ones just wait for the cooldown to end
            return False
        self.seq += 1
        self.last = now
        self._run = 0
        if kind == "auto":
            self.auto += 1
        elif kind == "manual":
            self.manual += 1
        return True  # "replay": a stored dream blooming in, not counted as a spark

    def observe(self, v: Vitals, params: Mapping[str, Any], now: float, blooming: bool) -> bool:
        """Read one generated frame's vitals; True when it started an automatic spark."""
        self.observed += 1
        self.blooming = blooming
        dreaming = float(params.get("strength", 0.5)) > 0.05
        if not stagnant(v, float(params.get("spark_sensitivity", 0.5)), dreaming):
            self._run = 0
            return False
        self.stagnant_frames += 1
        self._run += 1
        if blooming or self._run < HOLD:
            return False
        return self.request("auto", now, float(params.get("spark_cooldown", 2.0)))

    def report(self) -> dict[str, Any]:
        return {
            "sparks": self.total,
            "sparks_auto": self.auto,
            "sparks_manual": self.manual,
            "sparks_refused": self.refused,
            "stagnant_frames": self.stagnant_frames,
            "stagnant_share": round(self.stagnant_frames / self.observed, 3) if self.observed else 0.0,
        }


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

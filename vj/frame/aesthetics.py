"""How good a dream is: aesthetics of the frame, novelty against what is kept, optionally CLIP's opinion.

    aesthetics   sharpness (variance of the Laplacian), contrast (luminance spread) and colourfulness (Hasler and
                 Süsstrunk's measure), each mapped onto 0..1 — cheap enough for every generated frame (at 128 px)
    novelty      1 - the highest cosine similarity to the dreams already kept (small colour thumbnails)
    clip         how well the image matches its prompt, when a CLIP model is given (see ``vj.dreams.clip``)

The total is a weighted mean: aesthetics 0.6, novelty 0.2, CLIP 0.2 (without CLIP, aesthetics 0.75, novelty 0.25).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

SIZE = 128


@dataclass(frozen=True, slots=True)
class Aesthetics:
    sharpness: float
    contrast: float
    colourfulness: float

    @property
    def mean(self) -> float:
        return (self.sharpness + self.contrast + self.colourfulness) / 3


def aesthetics(image: np.ndarray) -> Aesthetics:
    """0..1 measures of an H x W x 3 uint8 RGB frame."""
    small = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    lap = float(cv2.Laplacian(grey, cv2.CV_32F).var())
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    colour = math.sqrt(float(rg.var() + yb.var())) + 0.3 * math.sqrt(float(rg.mean() ** 2 + yb.mean() ** 2))
    return Aesthetics(
        sharpness=min(1.0, math.log1p(lap) / math.log1p(3000.0)),
        contrast=min(1.0, float(grey.std()) / 70.0),
        colourfulness=min(1.0, colour / 110.0),
    )


def features(image: np.ndarray) -> np.ndarray:
    """A unit vector that is close for similar pictures: a 12x12 colour thumbnail around its mean."""
    thumb = cv2.resize(image, (12, 12), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    thumb -= thumb.mean()
    norm = float(np.linalg.norm(thumb))
    return (thumb / norm if norm > 1e-6 else thumb).astype(np.float32)


def novelty(feature: np.ndarray, kept: list[np.ndarray]) -> float:
    if not kept:
        return 1.0
    similarity = max(float(np.dot(feature, k)) for k in kept)
    return min(1.0, max(0.0, 1.0 - similarity))


@dataclass(frozen=True, slots=True)
class Score:
    total: float
    sharpness: float
    contrast: float
    colourfulness: float
    novelty: float
    clip: float | None = None

    def parts(self) -> dict[str, float | None]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def score(a: Aesthetics, nov: float, clip: float | None = None) -> Score:
    total = 0.75 * a.mean + 0.25 * nov if clip is None else 0.6 * a.mean + 0.2 * nov + 0.2 * clip
    return Score(round(total, 5), a.sharpness, a.contrast, a.colourfulness, nov, clip)

"""Compositing on uint8 frames: blend modes, cover-scaling, mix weights.

Blend modes follow the usual formulas on 0..1 values, then mix by opacity:

    normal     l                       multiply    b * l
    add        min(1, b + l)           difference  |b - l|
    screen     1 - (1 - b)(1 - l)      result      b + (mode(b, l) - b) * opacity * layer alpha
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import cv2
import numpy as np

BlendMode = Literal["normal", "add", "screen", "multiply", "difference"]
BLEND_MODES: tuple[str, ...] = get_args(BlendMode)


def blend(base: np.ndarray, layer: np.ndarray, mode: str, opacity: float | np.ndarray) -> np.ndarray:
    """``base`` with ``layer`` mixed in; uint8 images of the same shape; ``opacity`` a number or an H x W map."""
    if mode == "normal":
        mixed = layer
    elif mode == "add":
        mixed = cv2.add(base, layer)
    elif mode == "screen":
        mixed = 255 - cv2.multiply(255 - base, 255 - layer, scale=1 / 255)
    elif mode == "multiply":
        mixed = cv2.multiply(base, layer, scale=1 / 255)
    elif mode == "difference":
        mixed = cv2.absdiff(base, layer)
    else:
        raise ValueError(f"unknown blend mode {mode!r}")
    if isinstance(opacity, np.ndarray):
        w = np.clip(opacity, 0.0, 1.0).astype(np.float32)
        return cv2.blendLinear(base, mixed, 1.0 - w, w)
    o = float(opacity)
    if o <= 0.0:
        return base
    if o >= 1.0:
        return mixed if mixed is not layer else layer.copy()
    return cv2.addWeighted(base, 1.0 - o, mixed, o, 0.0)


def cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fill ``size`` (width, height), the overflow cropped evenly."""
    w, h = size
    ih, iw = image.shape[:2]
    scale = max(w / iw, h / ih)
    sw, sh = max(w, round(iw * scale)), max(h, round(ih * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(image, (sw, sh), interpolation=interp)
    x, y = (sw - w) // 2, (sh - h) // 2
    return np.ascontiguousarray(scaled[y : y + h, x : x + w])


class LayerInput(NamedTuple):
    """One layer's contribution to one generated frame (handed to the worker)."""

    rgb: np.ndarray
    alpha: np.ndarray | None  # uint8 H x W, or None for opaque
    mode: str
    opacity: float


def weights(opacity: float, alpha: np.ndarray | None) -> float | np.ndarray:
    return opacity if alpha is None else alpha.astype(np.float32) * (opacity / 255.0)

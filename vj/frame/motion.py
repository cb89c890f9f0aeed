"""Zoom, pan and rotate: the camera that flies through the dream.

The loop integrates the motion rates into a *camera*: four running sums (log zoom, angle, pan x, pan y). They
grow linearly with time, never exponentially, so float64 stays exact through a night-long set. A frame remembers
the camera it was made at; the warp between two moments is a function of the cameras' difference alone. The
generator worker warps its previous frame by (camera of this job - camera of the last one); the display warps the
newest frame forward by (camera now - camera of that frame), so motion stays smooth at the display rate however
slowly the generator runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

# Rates at 1.0 (the top of their -1..1 range), per second, before `speed`.
ZOOM_PER_S = math.log(2.0)  # zoom 1.0 doubles the size every second
TURN_PER_S = math.pi / 2  # rotate 1.0 turns a quarter turn every second
PAN_PER_S = 0.5  # pan 1.0 crosses half the frame's height every second

Camera = np.ndarray  # float64 (4,): log zoom, angle (rad, clockwise), pan x, pan y (frame heights; +x right, +y up)


def new_camera() -> Camera:
    return np.zeros(4, np.float64)


def advance(camera: Camera, params: Mapping[str, Any], dt: float) -> Camera:
    """The camera after ``dt`` seconds at the current motion rates."""
    k = float(params.get("speed", 1.0)) * dt
    rates = (
        float(params["zoom"]) * ZOOM_PER_S,
        float(params["rotate"]) * TURN_PER_S,
        float(params["pan_x"]) * PAN_PER_S,
        float(params["pan_y"]) * PAN_PER_S,
    )
    return camera + np.asarray(rates) * k


def is_still(delta: Camera) -> bool:
    return bool(np.abs(delta).max() < 1e-6)


def warp_matrix(delta: Camera, width: int, height: int) -> np.ndarray:
    """The 2x3 affine map that moves a frame's content by the camera difference ``delta``."""
    scale = math.exp(delta[0])
    c, s = math.cos(delta[1]) * scale, math.sin(delta[1]) * scale
    cx, cy = (width - 1) / 2, (height - 1) / 2
    # Panning the camera right slides the content left; panning up slides it down (screen y grows downward).
    tx, ty = -delta[2] * height, delta[3] * height
    return np.array([[c, -s, cx - c * cx + s * cy + tx], [s, c, cy - s * cx - c * cy + ty]], np.float64)


def warp(image: np.ndarray, delta: Camera, out: np.ndarray | None = None) -> np.ndarray:
    """``image`` moved by ``delta``; edges that come into view mirror the frame, so nothing turns black."""
    if is_still(delta):
        if out is None:
            return image
        np.copyto(out, image)
        return out
    h, w = image.shape[:2]
    return cv2.warpAffine(
        image, warp_matrix(delta, w, h), (w, h), dst=out, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )

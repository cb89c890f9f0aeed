"""What the window shows between generated frames.

A generator may deliver 5 frames a second or 60; the display runs at its own rate either way. Two tricks make a
slow generator look smooth:

* **timewarp**: each generated frame remembers its camera; at display time it is warped forward to the camera *now*,
  so zoom, pan and rotation move at the display rate (and a knob on a motion rate shows in the very next frame);
* **crossfade**: the display fades from the previous generated frame to the newest over one generator interval.
  It runs one interval behind the generator, never more: with a generator as fast as the display it simply shows
  each frame one frame late; with a slow one every display frame is a step of the fade.

Work happens at the generator's resolution in BGRA, the layout of the display surface and OpenCV's fast path.
"""

from __future__ import annotations

import cv2
import numpy as np

from vj.engine.worker import Frame
from vj.frame import motion

BLACKOUT_S = 0.3  # how long blackout takes to fade out or in


class FrameBlender:
    def __init__(self, size: tuple[int, int]) -> None:
        w, h = size
        self._to: tuple[np.ndarray, np.ndarray] | None = None
        self._from: tuple[np.ndarray, np.ndarray] | None = None
        self._arrived = 0.0
        self._interval = 0.1  # seconds between generated frames (smoothed): the crossfade's length
        self._mix = np.zeros((h, w, 4), np.uint8)
        self._warped_to = np.zeros_like(self._mix)
        self._warped_from = np.zeros_like(self._mix)
        self._mid_fade = False

    @property
    def ready(self) -> bool:
        return self._to is not None

    def push(self, frame: Frame, now: float) -> None:
        bgra = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGRA)
        if self._to is not None:
            gap = now - self._arrived
            self._interval = min(0.5, max(1 / 240, 0.8 * self._interval + 0.2 * gap))
            # Always from the previous generated frame. (Fading from what is on screen instead turns the display
            # into a running average that falls further and further behind a fast generator.)
            self._from = self._to
        self._to = (bgra, frame.camera)
        self._arrived = now

    def compose(self, camera: np.ndarray, now: float) -> np.ndarray | None:
        """The picture for this display frame (BGRA, generator size), or None before the first frame."""
        if self._to is None:
            return None
        alpha = min(1.0, max(0.0, (now - self._arrived) / self._interval))
        to_img, to_cam = self._to
        self._mid_fade = alpha < 1.0 and self._from is not None
        if self._mid_fade:
            assert self._from is not None
            from_img, from_cam = self._from
            a = motion.warp(from_img, camera - from_cam, out=self._warped_from)
            b = motion.warp(to_img, camera - to_cam, out=self._warped_to)
            cv2.addWeighted(a, 1.0 - alpha, b, alpha, 0.0, dst=self._mix)
        else:
            motion.warp(to_img, camera - to_cam, out=self._mix)
        return self._mix


class OutputLevel:
    """The master fader: brightness, and blackout as a short fade so it is never a hard cut."""

    def __init__(self) -> None:
        self.level = 1.0
        self._out: np.ndarray | None = None

    def apply(self, picture: np.ndarray, target: float, dt: float) -> np.ndarray:
        step = dt / BLACKOUT_S if dt > 0 else 1.0
        self.level += max(-step, min(step, target - self.level))
        if self.level > 0.999:
            return picture
        if self._out is None or self._out.shape != picture.shape:
            self._out = np.empty_like(picture)
        cv2.convertScaleAbs(picture, dst=self._out, alpha=max(0.0, self.level))
        return self._out


class SceneFade:
    """A scene change on screen: the old look, still moving with the camera, fades into the new one."""

    def __init__(self, picture: np.ndarray, camera: np.ndarray, start: float, seconds: float) -> None:
        self.picture, self.camera, self.start, self.seconds = picture.copy(), camera.copy(), start, seconds
        self._out = np.empty_like(picture)
        self._warped = np.empty_like(picture)

    def done(self, now: float) -> bool:
        return now - self.start >= self.seconds

    def apply(self, live: np.ndarray, camera: np.ndarray, now: float) -> np.ndarray:
        t = min(1.0, max(0.0, (now - self.start) / self.seconds)) if self.seconds > 0 else 1.0
        t = t * t * (3 - 2 * t)
        if t >= 1.0 or live.shape != self.picture.shape:
            return live
        old = motion.warp(self.picture, camera - self.camera, out=self._warped)
        cv2.addWeighted(old, 1.0 - t, live, t, 0.0, dst=self._out)
        return self._out

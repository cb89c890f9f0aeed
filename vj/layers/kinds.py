"""The layer kinds: where each layer's frames come from.

Layer frames are made off the loop thread (video and camera decode on their own threads) and are never changed
once published, so the worker can read them while the loop moves on.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from vj.frame.compose import cover
from vj.layers.spec import LayerSpec, parse_colour

log = logging.getLogger(__name__)


@dataclass
class Layer:
    spec: LayerSpec
    slot: int
    size: tuple[int, int]
    error: str | None = None
    frames: int = 0  # frames published
    _rgb: np.ndarray | None = field(default=None, repr=False)
    _alpha: np.ndarray | None = field(default=None, repr=False)

    @property
    def param(self) -> str:
        return f"layer{self.slot}_opacity"

    def current(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        return self._rgb, self._alpha

    def publish(self, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
        self._rgb, self._alpha = rgb, alpha  # new arrays each time: readers may hold the old ones
        self.frames += 1

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def step(self, dt: float) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        s = self.spec
        return {
            "slot": self.slot,
            "kind": s.kind,
            "source": s.source,
            "mode": s.mode,
            "into": s.into,
            "frames": self.frames,
            "error": self.error,
        }


class StillLayer(Layer):
    """An image file, a solid colour or a two-colour gradient."""

    def start(self) -> None:
        w, h = self.size
        s = self.spec
        if s.kind == "image":
            img = cv2.imread(s.source, cv2.IMREAD_UNCHANGED)
            if img is None:
                self.error = f"cannot read image {s.source}"
                log.error("layer %d: %s", self.slot, self.error)
                return
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            img = cover(img, self.size)
            alpha = np.ascontiguousarray(img[..., 3]) if img.shape[2] == 4 else None
            self.publish(cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB), alpha)
        elif s.kind == "solid":
            self.publish(np.full((h, w, 3), parse_colour(s.source), np.uint8))
        else:
            a, b = (np.array(parse_colour(c), np.float32) for c in s.source.split(":"))
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
            rad = math.radians(s.angle)
            t = (xs / max(1, w - 1) - 0.5) * math.cos(rad) + (ys / max(1, h - 1) - 0.5) * math.sin(rad)
            t = np.clip(t / (abs(math.cos(rad)) * 0.5 + abs(math.sin(rad)) * 0.5 + 1e-6) * 0.5 + 0.5, 0, 1)[..., None]
            self.publish((a * (1 - t) + b * t).astype(np.uint8))


class _ThreadLayer(Layer):
    """A layer whose frames come from a thread of its own (video, camera)."""

    def start(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._guarded, name=f"vj-layer{self.slot}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if hasattr(self, "_running"):
            self._running.clear()
            self._thread.join(2)

    def _guarded(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - a broken clip or camera must not take the show with it
            self.error = f"{type(e).__name__}: {e}"
            log.error("layer %d (%s %s) stopped: %s", self.slot, self.spec.kind, self.spec.source, self.error)

    def _run(self) -> None:
        raise NotImplementedError


class VideoLayer(_ThreadLayer):
    """A video file, decoded with PyAV at its own frame rate and looped."""

    def _run(self) -> None:
        import av

        w, h = self.size
        with av.open(self.spec.source) as container:
            if not container.streams.video:
                raise ValueError(f"{self.spec.source} has no video stream")
            stream = container.streams.video[0]
            base = stream.time_base or 0
            rate = float(stream.average_rate or 30)
            sw, sh = stream.codec_context.width, stream.codec_context.height
            scale = max(w / sw, h / sh)
            cw, ch = max(w, round(sw * scale)), max(h, round(sh * scale))
            while self._running.is_set():
                start, first, n = time.monotonic(), None, 0
                for frame in container.decode(stream):
                    if not self._running.is_set():
                        return
                    t = float(frame.pts * base) if frame.pts is not None and base else n / rate
                    first = t if first is None else first
                    n += 1
                    # Scaled by FFmpeg's swscale straight to the cover size, then cropped to ours.
                    img = frame.to_ndarray(format="rgb24", width=cw, height=ch)
                    x, y = (cw - w) // 2, (ch - h) // 2
                    delay = start + (t - first) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    self.publish(np.ascontiguousarray(img[y : y + h, x : x + w]))
                if n == 0:
                    raise ValueError(f"{self.spec.source} has no frames")
                container.seek(0)


class CameraLayer(_ThreadLayer):
    """A camera through OpenCV (V4L2 on Linux). Without one, the layer stays empty and says why."""

    def _run(self) -> None:
        index = int(self.spec.source or 0)
        cap = cv2.VideoCapture(index)
        try:
            if not cap.isOpened():
                raise OSError(f"no camera {index}")
            while self._running.is_set():
                ok, img = cap.read()
                if not ok:
                    raise OSError(f"camera {index} stopped giving frames")
                self.publish(cv2.cvtColor(cover(img, self.size), cv2.COLOR_BGR2RGB))
        finally:
            cap.release()


class BrushLayer(Layer):
    """Coloured noise the performer paints with the mouse; strokes fade away over a few seconds."""

    RADIUS = 0.05  # of the frame width
    FADE_S = 2.5

    def start(self) -> None:
        w, h = self.size
        self._colour = np.zeros((h, w, 3), np.uint8)
        self._a = np.zeros((h, w), np.float32)
        r = max(3, round(self.RADIUS * w))
        ys, xs = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float32)
        falloff = np.exp(-(xs**2 + ys**2) / (2 * (r / 2.2) ** 2))
        noise = np.random.default_rng(self.slot).uniform(0.35, 1.0, falloff.shape).astype(np.float32)
        self._stamp = falloff * cv2.GaussianBlur(noise, (0, 0), 1.2)
        self._r = r
        self._last: tuple[float, float] | None = None
        self._hue = 0.0
        self._dirty = False

    def paint(self, x: float, y: float, drag: bool = True) -> None:
        """A stroke through picture pixel (x, y), continuing the last one when dragging."""
        points = [(x, y)]
        if drag and self._last is not None:
            lx, ly = self._last
            n = max(1, int(math.hypot(x - lx, y - ly) / (self._r / 3)))
            points = [(lx + (x - lx) * i / n, ly + (y - ly) * i / n) for i in range(1, n + 1)]
        self._last = (x, y)
        self._hue = (self._hue + 2.0) % 180
        colour = cv2.cvtColor(np.array([[[self._hue, 200, 255]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
        h, w = self._a.shape
        r = self._r
        for px, py in points:
            cx, cy = round(px), round(py)
            x0, x1, y0, y1 = max(0, cx - r), min(w, cx + r + 1), max(0, cy - r), min(h, cy + r + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            stamp = self._stamp[y0 - cy + r : y1 - cy + r, x0 - cx + r : x1 - cx + r]
            region = self._a[y0:y1, x0:x1]
            take = stamp > region
            self._colour[y0:y1, x0:x1][take] = colour
            np.maximum(region, stamp, out=region)
        self._dirty = True

    def lift(self) -> None:
        self._last = None

    def step(self, dt: float) -> None:
        if not self._dirty and not self._a.any():
            return
        self._a *= math.exp(-dt / self.FADE_S)
        self._a[self._a < 0.01] = 0
        self._dirty = False
        self.publish(self._colour.copy(), (self._a * 255).astype(np.uint8))


_CLASSES: dict[str, type[Layer]] = {
    "image": StillLayer,
    "solid": StillLayer,
    "gradient": StillLayer,
    "video": VideoLayer,
    "camera": CameraLayer,
    "brush": BrushLayer,
}

"""Overlay layers: images, video, a camera, colour fields and a brush, mixed on top or into the dream.

Each layer has a blend mode and goes one of two ways:

* ``into = "top"``: mixed over the output on the display side, after the crossfade; the dream does not see it;
* ``into = "loop"``: mixed into the generator's input on the worker side, before ``generate``; the dream takes it
  in and keeps dreaming it forward (a photo or a video dissolving into the hallucination).

A layer's strength is a parameter, ``layer<N>_opacity`` (N = its slot, 1..4), so MIDI, OSC, voice and scenes
reach it like any other. Blend modes follow the usual compositing formulas on 0..1 values, then mix by opacity:

    normal     l                       multiply    b * l
    add        min(1, b + l)           difference  |b - l|
    screen     1 - (1 - b)(1 - l)      result      b + (mode(b, l) - b) * opacity * layer alpha

Layer frames are made off the loop thread (video and camera decode on their own threads) and are never changed
once published, so the worker can read them while the loop moves on.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from vj.errors import ConfigError

log = logging.getLogger(__name__)

BLEND_MODES = ("normal", "add", "screen", "multiply", "difference")
KINDS = ("image", "video", "camera", "solid", "gradient", "brush")
SLOTS = 4


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


def parse_colour(text: str) -> tuple[int, int, int]:
    t = text.strip().lstrip("#")
    if len(t) == 6:
        try:
            return int(t[0:2], 16), int(t[2:4], 16), int(t[4:6], 16)
        except ValueError:
            pass
    raise ValueError(f"'{text}' is not a colour; write it as #rrggbb, e.g. #ff0080")


@dataclass(frozen=True)
class LayerSpec:
    kind: str
    source: str = ""
    mode: str = "normal"
    into: str = "top"
    opacity: float = 0.5
    angle: float = 90.0  # gradients: direction in degrees, 90 = top to bottom


_LAYER_KEYS = ("kind", "source", "mode", "into", "opacity", "angle")


def layer_spec(data: Mapping[str, Any], where: str, key: str = "layer") -> LayerSpec:
    """A layer from a table (scene files) or from ``--layer`` (parsed into one); errors name where and the fix."""

    def fail(k: str, message: str, fix: str) -> ConfigError:
        return ConfigError(message, file=where, key=".".join(x for x in (key, k) if x), fix=fix)

    for k in data:
        if k not in _LAYER_KEYS:
            raise fail(k, f"unknown key '{k}'", f"known keys: {', '.join(_LAYER_KEYS)}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise fail("kind", f"unknown layer kind {kind!r}", f"choose {' | '.join(KINDS)}")
    source = data.get("source", "")
    if not isinstance(source, str):
        raise fail("source", f"expected text, got {source!r}", "a path, a camera number or a colour")
    if kind in ("image", "video") and not Path(source).is_file():
        raise fail("source", f"no such file: {source!r}", f"give the path of the {kind} file")
    if kind in ("solid", "gradient"):
        try:
            for part in source.split(":") if kind == "gradient" else [source]:
                parse_colour(part)
        except ValueError as e:
            raise fail(
                "source",
                str(e),
                "a gradient takes two: #000000:#ff0080" if kind == "gradient" else "one colour, #rrggbb",
            ) from None
        if kind == "gradient" and len(source.split(":")) != 2:
            raise fail("source", f"a gradient needs two colours, got {source!r}", "write #000000:#ff0080")
    if kind == "camera" and source and not source.isdigit():
        raise fail("source", f"camera wants a device number, got {source!r}", "e.g. 0 for the first camera")
    mode = data.get("mode", "normal")
    if mode not in BLEND_MODES:
        raise fail("mode", f"unknown blend mode {mode!r}", f"choose {' | '.join(BLEND_MODES)}")
    into = data.get("into", "top")
    if into not in ("top", "loop"):
        raise fail("into", f"unknown place {into!r}", "top (over the output) or loop (into the dream)")
    opacity, angle = data.get("opacity", 0.5), data.get("angle", 90.0)
    for k, v, lo, hi in (("opacity", opacity, 0.0, 1.0), ("angle", angle, -360.0, 360.0)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi) or not math.isfinite(v):
            raise fail(
                k, f"{k} must be a number {lo:g}..{hi:g}, got {v!r}", f"e.g. {k} = {0.5 if k == 'opacity' else 90}"
            )
    return LayerSpec(kind, source, mode, into, float(opacity), float(angle))


def parse_layer_option(text: str) -> LayerSpec:
    """``--layer KIND=SOURCE,mode=screen,into=loop,opacity=0.6`` (``brush`` and ``camera`` need no source)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError("empty layer", key="--layer", fix="e.g. --layer video=clip.mp4,mode=screen")
    kind, _, source = parts[0].partition("=")
    data: dict[str, Any] = {"kind": kind.strip(), "source": source.strip()}
    for part in parts[1:]:
        k, eq, v = part.partition("=")
        if not eq:
            raise ConfigError(f"'{part}' is not key=value", key="--layer", fix="e.g. mode=screen")
        k = k.strip()
        try:
            data[k] = float(v) if k in ("opacity", "angle") else v.strip()
        except ValueError:
            data[k] = v
    return layer_spec(data, f"--layer {text}", key="")


class LayerInput(NamedTuple):
    """One layer's contribution to one generated frame (handed to the worker)."""

    rgb: np.ndarray
    alpha: np.ndarray | None  # uint8 H x W, or None for opaque
    mode: str
    opacity: float


def weights(opacity: float, alpha: np.ndarray | None) -> float | np.ndarray:
    return opacity if alpha is None else alpha.astype(np.float32) * (opacity / 255.0)


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


class Mixer:
    def __init__(self, specs: list[LayerSpec], size: tuple[int, int]) -> None:
        if len(specs) > SLOTS:
            raise ConfigError(
                f"{len(specs)} layers; there are {SLOTS} slots", key="--layer", fix=f"use at most {SLOTS}"
            )
        self.size = size
        self.layers: list[Layer] = [_CLASSES[s.kind](s, i + 1, size) for i, s in enumerate(specs)]
        # slot -> (the RGB frame converted, its BGRA): the frame itself is kept, so a reused id() cannot fool it
        self._bgra: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def brush(self) -> BrushLayer | None:
        return next((layer for layer in self.layers if isinstance(layer, BrushLayer)), None)

    def start(self) -> None:
        for layer in self.layers:
            layer.start()

    def stop(self) -> None:
        for layer in self.layers:
            layer.stop()

    def step(self, dt: float) -> None:
        for layer in self.layers:
            layer.step(dt)

    def loop_inputs(self, params: Mapping[str, Any]) -> tuple[LayerInput, ...]:
        """What goes into the next generated frame: the 'loop' layers with a frame and some opacity."""
        out = []
        for layer in self.layers:
            rgb, alpha = layer.current()
            opacity = float(params.get(layer.param, 0.0))
            if layer.spec.into == "loop" and rgb is not None and opacity > 0:
                out.append(LayerInput(rgb, alpha, layer.spec.mode, opacity))
        return tuple(out)

    def compose_top(self, picture: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        """``picture`` (BGRA, the generator's size) with the 'top' layers mixed over it."""
        for layer in self.layers:
            rgb, alpha = layer.current()
            opacity = float(params.get(layer.param, 0.0))
            if layer.spec.into != "top" or rgb is None or opacity <= 0:
                continue
            cached = self._bgra.get(layer.slot)
            if cached is None or cached[0] is not rgb:
                cached = (rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))
                self._bgra[layer.slot] = cached
            picture = blend(picture, cached[1], layer.spec.mode, weights(opacity, alpha))
        return picture

    def describe(self) -> list[dict[str, Any]]:
        return [layer.describe() for layer in self.layers]

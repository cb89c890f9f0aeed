"""The sketch generator: a procedural dream on the CPU, no model, no weights.

Each frame is a small reaction-diffusion step on the warped previous frame's luminance, stirred by animated
motifs chosen by the prompt's words, then coloured through the prompt's palette:

    luminance  -> band-pass (difference of Gaussians, at the look's scale) + motif field + seeded noise
               -> soft contrast curve -> palette (two palettes of equal luminance, mixed by a drifting field)
    output     =  mix(warped previous frame, that new image, strength)

The band-pass in a feedback loop grows Turing-like structures (stripes, cells, labyrinths) that the motion warp
keeps pulling apart, so the picture keeps re-forming instead of settling. Heavy work runs at quarter resolution
and in OpenCV, which releases the GIL, so it leaves the display thread alone.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from vj.gen.base import Generator
from vj.gen.look import Look, blend_looks, look_for

# How far the palette moves toward a new prompt's palette per second: a prompt change glides in, no cut.
_LOOK_GLIDE_S = 0.8
# The second palette's hue turn: far enough to add colour, near enough to stay in the prompt's family.
_SIBLING_TURN_DEG = 30.0


GRID = 128  # cells on the long side of the grid the structures grow on (a quarter of 512)


class SketchGenerator(Generator):
    name = "sketch"
    frame_timeout = 2.0

    def __init__(self, size: tuple[int, int] = (512, 512), **options: Any) -> None:
        super().__init__(size, **options)
        # The structures grow on a grid of a fixed size, so the look is the same at every resolution (a smaller
        # frame is only softer, a larger one only sharper) and the stagnation thresholds hold at any --gen-size.
        long_side = max(self.width, self.height)
        self._sw = max(16, round(GRID * self.width / long_side))
        self._sh = max(16, round(GRID * self.height / long_side))
        aspect = self.width / self.height
        ys, xs = np.mgrid[0 : self._sh, 0 : self._sw].astype(np.float32)
        self._x = (xs / (self._sw - 1) * 2 - 1) * aspect
        self._y = ys / (self._sh - 1) * 2 - 1
        self._r = np.sqrt(self._x**2 + self._y**2)
        self._theta = np.arctan2(self._y, self._x)
        self._gy, self._gx = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
        self._look_key: tuple[str, str, float] | None = None
        self._look: Look | None = None
        self._palette = np.zeros((256, 3), np.float32)
        self._target = np.zeros((256, 3), np.float32)
        self._luts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._seed: int | None = None
        self._noise = np.zeros((self._sh * 2, self._sw * 2), np.float32)
        self._phase = np.zeros(8, np.float32)
        self.clock = time.monotonic  # animation time; tests replace it to make runs reproducible
        self._t0: float | None = None
        self._last: float | None = None

    # -- state that changes with the prompt or seed -------------------------------------------------------
    def _set_look(self, prompt: str, other: str, blend: float) -> None:
        self._look_key = (prompt, other, blend)
        self._look = blend_looks(look_for(prompt), look_for(other), blend) if other and blend > 0 else look_for(prompt)
        self._target = self._look.palette
        if not self._palette.any():
            self._palette = self._target.copy()
        self._luts = None

    def _set_seed(self, seed: int) -> None:
        self._seed = seed
        rng = np.random.default_rng(seed)
        self._noise = _tileable_noise(rng, (self._sh * 2, self._sw * 2), sigma=3.0)
        self._phase = rng.uniform(0, 2 * np.pi, 8).astype(np.float32)

    def _step_palette(self, dt: float) -> None:
        if self._luts is not None and np.array_equal(self._palette, self._target):
            return
        k = 1.0 - np.exp(-dt / _LOOK_GLIDE_S * 3)
        self._palette += (self._target - self._palette) * k
        if np.abs(self._target - self._palette).max() < 0.5:
            self._palette = self._target.copy()
        self._luts = _luts_from(self._palette)

    # -- the frame --------------------------------------------------------------------------------------
    def motif_field(self, t: float) -> np.ndarray:
        """The look's motifs at time ``t``, at quarter resolution, roughly in -1..1."""
        assert self._look is not None
        m, s, p = self._look.motifs, self._look.scale, self._phase
        x, y, r, th = self._x, self._y, self._r, self._theta
        f = np.zeros_like(x)
        if m["waves"] > 0.06:
            f += m["waves"] * np.sin((x * np.cos(p[0]) + y * np.sin(p[0])) * 6 / s + t * 0.9 + p[1])
        if m["rings"] > 0.06:
            f += m["rings"] * np.sin(r * 14 / s - t * 1.3 + p[2])
        if m["spiral"] > 0.06:
            f += m["spiral"] * np.sin(r * 10 / s + 3 * th - t * 1.1 + p[3])
        if m["cells"] > 0.06:
            f += m["cells"] * 2 * (np.abs(np.sin(x * 7 / s + t * 0.3) * np.sin(y * 7 / s - t * 0.2 + p[4])) - 0.35)
        if m["petals"] > 0.06:
            f += m["petals"] * np.cos(6 * th + t * 0.7 + p[5]) * np.exp(-r * 0.8)
        if m["flow"] > 0.06:
            n = self._noise
            oy = int(t * 6) % self._sh
            ox = int(t * 3 + 40 * np.sin(p[6])) % self._sw
            f += m["flow"] * 1.2 * n[oy : oy + self._sh, ox : ox + self._sw]
        return f

    def initial(self, params: Mapping[str, Any]) -> np.ndarray:
        """A first frame from nothing: the prompt's motifs over seeded noise."""
        self._sync(params)
        field = self.motif_field(0.0) + 0.8 * self._noise[: self._sh, : self._sw]
        lum = cv2.resize(0.5 + 0.25 * field, (self.width, self.height), interpolation=cv2.INTER_CUBIC)
        return self._colour(np.clip(lum, 0, 1), 0.0)

    def _sync(self, params: Mapping[str, Any]) -> None:
        prompt, seed = str(params.get("prompt", "")), int(params.get("seed", 0))
        other, blend = str(params.get("prompt_b", "") or ""), round(float(params.get("prompt_blend", 0.0)), 3)
        if (prompt, other, blend) != self._look_key:
            self._set_look(prompt, other, blend)
        if seed != self._seed:
            self._set_seed(seed)
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        self._step_palette(min(0.25, now - self._last) if self._last is not None else 1.0)
        self._last = now

    def _colour(self, lum: np.ndarray, t: float) -> np.ndarray:
        assert self._luts is not None
        idx = cv2.cvtColor((lum * 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
        base, warm, cool = (cv2.LUT(idx, lut) for lut in self._luts)
        # A slowly drifting field picks a sibling palette: same light, hues turned one way or the other.
        p = self._phase
        w = np.sin(self._x * 1.1 + self._y * 0.7 + t * 0.21 + p[7]) * np.cos(self._y * 0.9 - t * 0.13 + p[5])
        w = cv2.resize(w.astype(np.float32), (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        sibling = cv2.blendLinear(warm, cool, np.maximum(w, 0) + 1e-3, np.maximum(-w, 0) + 1e-3)
        aw = np.abs(w) * 0.85
        return cv2.blendLinear(base, sibling, 1.0 - aw, aw)

    def generate(self, image: np.ndarray | None, params: Mapping[str, Any]) -> np.ndarray:
        if image is None:
            return self.initial(params)
        self._sync(params)
        assert self._look is not None
        t = (self._last or 0.0) - (self._t0 or 0.0)
        strength = float(params.get("strength", 0.5))
        chaos = float(params.get("chaos", 0.3))
        s = self._look.scale

        image = self._flow(image, t, (0.6 + 1.4 * chaos) * min(1.0, 2.0 * strength))
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) * (1 / 255)
        small = cv2.resize(gray, (self._sw, self._sh), interpolation=cv2.INTER_AREA)
        # Multi-scale band-pass: each scale grows structures of its own size, so they nest like a fractal.
        blurs = [cv2.GaussianBlur(small, (0, 0), k * s) for k in (0.6, 1.4, 3.2, 7.0)]
        dog = 1.0 * (blurs[0] - blurs[1]) + 0.7 * (blurs[1] - blurs[2]) + 0.45 * (blurs[2] - blurs[3])
        # Automatic gain: structure is re-injected at a visible level however flat the frame has become.
        dog *= 0.09 / (float(dog.std()) + 0.01)
        noise = np.roll(self._noise, (int(t * 37) % self._sh, int(t * 23) % self._sw), (0, 1))[: self._sh, : self._sw]
        drive = dog + 0.13 * self.motif_field(t) + 0.04 * (0.3 + chaos) * noise
        drive = cv2.resize(drive, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        fine = gray - cv2.GaussianBlur(gray, (0, 0), 1.0)
        v = gray + drive + 0.3 * fine
        # Keep the tone: mean toward mid grey, spread toward a lively contrast, a soft clip of slope 1 at the
        # centre. Without this, mid grey is an attractor and the dream flattens out.
        mean, std = float(small.mean()), float(small.std())
        gain = float(np.clip(0.22 / (std + 1e-3), 0.9, 1.15))
        v = 0.5 + 0.5 * np.tanh(2.0 * ((v - mean) * gain + mean + (0.46 - mean) * 0.1 - 0.5))
        fresh = self._colour(v, t)
        mix = float(np.clip(0.6 * strength, 0.0, 1.0))
        return cv2.addWeighted(image, 1.0 - mix, fresh, mix, 0.0)

    def _flow(self, image: np.ndarray, t: float, amount: float) -> np.ndarray:
        """Advect the frame along a slowly turning swirl (the curl of drifting noise): liquid, never still."""
        if amount <= 0:
            return image
        n = self._noise
        oy, ox = int(t * 4) % self._sh, int(t * 3) % self._sw
        potential = n[oy : oy + self._sh, ox : ox + self._sw] + 0.5 * self.motif_field(t * 0.5)
        gy, gx = (np.asarray(g, np.float32) for g in np.gradient(potential))
        scale = amount * 1.6 * self.width / self._sw
        fx = cv2.resize(gy * scale, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        fy = cv2.resize(-gx * scale, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return cv2.remap(image, self._gx + fx, self._gy + fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _luts_from(palette: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three 256x1x3 LUTs: the palette and two siblings with hues turned either way at equal luminance."""
    base = np.clip(palette, 0, 255).astype(np.uint8)[None]
    ycc = cv2.cvtColor(base, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    cr, cb = ycc[..., 1] - 128, ycc[..., 2] - 128
    luts = [base.reshape(256, 1, 3)]
    for deg in (_SIBLING_TURN_DEG, -_SIBLING_TURN_DEG):
        a = np.deg2rad(deg)
        turned = ycc.copy()
        turned[..., 1] = 128 + 1.1 * (cr * np.cos(a) - cb * np.sin(a))
        turned[..., 2] = 128 + 1.1 * (cr * np.sin(a) + cb * np.cos(a))
        luts.append(cv2.cvtColor(np.clip(turned, 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB).reshape(256, 1, 3))
    return luts[0], luts[1], luts[2]


def _tileable_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth noise that wraps at its edges (filtered in the frequency domain), unit deviation."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    noise = np.fft.irfft2(np.fft.rfft2(white) * kernel, s=shape)
    return (noise / (noise.std() + 1e-9)).astype(np.float32)

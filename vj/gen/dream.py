"""The dream generator: video-feedback fractals on the CPU, shaped by the prompt's words. No model, no weights.

Each frame is built from the previous one (already moved by the camera) the way a camera pointed at its own
monitor builds one, which is the image-space form of a fractal flame:

    copies    the frame, shrunk, turned and placed by each of the prompt's maps, kept where brightest
              (the picture becomes the shape those maps leave fixed: branches, grids, spirals, flames)
    swirl     a non-linear bend of the whole frame, as much as ``chaos`` asks
    symmetry  a kaleidoscope of N wedges for the families that have one
    sprites   fresh matter the maps then copy at every scale: falling streaks (rain), growing branches (forest),
              street lights (city), bubbles and caustics (ocean, reef), rising embers (fire), a star field (space),
              shards (crystal), petals (bloom)
    colour    toward the prompt's palette (``vj.gen.look``), tone held by a feedback gain, a touch of sharpening

Which families a prompt calls, and their maps, sprites and symmetry, are data (``data/motifs.toml``, read by
``vj.gen.motifs``). A prompt change glides from the old families to the new ones; a spark picks a new attractor
(the maps turn and move) and bursts new matter into the picture. Zooming the camera flies into copies of copies,
so it reads as travel into structure rather than blur. All heavy work is OpenCV, which releases the interpreter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from vj.gen.base import Generator
from vj.gen.look import look_for
from vj.gen.motifs import Family, families_for, vocabulary

GLIDE_S = 1.5  # a prompt change: seconds for the new families to take over
MAX_MAPS = 6  # copies per frame, over all families (each costs a warp of the whole frame)
TONE = 92.0  # the mean brightness (0..255) the feedback gain holds
LOW = 64  # side of the small grids the caustics and nebulae are computed on


class DreamGenerator(Generator):
    name = "dream"
    frame_timeout = 2.0

    def __init__(self, size: tuple[int, int] = (512, 512), **options: Any) -> None:
        super().__init__(size, **options)
        w, h = self.width, self.height
        self._unit = min(w, h) / 2  # map coordinates -1..1 span the short side
        self._centre = (w / 2, h / 2)
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        self._gx, self._gy = gx, gy
        self._fams: dict[str, Family] = vocabulary()
        self._weights: dict[str, float] = {}  # families on screen now, gliding toward _target
        self._target: dict[str, float] = {}
        self._prompt: str | None = None
        self._palette = np.zeros((256, 3), np.float32)
        self._palette_target = np.zeros((256, 3), np.float32)
        self._lut = np.zeros((256, 1, 3), np.uint8)
        self._seed: int | None = None
        self._attractor = 0
        self._rng = np.random.default_rng(0)
        self._phases = np.zeros(32, np.float32)
        self._jitter = np.zeros((MAX_MAPS * 4, 2), np.float32)
        self._gain = 0.9
        self._kaleido: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._swirl: tuple[np.ndarray, np.ndarray] | None = None
        self._noise = np.zeros((LOW * 2, LOW * 2), np.float32)
        self._sprites: dict[str, Any] = {}
        self.clock = time.monotonic  # animation time; tests replace it to make runs reproducible
        self._t0: float | None = None
        self._last: float | None = None
        self._dt = 1 / 30

    # -- what the parameters ask for ------------------------------------------------------------------------
    def _sync(self, params: Mapping[str, Any]) -> None:
        prompt, seed = str(params.get("prompt", "")), int(params.get("seed", 0))
        if prompt != self._prompt:
            self._prompt = prompt
            self._target = families_for(prompt)
            self._palette_target = look_for(prompt).palette
            if not self._weights:
                self._weights = dict(self._target)
                self._palette = self._palette_target.copy()
        if seed != self._seed:
            self._seed = seed
            self._reseed()
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        self._dt = min(0.25, now - self._last) if self._last is not None else 1 / 30
        self._last = now
        self._glide(self._dt)

    def _reseed(self) -> None:
        self._rng = np.random.default_rng(((self._seed or 0) * 1009 + self._attractor) % 2**63)
        self._phases = self._rng.uniform(0, 2 * np.pi, 32).astype(np.float32)
        spread = 0.0 if self._attractor == 0 else 1.0
        self._jitter = (self._rng.uniform(-1, 1, (MAX_MAPS * 4, 2)) * spread).astype(np.float32)
        white = self._rng.standard_normal((LOW * 2, LOW * 2))
        fy, fx = np.fft.fftfreq(LOW * 2)[:, None], np.fft.rfftfreq(LOW * 2)[None, :]
        smooth = np.fft.irfft2(np.fft.rfft2(white) * np.exp(-2 * (np.pi * 4.0) ** 2 * (fx**2 + fy**2)), s=white.shape)
        self._noise = (smooth / (smooth.std() + 1e-9)).astype(np.float32)
        self._swirl = None

    def _glide(self, dt: float) -> None:
        k = 1.0 - math.exp(-dt * 3.0 / GLIDE_S)
        names = set(self._weights) | set(self._target)
        self._weights = {
            n: self._weights.get(n, 0.0) + (self._target.get(n, 0.0) - self._weights.get(n, 0.0)) * k for n in names
        }
        self._weights = {n: w for n, w in self._weights.items() if w > 0.01 or n in self._target}
        self._palette += (self._palette_target - self._palette) * k
        self._lut = np.clip(self._palette, 0, 255).astype(np.uint8).reshape(256, 1, 3)

    # -- the frame ------------------------------------------------------------------------------------------
    def generate(self, image: np.ndarray | None, params: Mapping[str, Any]) -> np.ndarray:
        self._sync(params)
        if image is None:
            return self._burst(params)
        t = (self._last or 0.0) - (self._t0 or 0.0)
        strength = float(params.get("strength", 0.5))
        chaos = float(params.get("chaos", 0.3))
        out = self._copies(image, t, chaos)
        if chaos > 0.05:
            out = self._bend(out, t, chaos)
        out = self._symmetry(out)
        self._seed_sprites(out, t, self._dt, 1.0)
        out = self._colour(out)
        mix = 0.45 + 0.55 * min(1.0, max(0.0, strength))
        return cv2.addWeighted(image, 1.0 - mix, out, mix, 0.0)

    def fresh(self, params: Mapping[str, Any]) -> np.ndarray:
        """A spark: a new attractor (the maps turn and move) and a burst of new matter, grown to full structure."""
        self._sync(params)
        self._attractor += 1
        self._reseed()
        return self._burst(params)

    def _burst(self, params: Mapping[str, Any]) -> np.ndarray:
        t = (self._last or 0.0) - (self._t0 or 0.0)
        frame = np.zeros((self.height, self.width, 3), np.uint8)
        for i in range(6):  # a few generations of copies grow the seeded matter into the attractor's shape
            self._seed_sprites(frame, t + i * 0.1, 0.1, 3.0)
            frame = self._copies(frame, t, float(params.get("chaos", 0.3)), keep=0.97)
        return self._colour(self._symmetry(frame))

    def _maps(self, t: float, chaos: float) -> list[tuple[np.ndarray, float]]:
        """This instant's affine maps, each with the brightness of its copy (its family's share of the look)."""
        chosen: list[tuple[float, int, list[float]]] = []
        for name, weight in sorted(self._weights.items(), key=lambda kv: -kv[1]):
            if weight < 0.04 or name not in self._fams:
                continue
            for m in self._fams[name].maps:
                chosen.append((weight, len(chosen), m))
        chosen = sorted(chosen, key=lambda c: -c[0])[:MAX_MAPS]
        cx, cy = self._centre
        out = []
        for weight, i, (scale, turn, x, y) in chosen:
            p = self._phases[i % 32]
            jx, jy = self._jitter[i]
            wobble = (6 + 24 * chaos) * math.sin(0.21 * t + p) + 40 * jx
            angle = math.radians(turn + wobble)
            s = scale * (1 + 0.05 * math.sin(0.13 * t + 2 * p))
            tx = cx + (x + 0.06 * math.sin(0.17 * t + 3 * p) + 0.25 * jy) * self._unit
            ty = cy + (y + 0.06 * math.cos(0.19 * t + p) + 0.25 * jx) * self._unit
            a, b = s * math.cos(angle), s * math.sin(angle)
            matrix = np.array([[a, -b, tx - (a * cx - b * cy)], [b, a, ty - (b * cx + a * cy)]], np.float32)
            out.append((matrix, 0.55 + 0.45 * min(1.0, weight * 1.6)))
        return out

    def _copies(self, frame: np.ndarray, t: float, chaos: float, keep: float | None = None) -> np.ndarray:
        """The frame faded by the tone gain, with each map's copy laid over it where the copy is brighter."""
        size = (self.width, self.height)
        gain = keep if keep is not None else self._gain
        acc = cv2.convertScaleAbs(frame, alpha=gain)
        for m, bright in self._maps(t, chaos):
            copy = cv2.warpAffine(frame, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            acc = cv2.max(acc, cv2.convertScaleAbs(copy, alpha=bright * gain))
        # Tone: the copies only ever brighten, so one gain on the fade and the copies holds the picture's level.
        if keep is None:
            level = float(acc[::8, ::8].mean())
            self._gain = float(np.clip(self._gain + 0.002 * (TONE - level), 0.6, 0.99))
        return acc

    def _bend(self, frame: np.ndarray, t: float, chaos: float) -> np.ndarray:
        """A flame 'variation': the frame pulled along a slowly turning sinusoidal field."""
        if self._swirl is None:
            n = self._noise
            gy, gx = (np.asarray(g, np.float32) for g in np.gradient(n[:LOW, :LOW]))
            size = (self.width, self.height)
            self._swirl = (cv2.resize(gy, size), cv2.resize(-gx, size))
        fx, fy = self._swirl
        amount = (1.5 + 6.0 * chaos) * self._unit / 256 * math.sin(0.11 * t + float(self._phases[9]))
        return cv2.remap(
            frame, self._gx + fx * amount, self._gy + fy * amount, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )

    def _symmetry(self, frame: np.ndarray) -> np.ndarray:
        for name, weight in self._weights.items():
            fam = self._fams.get(name)
            if fam is None or fam.symmetry < 2 or weight < 0.05:
                continue
            mx, my = self._kaleido_map(fam.symmetry)
            folded = cv2.remap(frame, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            frame = cv2.addWeighted(frame, 1.0 - min(1.0, weight), folded, min(1.0, weight), 0.0)
        return frame

    def _kaleido_map(self, order: int) -> tuple[np.ndarray, np.ndarray]:
        if order not in self._kaleido:
            cx, cy = self._centre
            dx, dy = self._gx - cx, self._gy - cy
            r, th = np.sqrt(dx**2 + dy**2), np.arctan2(dy, dx)
            wedge = 2 * np.pi / order
            th = np.abs(np.mod(th, wedge) - wedge / 2)  # mirrored wedges
            self._kaleido[order] = ((cx + r * np.cos(th)).astype(np.float32), (cy + r * np.sin(th)).astype(np.float32))
        return self._kaleido[order]

    def _colour(self, frame: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        tinted = cv2.LUT(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), self._lut)
        # Contrast: structure that has spread evenly over the frame is stretched back apart (never flattened).
        sample = gray[::8, ::8]
        mean, std = float(sample.mean()), float(sample.std())
        k = float(np.clip(52.0 / (std + 1e-3), 1.0, 1.6))
        out = cv2.addWeighted(frame, 0.5 * k, tinted, 0.5 * k, mean * (1 - k))
        soft = cv2.GaussianBlur(out, (0, 0), 1.2)
        return cv2.addWeighted(out, 1.3, soft, -0.3, 0.0)  # back the detail the resampling took

    # -- sprites: the fresh matter each family seeds -------------------------------------------------------
    def _colour_of(self, level: float) -> tuple[int, int, int]:
        r, g, b = self._palette[int(np.clip(level, 0, 1) * 255)]
        return int(r), int(g), int(b)

    def _seed_sprites(self, frame: np.ndarray, t: float, dt: float, amount: float) -> None:
        for name, weight in self._weights.items():
            fam = self._fams.get(name)
            if fam is None or weight < 0.05:
                continue
            draw = getattr(self, f"_draw_{fam.sprites}")
            draw(frame, t, dt, weight * amount)

    def _particles(self, key: str, n: int, init: Any) -> np.ndarray:
        p = self._sprites.get(key)
        if p is None or len(p) != n:
            p = init(n)
            self._sprites[key] = p
        return p

    def _draw_fall(self, frame: np.ndarray, t: float, dt: float, w: float) -> None:
        h, wd = self.height, self.width
        rng = self._rng
        p = self._particles(
            "fall", 90, lambda n: np.stack([rng.uniform(0, wd, n), rng.uniform(0, h, n), rng.uniform(0.6, 1.6, n)], 1)
        )
        p[:, 1] += p[:, 2] * h * dt * 0.9
        gone = p[:, 1] > h
        p[gone, 1] -= h + 40
        p[gone, 0] = rng.uniform(0, wd, int(gone.sum()))
        count = int(len(p) * min(1.0, w))
        for x, y, v in p[:count]:
            length = 8 + 22 * v
            cv2.line(
                frame,
                (int(x), int(y)),
                (int(x - 2), int(y + length)),
                self._colour_of(0.7 + 0.3 * (v - 0.6)),
                1,
                cv2.LINE_AA,
            )

    def _draw_grow(self, frame: np.ndarray, t: float, dt: float, w: float) -> None:
        tips: list[list[float]] = self._sprites.setdefault("grow", [])
        rng, h, wd = self._rng, self.height, self.width
        while len(tips) < int(4 + 6 * w):
            tips.append(
                [
                    rng.uniform(0.2, 0.8) * wd,
                    h * rng.uniform(0.85, 1.0),
                    -math.pi / 2 + rng.uniform(-0.3, 0.3),
                    rng.uniform(30, 70),
                ]
            )
        step = max(2.0, 140 * dt) * self._unit / 256
        grown = []
        for x, y, angle, life in tips:
            nx, ny = x + math.cos(angle) * step, y + math.sin(angle) * step
            cv2.line(frame, (int(x), int(y)), (int(nx), int(ny)), self._colour_of(0.55 + life / 200), 2, cv2.LINE_AA)
            turned = angle + rng.uniform(-0.12, 0.12)
            if life > 1 and 0 <= nx < wd and 0 <= ny < h:
                grown.append([nx, ny, turned, life - 1])
                if rng.random() < 0.06 and len(grown) < 60:
                    grown.append([nx, ny, turned + rng.choice([-0.6, 0.6]), (life - 1) * 0.7])
        self._sprites["grow"] = grown

    def _draw_grid(self, frame: np.ndarray, t: float, dt: float, w: float) -> None:
        rng, h, wd = self._rng, self.height, self.width
        cell = max(6, int(self._unit / 10))
        across, down = max(1, wd // cell), max(1, h // cell)
        for _ in range(int(18 * w) + 1):
            gx, gy = int(rng.integers(0, across)) * cell, int(rng.integers(0, down)) * cell
            cv2.rectangle(
                frame, (gx + 2, gy + 2), (gx + cell // 2, gy + cell // 2), self._colour_of(rng.uniform(0.7, 1)), -1
            )
        if rng.random() < 0.5 * w:
            level = self._colour_of(0.5)
            if rng.random() < 0.5:
                y = int(rng.integers(0, down)) * cell
                cv2.line(frame, (0, y), (wd, y), level, 1)
            else:
                x = int(rng.integers(0, across)) * cell
                cv2.line(frame, (x, 0), (x, h), level, 1)

    def _draw_bubbles(self, frame: np.ndarray, t: float, dt: float, w: float) -> None:
        rng, h, wd = self._rng, self.height, self.width
        p = self._particles(
            "bubbles", 28, lambda n: np.stack([rng.uniform(0, wd, n), rng.uniform(0, h, n), rng.uniform(2, 9, n)], 1)
        )
        p[:, 1] -= (20 + 8 * p[:, 2]) * dt * self._unit / 128
        p[:, 0] += np.sin(t * 2 + p[:, 2]) * 0.6
        gone = p[:, 1] < -10
        p[gone, 1] = h + 10
        p[gone, 0] = rng.uniform(0, wd, int(gone.sum()))
        for x, y, r in p[: int(len(p) * min(1.0, w)) + 1]:
            rr = int(r * self._unit / 128)
            cv2.circle(frame, (int(x), int(y)), rr, self._colour_of(0.85), 1, cv2.LINE_AA)
            cv2.circle(frame, (int(x - rr / 3), int(y - rr / 3)), max(1, rr // 4), self._colour_of(1.0), -1)

    def _draw_caustics(self, frame: np.ndarray, t: float, dt: float, w: float) -> None:
        n = self._noise
        o = int(t * 7) % LOW
        a, b = n[o : o + LOW, :LOW], n[:LOW, o : o + LOW]
        c = np.clip(1.0 - np.abs(np.sin(a * 2.2 + t * 0.7) + np.sin(b * 2.2 - t * 0.5)), 0, 1) ** 6
        light = cv2.resize((c * 200 * min(1.0, w)).astype(np.float32), (self.width, self.height))
        tint = np.asarray(self._colour_of(0.9), np.float32) / 255
        add = cv2.merge([light * tint[0], light * tint[1], light * tint[2]]).astype(np.uint8)
        cv2.add(frame, add, dst=frame)

    def _draw_rise(self, frame: np.ndarray, t: float, dt: float, w: float) -> None:
        rng, h, wd = self._rng, self.height, self.width
        p = self._particles(
            "rise",
            60,
            lambda n: np.stack(
                [rng.uniform(0.15, 0.85, n) * wd, rng.uniform(0.3, 1.0, n) * h, rng.uniform(0.5, 1.0, n)], 1
            ),
        )
        p[:, 1] -= (50 + 60 * p[:, 2]) * dt * self._unit / 128
        p[:, 0] += rng.normal(0, 1.2, len(p)) * self._unit / 128
        p[:, 2] -= dt * 0.5
        gone = (p[:, 1] < 0) | (p[:, 2] < 0.05)
        k = int(gone.sum())
        p[gone] = np.stack([rng.normal(0.5, 0.15, k) * wd, rng.uniform(0.9, 1.05, k) * h, rng.uniform(0.6, 1.0, k)], 1)
        for x, y, life in p[: int(len(p) * min(1.0, w)) + 1]:
            cv2.circle(
                frame,
                (int(x), int(y)),
                max(1, int(5 * life * self._unit / 256)),
                self._colour_of(0.6 + 0.4 * life),
                -1,
                cv2.LINE_AA,
            )

    def _draw_stars(self, frame: np.ndarray, t: float, dt: float, w: float) -> None:
        rng, cx, cy = self._rng, *self._centre
        p = self._particles(
            "stars", 140, lambda n: np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.uniform(0.05, 1, n)], 1)
        )
        z0 = p[:, 2].copy()
        p[:, 2] -= dt * 0.35
        gone = p[:, 2] < 0.04
        k = int(gone.sum())
        p[gone] = np.stack([rng.uniform(-1, 1, k), rng.uniform(-1, 1, k), np.ones(k)], 1)
        z0[gone] = 1.0
        u = self._unit * 0.6
        for (x, y, z), zp in zip(p[: int(len(p) * min(1.0, w)) + 1], z0, strict=False):
            a = (int(cx + x / zp * u), int(cy + y / zp * u))
            b = (int(cx + x / z * u), int(cy + y / z * u))
            cv2.line(frame, a, b, self._colour_of(min(1.0, 1.1 - z * 0.6)), 1 if z > 0.3 else 2, cv2.LINE_AA)

    def _draw_shards(self, frame: np.ndarray, t: float, dt: float, w: float) -> None:
        rng, h, wd = self._rng, self.height, self.width
        for _ in range(int(3 * w) + 1):
            c = rng.uniform([0, 0], [wd, h])
            size = rng.uniform(0.05, 0.2) * self._unit
            pts = (c + rng.normal(0, 1, (3, 2)) * size).astype(np.int32)
            if rng.random() < 0.3:
                cv2.fillPoly(frame, [pts], self._colour_of(rng.uniform(0.6, 0.9)), cv2.LINE_AA)
            cv2.polylines(frame, [pts], True, self._colour_of(rng.uniform(0.85, 1.0)), 1, cv2.LINE_AA)

    def _draw_petals(self, frame: np.ndarray, t: float, dt: float, w: float) -> None:
        rng, cx, cy = self._rng, *self._centre
        for _ in range(int(2 * w) + 1):
            r = rng.uniform(0.1, 0.9) * self._unit
            a = rng.uniform(0, 360)
            x, y = cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))
            axes = (
                max(2, int(rng.uniform(0.04, 0.12) * self._unit)),
                max(1, int(rng.uniform(0.01, 0.04) * self._unit)),
            )
            cv2.ellipse(
                frame, (int(x), int(y)), axes, a, 0, 360, self._colour_of(rng.uniform(0.7, 1.0)), 1, cv2.LINE_AA
            )

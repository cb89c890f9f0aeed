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
from typing import Any

from vj.frame.vitals import Vitals, stagnant

HOLD = 6  # stagnant readings in a row before an automatic spark


class Sparks:
    """The loop's side: decides when to spark, counts, keeps the cooldown."""

    def __init__(self) -> None:
        self.seq = 0  # the job carries this; the worker starts a bloom when it changes
        self.auto = 0
        self.manual = 0
        self.beat = 0  # on the downbeat, every N bars (a scene's spark_bars)
        self.refused = 0  # asked for by hand during the cooldown
        self.observed = 0
        self.stagnant_frames = 0
        self.last = -math.inf
        self._run = 0
        self.blooming = False

    @property
    def total(self) -> int:
        return self.auto + self.manual + self.beat

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
        elif kind == "beat":
            self.beat += 1
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
            "sparks_beat": self.beat,
            "sparks_refused": self.refused,
            "stagnant_frames": self.stagnant_frames,
            "stagnant_share": round(self.stagnant_frames / self.observed, 3) if self.observed else 0.0,
        }

"""Frame-time statistics in constant memory, for a show that runs all night.

A histogram of 0.01 ms bins up to 1 s (and the exact maximum) gives percentiles accurate to 0.01 ms however long
the show has run; a short ring of recent times feeds the HUD.
"""

from __future__ import annotations

from collections import deque

import numpy as np

_BIN_MS = 0.01
_BINS = 100_000  # 0..1000 ms; anything slower lands in the last bin (the max is still exact)


class Timings:
    def __init__(self, recent: int = 120) -> None:
        self._hist = np.zeros(_BINS, np.int64)
        self.count = 0
        self.max = 0.0
        self.recent: deque[float] = deque(maxlen=recent)

    def add(self, ms: float) -> None:
        self._hist[min(_BINS - 1, max(0, int(ms / _BIN_MS)))] += 1
        self.count += 1
        self.max = max(self.max, ms)
        self.recent.append(ms)

    def percentile(self, p: float) -> float:
        if not self.count:
            return 0.0
        rank = max(1, int(np.ceil(p / 100 * self.count)))
        index = int(np.searchsorted(np.cumsum(self._hist), rank))
        return min(self.max, (index + 1) * _BIN_MS)

    def summary(self) -> dict[str, float]:
        return {
            "p50": round(self.percentile(50), 2),
            "p99": round(self.percentile(99), 2),
            "max": round(self.max, 2),
        }

    def recent_percentile(self, p: float) -> float:
        return float(np.percentile(self.recent, p)) if self.recent else 0.0

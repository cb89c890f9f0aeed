"""The replay generator: the best stored dreams, one after another, morphing into each other.

Each dream stays ``seconds`` on screen; during the last quarter of that time it morphs into the next one. The
morph follows the optical flow between the two pictures (OpenCV's DIS flow, computed once per pair at 256 px):
both are pushed along the flow toward each other while they crossfade, so shapes travel instead of just
dissolving. With ``morph = false`` it is a plain crossfade. When the show runs a model (lcm) and the dreams kept
its latents, the morph is a walk between the two latents instead (spherical interpolation, decoded by the model's
own autoencoder): the in-between frames are pictures the model could have made, not a blend of two.

With nothing to replay (no store yet, an empty or damaged one, only dreams from generators whose frames are not
dreams) loading raises ``GeneratorUnusable``: the worker then falls back at once and the show keeps dreaming live.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vj.errors import ConfigError, GeneratorError, GeneratorUnusable
from vj.frame.compose import cover
from vj.gen.base import Generator

log = logging.getLogger(__name__)

FLOW_SIZE = 256
MORPH_SHARE = 0.25  # of each dream's time spent morphing into the next


class ReplayGenerator(Generator):
    name = "replay"
    frame_timeout = 5.0
    replays_dreams = True  # its frames are stored dreams already: the keeper does not keep them again

    def __init__(
        self,
        size: tuple[int, int] = (512, 512),
        *,
        folder: str | Path | None = None,
        count: int = 12,
        seconds: float = 6.0,
        morph: bool = True,
        latents: bool = False,
        model: str | None = None,
        model_config: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        tiny_vae: str | None = None,
    ) -> None:
        super().__init__(size)
        self.folder = Path(folder) if folder else None
        self.count, self.seconds, self.morph = count, seconds, morph
        # with ``latents``: the show's model, for the latent morph
        self.model = {"model": model, "model_config": model_config, "device": device, "dtype": dtype,
                      "tiny_vae": tiny_vae} if latents else None  # fmt: skip
        self.images: list[np.ndarray] = []
        self.latents: list[np.ndarray] = []
        self.decoder: Any = None
        self.clock = time.monotonic
        self._start: float | None = None
        self._flows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def load(self) -> None:
        import sqlite3

        from vj.dreams.keeper import makes_dreams
        from vj.dreams.store import DB, DreamStore, default_folder

        folder = self.folder or default_folder()
        advice = "run a show with --dreams there, or vj dream; dreaming live meanwhile"
        if not (folder / DB).is_file():
            raise GeneratorUnusable(f"no dreams stored yet: {folder} has no {DB} ({advice})")
        try:
            store = DreamStore(folder, create=False)
        except ConfigError as e:
            raise GeneratorUnusable(f"cannot replay dreams: {e}") from None
        latents: list[np.ndarray | None] = []
        try:
            unkept = [g for g in store.generators() if not makes_dreams(g)]  # decay's noise, replay's own frames
            for d in store.top(self.count, exclude=unkept):
                try:
                    image = store.image(d)
                except ConfigError as e:  # one picture gone: replay the others
                    log.warning("replay: %s", e)
                    continue
                self.images.append(cover(image, (self.width, self.height)))
                if self.model and self.morph:
                    latents.append(_latent(store, d))
        except (sqlite3.Error, OSError, ValueError) as e:
            raise GeneratorUnusable(f"cannot replay dreams: the store in {folder} cannot be read ({e})") from None
        finally:
            store.close()
        if not self.images:
            raise GeneratorUnusable(f"no dreams stored yet: the store in {folder} has none to replay ({advice})")
        shape = (1, 4, self.height // 8, self.width // 8)
        if latents and all(z is not None and z.shape == shape for z in latents):
            from vj.gen.lcm import LatentDecoder

            try:
                self.decoder = LatentDecoder(**self.model)  # type: ignore[arg-type]
            except GeneratorError as e:  # the pictures are there: morph those instead
                log.warning("replay: %s; morphing the pictures", e)
            else:
                self.latents = [z for z in latents if z is not None]
                self.frame_timeout = 120.0  # a decode on a CPU takes seconds
        elif latents:
            log.info("replay: not every dream has a %s latent; morphing the pictures", "x".join(map(str, shape[2:])))

    def position(self) -> tuple[int, float]:
        """(which dream, how far into the morph to the next one, 0..1)."""
        now = self.clock()
        if self._start is None:
            self._start = now
        t = (now - self._start) / self.seconds
        index = int(t) % len(self.images)
        into = (t - int(t) - (1 - MORPH_SHARE)) / MORPH_SHARE
        return index, min(1.0, max(0.0, into))

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        index, t = self.position()
        a = self.images[index]
        if t <= 0 or len(self.images) == 1:
            return a
        b = self.images[(index + 1) % len(self.images)]
        t = t * t * (3 - 2 * t)  # ease in and out
        if self.decoder is not None:
            from vj.gen.lcm import slerp

            return self.decoder.decode(slerp(self.latents[index], self.latents[(index + 1) % len(self.latents)], t))
        if not self.morph:
            return cv2.addWeighted(a, 1 - t, b, t, 0)
        ab, ba = self._flow(index, a, b)
        h, w = a.shape[:2]
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        # Backward warps: where each output pixel comes from in a (moving toward b) and in b (coming from a).
        wa = cv2.remap(a, gx - t * ab[..., 0], gy - t * ab[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        wb = cv2.remap(
            b, gx - (1 - t) * ba[..., 0], gy - (1 - t) * ba[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        return cv2.addWeighted(wa, 1 - t, wb, t, 0)

    def _flow(self, index: int, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._flows:
            self._flows = {index: (flow(a, b), flow(b, a))}  # one pair at a time
        return self._flows[index]


def _latent(store: Any, dream: Any) -> np.ndarray | None:
    try:
        return store.latent(dream)
    except (OSError, ValueError) as e:  # a missing or damaged latent: that pair morphs along the flow instead
        log.warning("replay: dream %s: latent unreadable (%s)", dream.id, e)
        return None


def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense optical flow from ``a`` to ``b`` (H x W x 2, in pixels of ``a``)."""
    h, w = a.shape[:2]
    scale = FLOW_SIZE / max(h, w)
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    ga = cv2.cvtColor(cv2.resize(a, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor(cv2.resize(b, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]
    f = dis.calc(ga, gb, None)
    return cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) / scale

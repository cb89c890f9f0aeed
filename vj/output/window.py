"""The window on the projector: windowed or full screen on display N, the picture scaled to fit, the HUD on top.

The picture is scaled straight into the display surface's memory (OpenCV writes into a view of it), so a frame
costs one resize and no blit. ``fit="contain"`` keeps the whole picture and fills the rest with black;
``fit="cover"`` fills the screen and crops what sticks out. pygame is imported here, not at ``import vj``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from vj.errors import DeviceError

log = logging.getLogger(__name__)

Fit = Literal["contain", "cover"]


@dataclass(frozen=True)
class Layout:
    """Where the picture goes: the part of the source shown (sx, sy, sw, sh) and its place on screen."""

    src: tuple[int, int, int, int]
    dst: tuple[int, int, int, int]


def layout(src_size: tuple[int, int], screen: tuple[int, int], fit: Fit = "contain") -> Layout:
    (sw, sh), (W, H) = src_size, screen
    if fit == "contain":
        scale = min(W / sw, H / sh)
        w, h = max(1, round(sw * scale)), max(1, round(sh * scale))
        return Layout((0, 0, sw, sh), ((W - w) // 2, (H - h) // 2, w, h))
    scale = max(W / sw, H / sh)
    cw, ch = min(sw, max(1, round(W / scale))), min(sh, max(1, round(H / scale)))
    return Layout(((sw - cw) // 2, (sh - ch) // 2, cw, ch), (0, 0, W, H))


class Window:
    def __init__(
        self,
        size: tuple[int, int] = (1280, 720),
        *,
        fullscreen: bool = False,
        display: int = 0,
        headless: bool = False,
        fit: Fit = "contain",
        title: str = "vj",
    ) -> None:
        if headless:
            os.environ["SDL_VIDEODRIVER"] = "dummy"
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        self.pg = pygame
        try:
            pygame.display.init()
            pygame.font.init()
        except pygame.error as e:
            raise DeviceError(f"no display to open a window on ({e}); use --headless, or start a desktop") from e
        driver = pygame.display.get_driver()
        if not headless and driver in ("offscreen", "dummy") and os.environ.get("SDL_VIDEODRIVER") != driver:
            # With no display reachable SDL falls back to drawing nowhere: the show would run invisibly.
            pygame.display.quit()
            raise DeviceError("no display to open a window on (is DISPLAY set?); use --headless, or start a desktop")
        count = pygame.display.get_num_displays()
        if not 0 <= display < count:
            raise DeviceError(
                f"--display {display}: there {'is' if count == 1 else 'are'} {count} display(s), 0..{count - 1}"
            )
        pygame.display.set_caption(title)
        self.windowed_size, self.display, self.fit = size, display, fit
        self.fullscreen = fullscreen
        self._layout: Layout | None = None
        self._layout_key: tuple[Any, ...] = ()
        self._hud_rect: Any = None
        self._open()

    def _open(self) -> None:
        pg = self.pg
        if self.fullscreen:
            size = pg.display.get_desktop_sizes()[self.display]
            self.surface = pg.display.set_mode(size, pg.FULLSCREEN, display=self.display)
            pg.mouse.set_visible(False)
        else:
            self.surface = pg.display.set_mode(self.windowed_size, 0, display=self.display)
            pg.mouse.set_visible(True)
        if self.surface.get_bytesize() != 4:
            raise DeviceError(f"the display gives a {self.surface.get_bitsize()}-bit surface; vj needs 32-bit colour")
        self.surface.fill((0, 0, 0))
        self._layout_key = ()
        log.info("window %dx%d%s", *self.surface.get_size(), " full screen" if self.fullscreen else "")

    @property
    def size(self) -> tuple[int, int]:
        return self.surface.get_size()

    def toggle_fullscreen(self) -> None:
        self.fullscreen = not self.fullscreen
        self._open()

    def events(self) -> list[Any]:
        return self.pg.event.get()

    def _screen_view(self) -> tuple[Any, np.ndarray]:
        buf = self.surface.get_buffer()
        w, h = self.size
        view = np.frombuffer(buf, np.uint8).reshape(h, self.surface.get_pitch() // 4, 4)[:, :w]
        return buf, view

    def present(self, picture: np.ndarray | None, hud: Any = None) -> None:
        """Show one frame: ``picture`` is BGRA at the generator's size (None: keep black), ``hud`` a surface."""
        if self._hud_rect is not None:
            self.surface.fill((0, 0, 0), self._hud_rect)  # the HUD may have covered the black bars
            self._hud_rect = None
        if picture is not None:
            key = (picture.shape, self.size, self.fit)
            if key != self._layout_key:
                self._layout = layout((picture.shape[1], picture.shape[0]), self.size, self.fit)
                self._layout_key = key
                self.surface.fill((0, 0, 0))
            assert self._layout is not None
            sx, sy, sw, sh = self._layout.src
            dx, dy, dw, dh = self._layout.dst
            src = picture[sy : sy + sh, sx : sx + sw]
            interp = cv2.INTER_AREA if dw < sw else cv2.INTER_LINEAR
            buf, view = self._screen_view()
            try:
                cv2.resize(src, (dw, dh), dst=view[dy : dy + dh, dx : dx + dw], interpolation=interp)
            finally:
                del view, buf  # releases the surface lock before anything else draws
        if hud is not None:
            self._hud_rect = self.surface.blit(hud, (12, 12))
        self.pg.display.flip()

    def to_picture(self, pos: tuple[int, int], size: tuple[int, int]) -> tuple[float, float] | None:
        """Window pixel ``pos`` in the picture's own pixels (``size``), or None outside the picture."""
        lay = self._layout or layout(size, self.size, self.fit)
        sx, sy, sw, sh = lay.src
        dx, dy, dw, dh = lay.dst
        u, v = (pos[0] - dx) / dw, (pos[1] - dy) / dh
        if not (0 <= u <= 1 and 0 <= v <= 1):
            return None
        return sx + u * sw, sy + v * sh

    def sample(self, step: int = 16) -> float:
        """Mean level of a sparse grid of the screen: cheap enough to watch every frame for a change."""
        buf, view = self._screen_view()
        try:
            return float(view[::step, ::step, :3].mean())
        finally:
            del view, buf

    def screenshot(self) -> np.ndarray:
        """What the window shows now, H x W x 3 RGB."""
        return np.ascontiguousarray(self.pg.surfarray.array3d(self.surface).transpose(1, 0, 2))

    def close(self) -> None:
        self.pg.display.quit()

"""The heads-up display: a few lines of text over the picture, for the performer, toggled with Tab.

Text is rendered only when it changes and at most a few times a second: font rendering is slow next to a 60 fps
frame budget, and numbers that flicker every frame cannot be read anyway.
"""

from __future__ import annotations

import unicodedata
from typing import Any

REFRESH_S = 0.25
MAX_CHARS = 200  # a line longer than this cannot be read on a projector anyway


def printable(line: str) -> str:
    """``line`` as the font can draw it: control characters (NUL makes the renderer raise) and characters outside
    the Basic Multilingual Plane (SDL_ttf refuses them) become a visible placeholder; long lines are cut."""
    out = []
    for ch in line[:MAX_CHARS]:
        if ord(ch) > 0xFFFF or unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"):
            out.append("?")
        else:
            out.append(ch)
    return "".join(out)


class Hud:
    def __init__(self, pygame: Any, size: int = 20) -> None:
        self.pg = pygame
        self.font = pygame.font.Font(None, size)
        self.visible = True
        self._lines: list[str] = []
        self._surface: Any = None
        self._rendered_at = -1e9

    def toggle(self) -> None:
        self.visible = not self.visible

    def due(self, now: float) -> bool:
        """Whether it is time to collect fresh lines (so callers skip formatting them otherwise)."""
        return self.visible and now - self._rendered_at >= REFRESH_S

    def update(self, lines: list[str], now: float) -> None:
        self._rendered_at = now
        if lines == self._lines and self._surface is not None:
            return
        self._lines = lines
        pg, font = self.pg, self.font
        rows = []
        for line in lines:
            try:
                rows.append(font.render(printable(line), True, (235, 235, 235)))
            except (pg.error, ValueError):  # whatever text comes in, the HUD must not take the show down
                rows.append(font.render("(unprintable line)", True, (235, 235, 235)))
        width = max((r.get_width() for r in rows), default=0) + 16
        height = sum(r.get_height() + 2 for r in rows) + 12
        panel = pg.Surface((width, height), pg.SRCALPHA)
        panel.fill((0, 0, 0, 150))
        y = 6
        for r in rows:
            panel.blit(r, (8, y))
            y += r.get_height() + 2
        self._surface = panel

    def surface(self) -> Any:
        return self._surface if self.visible else None

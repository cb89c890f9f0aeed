"""The keyboard: a control source like the others, read on the loop thread (SDL delivers key events there).

Keys are a table: a key press posts ``(target, op, value)`` on the bus with source ``keys``. Enter opens a prompt
line at the bottom of the HUD: type, Enter sends it as the new prompt, Esc cancels.
"""

from __future__ import annotations

from typing import Any

from vj.control.bus import ControlBus, Op

# Printable keys by the character they type (so '+' works on any layout), special keys by pygame name.
CHARS: dict[str, tuple[str, Op, Any]] = {
    "+": ("zoom", "nudge", 1),
    "=": ("zoom", "nudge", 1),
    "-": ("zoom", "nudge", -1),
    "[": ("rotate", "nudge", -1),
    "]": ("rotate", "nudge", 1),
    ",": ("speed", "nudge", -1),
    ".": ("speed", "nudge", 1),
    "b": ("blackout", "toggle", None),
    "h": ("freeze", "toggle", None),
    "g": ("pause_gpu", "toggle", None),
    "f": ("fullscreen", "fire", None),
    "q": ("quit", "fire", None),
    " ": ("spark", "fire", None),
    "s": ("save", "fire", None),
    "r": ("replay", "fire", None),
    "t": ("tap", "fire", None),
    "n": ("scene", "set", "next"),
    "p": ("scene", "set", "previous"),
    **{str(n): ("scene", "set", n) for n in range(1, 10)},
}
SPECIAL: dict[str, tuple[str, Op, Any]] = {
    "K_LEFT": ("pan_x", "nudge", -1),
    "K_RIGHT": ("pan_x", "nudge", 1),
    "K_UP": ("pan_y", "nudge", 1),
    "K_DOWN": ("pan_y", "nudge", -1),
    "K_KP_PLUS": ("zoom", "nudge", 1),
    "K_KP_MINUS": ("zoom", "nudge", -1),
    "K_PAGEUP": ("strength", "nudge", 1),
    "K_PAGEDOWN": ("strength", "nudge", -1),
    "K_BACKSPACE": ("stop", "fire", None),
    "K_TAB": ("hud", "fire", None),
    "K_ESCAPE": ("quit", "fire", None),
}

# With Ctrl held.
CTRL: dict[str, tuple[str, Op, Any]] = {"r": ("record", "toggle", None)}

# Keys that are on while held: down sets the parameter, up clears it.
HOLD: dict[str, str] = {"v": "ptt"}

HELP = (
    "arrows pan  +/- zoom  [ ] rotate  , . speed  PgUp/PgDn strength  Backspace stop",
    "1-9 scene  N/P next/previous scene  R replay  S save  Space spark  T tap tempo  Enter type a prompt",
    "B blackout  H freeze  G pause/resume the GPU  hold V to talk  Ctrl+R record  Tab HUD  F full screen  Esc quit",
)


class Keyboard:
    def __init__(self, pygame: Any, bus: ControlBus) -> None:
        self.pg, self.bus = pygame, bus
        self.special = {getattr(pygame, k): v for k, v in SPECIAL.items()}
        self.typing: str | None = None  # the prompt being typed, or None
        pygame.key.set_repeat(350, 60)
        pygame.key.stop_text_input()

    def handle(self, event: Any) -> None:
        pg = self.pg
        if event.type == pg.QUIT:
            self.bus.post("keys", "quit", op="fire")
        elif self.typing is not None:
            self._edit(event)
        elif event.type in (pg.KEYDOWN, pg.KEYUP) and pg.key.name(event.key) in HOLD:
            self.bus.post("keys", HOLD[pg.key.name(event.key)], event.type == pg.KEYDOWN)
        elif event.type == pg.KEYDOWN:
            if event.key in (pg.K_RETURN, pg.K_KP_ENTER):
                self.typing = ""
                pg.key.start_text_input()
                return
            if event.mod & pg.KMOD_CTRL:
                entry = CTRL.get(pg.key.name(event.key))
            else:
                entry = self.special.get(event.key) or CHARS.get(event.unicode.lower() if event.unicode else "")
            if entry is not None:
                target, op, value = entry
                self.bus.post("keys", target, value, op)

    def _edit(self, event: Any) -> None:
        pg = self.pg
        if event.type == pg.TEXTINPUT:
            self.typing = (self.typing or "") + event.text
        elif event.type == pg.KEYDOWN:
            if event.key in (pg.K_RETURN, pg.K_KP_ENTER):
                if (self.typing or "").strip():
                    self.bus.post("keys", "prompt", self.typing)
                self._close()
            elif event.key == pg.K_ESCAPE:
                self._close()
            elif event.key == pg.K_BACKSPACE:
                self.typing = (self.typing or "")[:-1]

    def _close(self) -> None:
        self.typing = None
        self.pg.key.stop_text_input()

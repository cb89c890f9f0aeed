"""Actions: targets that do something instead of holding a value (quit, stop, spark...).

Like parameters they are data: each row names the action, what argument it takes, and what it does. Control
sources may post to any parameter or action by name; mapping files are checked against both tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Arg = Literal["none", "int|string"]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    arg: Arg = "none"
    doc: str = ""
    remote: bool = True  # reachable over OSC and MIDI (quitting the show is not: one stray packet would end it)


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("quit", doc="end the show", remote=False),
    ActionSpec("stop", doc="stop all motion (zoom, pan, rotate back to 0)"),
    ActionSpec("hud", doc="show or hide the heads-up display"),
    ActionSpec("fullscreen", doc="switch between window and full screen"),
    ActionSpec("scene", "int|string", "switch scene: a number from 1, a name, next or previous"),
    ActionSpec("replay", doc="go to the replay scene: the best dreams kept so far"),
)

ACTION_NAMES = frozenset(a.name for a in ACTIONS)

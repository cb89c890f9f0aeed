"""The loop's scene state: what is on, switching (by number, name, next, previous), prompt cycling, live reload.

Switching never stalls: numbers glide to the new values over the scene's ``transition``, the output crossfades
from a moving snapshot of the old look. The director watches the scenes folder: an edited scene reloads live; a
broken edit keeps the old scene and says why.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

from vj.errors import ConfigError, ParamError
from vj.params import unknown
from vj.scenes import RELOAD_S, Scene, load_scene, scene_files

log = logging.getLogger(__name__)


class Director:
    """The loop's scene state: what is on, switching, prompt cycling and live reload."""

    def __init__(self, scenes: list[Scene], folder: Path | None = None) -> None:
        self.scenes = list(scenes)
        self.folder = folder
        self.active: Scene | None = None
        self.switches = 0
        self.errors: dict[str, str] = {}  # file -> why its latest edit was not taken
        self._next_check = 0.0
        self._mtimes = {s.file: s.mtime for s in self.scenes}
        self._cycle_at: float | None = None
        self._cycle_index = 0

    @property
    def number(self) -> int | None:
        return next((i + 1 for i, s in enumerate(self.scenes) if s is self.active), None)

    def resolve(self, ref: Any) -> Scene:
        """A scene by number (from 1), name (any case), file stem, ``next`` or ``previous``."""
        if not self.scenes:
            raise ParamError("there are no scenes (put scene files in scenes/ or give --scenes)")
        n = len(self.scenes)
        if isinstance(ref, str) and ref.strip().isascii() and ref.strip().isdigit():
            ref = int(ref)  # "²" is a digit to str.isdigit() but not a number to int()
        if isinstance(ref, float) and ref.is_integer():
            ref = int(ref)
        if isinstance(ref, int) and not isinstance(ref, bool):
            if not 1 <= ref <= n:
                raise ParamError(f"no scene {ref}: there {'is' if n == 1 else 'are'} {n}, numbered from 1")
            return self.scenes[ref - 1]
        if not isinstance(ref, str):
            raise ParamError(f"scene needs a number or a name, got {ref!r}")
        word = ref.strip().lower()
        if word in ("next", "previous", "prev"):
            current = (self.number or 0) - 1
            step = 1 if word == "next" else -1
            return self.scenes[(current + step) % n if self.active else (0 if step > 0 else n - 1)]
        for s in self.scenes:
            if word in (s.name.lower(), Path(s.file).stem.lower()):
                return s
        raise unknown(ref, [s.name for s in self.scenes], "scene")

    def switch(self, ref: Any, stage: Stage, now: float) -> Scene:
        scene = self.resolve(ref)
        self.apply(scene, stage, now)
        self.switches += 1
        return scene

    def apply(self, scene: Scene, stage: Stage, now: float, reload: bool = False) -> None:
        """Put ``scene`` on stage: every change glides or crossfades over its transition."""
        self.active = scene
        stage.apply_scene(scene, reload)
        self._cycle_index = 0
        self._cycle_at = now + scene.cycle if scene.cycle else None

    def step(self, stage: Stage, now: float) -> None:
        """Per frame: advance a prompt cycle; every half second, look for edited scene files."""
        scene = self.active
        if scene is not None and self._cycle_at is not None and now >= self._cycle_at:
            self._cycle_index = (self._cycle_index + 1) % len(scene.prompts)
            stage.next_prompt(scene.prompts[self._cycle_index], scene.transition)
            self._cycle_at = now + (scene.cycle or 0)
        if self.folder is not None and now >= self._next_check:
            self._next_check = now + RELOAD_S
            self.reload(stage, now)

    def reload(self, stage: Stage, now: float) -> None:
        assert self.folder is not None
        try:
            files = scene_files(self.folder)
        except OSError:
            return
        changed = False
        for path in files:
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if self._mtimes.get(str(path)) == mtime:
                continue
            self._mtimes[str(path)] = mtime
            try:
                scene = load_scene(path)
            except ConfigError as e:
                self.errors[str(path)] = str(e)
                log.error("scene not reloaded, the old one stays: %s", e)
                continue
            self.errors.pop(str(path), None)
            old = next((i for i, s in enumerate(self.scenes) if s.file == scene.file), None)
            if old is None:
                self.scenes.append(scene)
                log.info("new scene: %s", scene.name)
            else:
                was_active = self.scenes[old] is self.active
                self.scenes[old] = scene
                log.info("scene reloaded: %s", scene.name)
                if was_active:
                    self.apply(scene, stage, now, reload=True)
            changed = True
        gone = [s for s in self.scenes if not os.path.exists(s.file)]
        for s in gone:
            self.scenes.remove(s)
            self._mtimes.pop(s.file, None)
            changed = True
        if changed:
            self.scenes.sort(key=lambda s: Path(s.file).name)

    def report(self) -> dict[str, Any]:
        return {
            "scene": self.active.name if self.active else None,
            "scene_number": self.number,
            "scene_switches": self.switches,
            "scene_errors": dict(self.errors),
        }


class Stage(Protocol):
    """What a scene acts on (the show implements it): kept narrow so scenes stay testable without a window."""

    def apply_scene(self, scene: Scene, reload: bool) -> None: ...

    def next_prompt(self, prompt: str, transition: float) -> None: ...

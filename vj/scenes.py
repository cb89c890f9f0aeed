"""Scenes: one file switches the whole look — prompt, motion, generator, layers, controller mapping.

A scene is a TOML file in ``scenes/`` (see the README for every key). Scenes are numbered from 1 in file-name
order; ``vj scenes list`` prints their names in that order. Every file is checked completely at load: an error
names the file, the key path and the fix, and ``vj run`` does not start with a broken scene.

The loop's director (``vj.engine.director``) switches scenes by number, name, ``next`` or ``previous`` — from
keys, MIDI program change, OSC, voice — and reloads edited files live.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vj.control.mapping import Mapping, parse_mapping
from vj.errors import ConfigError, ParamError
from vj.layers.spec import LayerSpec, layer_spec
from vj.params import PARAMS, unknown
from vj.tomlfile import read_toml

log = logging.getLogger(__name__)

SCENES_DIR = Path(__file__).resolve().parent / "data" / "scenes"  # package data (scenes/ links here)
KEYS = (
    "name",
    "kind",
    "prompt",
    "prompts",
    "cycle",
    "blend",
    "generator",
    "transition",
    "params",
    "layers",
    "mapping",
    "replay",
)
KINDS = ("dream", "replay")
RELOAD_S = 0.5


@dataclass(frozen=True)
class ReplayOptions:
    seconds: float = 6.0  # each dream on screen
    count: int = 12  # how many of the best dreams
    feed: bool = False  # bloom each into the live dream instead of showing it as it was
    morph: bool = True  # between dreams: an optical-flow morph (else a crossfade)


@dataclass(frozen=True)
class Scene:
    name: str
    file: str
    kind: str = "dream"
    prompts: tuple[str, ...] = ()
    cycle: float | None = None  # seconds per prompt when there are several
    blend: float | None = None  # fixed fader between the first two prompts
    generator: str | None = None
    generator_options: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    layers: tuple[LayerSpec, ...] | None = None  # None: keep whatever layers are on
    mapping: Mapping | None = None
    transition: float = 2.0
    replay: ReplayOptions | None = None
    mtime: float = 0.0


def _fail(file: str, key: str, message: str, fix: str | None = None) -> ConfigError:
    return ConfigError(message, file=file, key=key, fix=fix)


def _number(file: str, key: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(file, key, f"expected a number {lo:g}..{hi:g}, got {value!r}")
    if not lo <= value <= hi:
        raise _fail(file, key, f"{value:g} is out of range", f"use {lo:g}..{hi:g}")
    return float(value)


def _text(file: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(file, key, f"expected some text, got {value!r}")
    return " ".join(value.split())


def parse_scene(data: dict[str, Any], file: str, base: Path | None = None) -> Scene:
    """A scene from parsed TOML; relative layer paths are taken from ``base`` (the scene file's folder)."""
    for key in data:
        if key not in KEYS:
            import difflib

            close = difflib.get_close_matches(key, KEYS, n=1)
            raise _fail(
                file,
                key,
                f"unknown key '{key}'",
                f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(KEYS)}",
            )
    name = _text(file, "name", data["name"]) if "name" in data else Path(file).stem
    kind = data.get("kind", "dream")
    if kind not in KINDS:
        raise _fail(file, "kind", f"unknown scene kind {kind!r}", f"choose {' | '.join(KINDS)}")
    if "prompt" in data and "prompts" in data:
        raise _fail(file, "prompts", "both prompt and prompts are set", "keep one")
    prompts: tuple[str, ...] = ()
    if "prompt" in data:
        prompts = (_text(file, "prompt", data["prompt"]),)
    elif "prompts" in data:
        raw = data["prompts"]
        if not isinstance(raw, list) or not raw:
            raise _fail(file, "prompts", f"expected a list of prompts, got {raw!r}")
        prompts = tuple(_text(file, f"prompts[{i}]", p) for i, p in enumerate(raw))
    cycle = _number(file, "cycle", data["cycle"], 1, 3600) if "cycle" in data else None
    blend = _number(file, "blend", data["blend"], 0, 1) if "blend" in data else None
    if (cycle is not None or blend is not None) and len(prompts) < 2:
        raise _fail(
            file,
            "cycle" if cycle is not None else "blend",
            "needs at least two prompts",
            'give prompts = ["...", "..."]',
        )
    if cycle is not None and blend is not None:
        raise _fail(
            file, "blend", "cycle and blend are set", "cycle goes through the prompts, blend holds a mix: keep one"
        )
    generator, options = _generator(file, data.get("generator"))
    transition = _number(file, "transition", data.get("transition", 2.0), 0, 60)
    if cycle is not None and cycle < transition:
        raise _fail(
            file,
            "cycle",
            f"each prompt lasts {cycle:g} s, less than the {transition:g} s transition",
            "make cycle at least as long as transition",
        )
    params = _params(file, data.get("params", {}))
    layers = None
    if "layers" in data:
        raw_layers = data["layers"]
        if not isinstance(raw_layers, list):
            raise _fail(file, "layers", "expected [[layers]] tables")
        layers = tuple(_layer(file, i, entry, base) for i, entry in enumerate(raw_layers))
        if len(layers) > 4:
            raise _fail(file, "layers", f"{len(layers)} layers; there are 4 slots", "use at most 4")
    mapping = None
    if "mapping" in data:
        if not isinstance(data["mapping"], dict):
            raise _fail(file, "mapping", "expected a table with [mapping.midi] and/or [mapping.osc]")
        mapping = parse_mapping(data["mapping"], file, prefix="mapping")
    replay = _replay(file, data.get("replay")) if kind == "replay" else None
    if kind != "replay" and "replay" in data:
        raise _fail(file, "replay", "replay options belong to a replay scene", 'add kind = "replay"')
    return Scene(
        name, file, kind, prompts, cycle, blend, generator, options, params, layers, mapping, transition, replay
    )


def _generator(file: str, value: Any) -> tuple[str | None, dict[str, Any]]:
    if value is None:
        return None, {}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise _fail(
            file, "generator", f"expected a name or a table with name = ..., got {value!r}", 'e.g. generator = "sketch"'
        )
    from vj.gen import GENERATORS

    name = value["name"]
    if name not in GENERATORS and ":" not in name:
        raise _fail(file, "generator.name", f"unknown generator '{name}'", f"choose {', '.join(GENERATORS)}")
    options = {k: v for k, v in value.items() if k != "name"}
    if options:
        import inspect

        from vj.gen.base import find

        try:
            accepted = inspect.signature(find(name).__init__).parameters
        except Exception as e:  # noqa: BLE001 - a custom generator that cannot even be imported
            raise _fail(file, "generator.name", f"cannot load generator '{name}': {e}") from None
        if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            known = [k for k in accepted if k not in ("self", "size")]
            for key in options:
                if key not in known:
                    raise _fail(
                        file, f"generator.{key}", f"'{name}' has no option '{key}'", f"choose {', '.join(known)}"
                    )
    return name, options


def _params(file: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _fail(file, "params", "expected a [params] table")
    specs = {p.name: p for p in PARAMS}
    out = {}
    for name, value in table.items():
        if name not in specs:
            raise _fail(file, f"params.{name}", str(unknown(name, specs)))
        spec = specs[name]
        if spec.kind == "trigger":
            raise _fail(file, f"params.{name}", f"{name} is a trigger, not a setting", "remove it")
        try:
            out[name] = spec.check(value)
        except ParamError as e:
            raise _fail(file, f"params.{name}", str(e)) from None
    return out


def _layer(file: str, i: int, entry: Any, base: Path | None) -> LayerSpec:
    if not isinstance(entry, dict):
        raise _fail(file, f"layers[{i}]", "expected a table")
    entry = dict(entry)
    source = entry.get("source")
    relative = isinstance(source, str) and not Path(source).is_absolute()
    if base is not None and relative and entry.get("kind") in ("image", "video"):
        entry["source"] = str(base / str(source))
    return layer_spec(entry, file, key=f"layers[{i}]")


def _replay(file: str, value: Any) -> ReplayOptions:
    if value is None:
        return ReplayOptions()
    if not isinstance(value, dict):
        raise _fail(file, "replay", "expected a [replay] table")
    for k in value:
        if k not in ("seconds", "count", "feed", "morph"):
            raise _fail(file, f"replay.{k}", f"unknown key '{k}'", "known keys: seconds, count, feed, morph")
    for k in ("feed", "morph"):
        if k in value and not isinstance(value[k], bool):
            raise _fail(file, f"replay.{k}", f"expected true or false, got {value[k]!r}")
    count = value.get("count", 12)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
        raise _fail(file, "replay.count", f"expected a whole number 1..1000, got {count!r}")
    return ReplayOptions(
        seconds=_number(file, "replay.seconds", value.get("seconds", 6.0), 0.5, 600),
        count=count,
        feed=value.get("feed", False),
        morph=value.get("morph", True),
    )


def load_scene(path: Path) -> Scene:
    try:
        mtime = path.stat().st_mtime
    except OSError as e:
        raise ConfigError(f"cannot read it ({e.strerror})", file=str(path)) from None
    data = read_toml(path)
    scene = parse_scene(data, str(path), path.parent)
    return Scene(**{**scene.__dict__, "mtime": mtime})


def scene_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.toml") if p.is_file())


def load_scenes(folder: Path) -> list[Scene]:
    """Every scene in ``folder``, in file-name order (scene 1 first)."""
    if not folder.is_dir():
        raise ConfigError("no such folder", file=str(folder), fix="give --scenes a folder of scene files")
    scenes = [load_scene(p) for p in scene_files(folder)]
    names: dict[str, str] = {}
    for s in scenes:
        key = s.name.lower()
        if key in names:
            raise ConfigError(
                f"the scene name '{s.name}' is also used by {names[key]}",
                file=s.file,
                key="name",
                fix="give each scene its own name",
            )
        names[key] = s.file
    return scenes

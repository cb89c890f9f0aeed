"""Scenes: one file switches the whole look — prompt, motion, generator, layers, controller mapping.

A scene is a TOML file in ``scenes/`` (see the README for every key). Scenes are numbered from 1 in file-name
order; ``vj scenes list`` prints their names in that order. Every file is checked completely at load: an error
names the file, the key path and the fix, and ``vj run`` does not start with a broken scene.

The loop's director (``vj.engine.director``) switches scenes by number, name, ``next`` or ``previous`` — from
keys, MIDI program change, OSC, voice — and reloads edited files live.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from vj.control.mapping import Mapping, parse_mapping
from vj.errors import ConfigError, ParamError
from vj.layers.spec import LayerSpec, layer_spec
from vj.params import PARAMS, unknown
from vj.schema import Table, check, invalid
from vj.tempo import Quantize, Shape
from vj.tomlfile import read_toml

log = logging.getLogger(__name__)

SCENES_DIR = Path(__file__).resolve().parent / "data" / "scenes"  # package data (scenes/ links here)
RELOAD_S = 0.5


@dataclass(frozen=True)
class ReplayOptions:
    seconds: float = 6.0  # each dream on screen
    count: int = 12  # how many of the best dreams
    feed: bool = False  # bloom each into the live dream instead of showing it as it was
    morph: bool = True  # between dreams: an optical-flow morph (else a crossfade)


@dataclass(frozen=True)
class Lfo:
    """A parameter that follows the beat: ``depth`` (in its units) times a wave of ``beats`` beats a cycle."""

    param: str
    shape: str = "sine"
    beats: float = 4.0
    depth: float = 0.1


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
    quantize: str | None = None  # switching to this scene waits for the next "beat" or "bar"
    lfos: tuple[Lfo, ...] = ()
    spark_bars: int = 0  # a spark on the downbeat every this many bars (0: none)


def _fail(file: str, key: str, message: str, fix: str | None = None) -> ConfigError:
    return ConfigError(message, file=file, key=key, fix=fix)


def _text(value: str) -> str:
    if not value.strip():
        raise invalid(f"expected some text, got {value!r}")
    return " ".join(value.split())


Text = Annotated[str, AfterValidator(_text), Field(json_schema_extra={"expected": "some text"})]


class ReplayTable(Table):
    seconds: float = Field(6.0, ge=0.5, le=600, allow_inf_nan=False)
    count: int = Field(12, ge=1, le=1000, json_schema_extra={"expected": "a whole number 1..1000"})
    feed: bool = False
    morph: bool = True


class LfoTable(Table):
    shape: Shape = "sine"
    beats: float = Field(4.0, gt=0, le=256, allow_inf_nan=False, json_schema_extra={"expected": "beats a cycle"})
    depth: float = Field(allow_inf_nan=False, json_schema_extra={"missing": "add depth = ..., in its units"})


class SceneTable(Table):
    """The shape of a scene file; what it names (parameters, generators, layers, mappings) is checked after."""

    name: Text | None = None
    kind: Literal["dream", "replay"] = Field("dream", json_schema_extra={"what": "scene kind"})
    prompt: Text | None = None
    prompts: list[Text] | None = Field(None, min_length=1, json_schema_extra={"expected": "a list of prompts"})
    cycle: float | None = Field(None, ge=1, le=3600, allow_inf_nan=False)
    blend: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    generator: Any = None
    transition: float = Field(2.0, ge=0, le=60, allow_inf_nan=False)
    params: dict[str, Any] = Field(default_factory=dict, json_schema_extra={"expected": "a [params] table"})
    layers: list[dict[str, Any]] | None = Field(None, json_schema_extra={"expected": "[[layers]] tables"})
    mapping: dict[str, Any] | None = Field(
        None, json_schema_extra={"expected": "a table with [mapping.midi] and/or [mapping.osc]"}
    )
    replay: ReplayTable | None = None
    quantize: Quantize | None = None
    lfo: dict[str, LfoTable] = Field(default_factory=dict, json_schema_extra={"expected": "[lfo.<parameter>] tables"})
    spark_bars: int = Field(0, ge=0, le=64, json_schema_extra={"expected": "a whole number of bars 0..64"})

    @model_validator(mode="after")
    def _fits_together(self) -> SceneTable:
        if self.prompt is not None and self.prompts is not None:
            raise invalid("both prompt and prompts are set", "keep one", key="prompts")
        count = 1 if self.prompt is not None else len(self.prompts or ())
        if (self.cycle is not None or self.blend is not None) and count < 2:
            key = "cycle" if self.cycle is not None else "blend"
            raise invalid("needs at least two prompts", 'give prompts = ["...", "..."]', key=key)
        if self.cycle is not None and self.blend is not None:
            fix = "cycle goes through the prompts, blend holds a mix: keep one"
            raise invalid("cycle and blend are set", fix, key="blend")
        if self.cycle is not None and self.cycle < self.transition:
            raise invalid(
                f"each prompt lasts {self.cycle:g} s, less than the {self.transition:g} s transition",
                "make cycle at least as long as transition",
                key="cycle",
            )
        if self.kind != "replay" and self.replay is not None:
            raise invalid("replay options belong to a replay scene", 'add kind = "replay"', key="replay")
        return self


def parse_scene(data: dict[str, Any], file: str, base: Path | None = None) -> Scene:
    """A scene from parsed TOML; relative layer paths are taken from ``base`` (the scene file's folder)."""
    t = check(SceneTable, data, file)
    prompts = (t.prompt,) if t.prompt is not None else tuple(t.prompts or ())
    generator, options = _generator(file, t.generator)
    params = _params(file, t.params)
    layers = None
    if t.layers is not None:
        layers = tuple(_layer(file, i, entry, base) for i, entry in enumerate(t.layers))
        if len(layers) > 4:
            raise _fail(file, "layers", f"{len(layers)} layers; there are 4 slots", "use at most 4")
    mapping = parse_mapping(t.mapping, file, prefix="mapping") if t.mapping is not None else None
    replay = None
    if t.kind == "replay":
        r = t.replay or ReplayTable()
        replay = ReplayOptions(seconds=float(r.seconds), count=r.count, feed=r.feed, morph=r.morph)
    lfos = tuple(_lfo(file, name, entry) for name, entry in t.lfo.items())
    return Scene(
        t.name or Path(file).stem,
        file,
        t.kind,
        prompts,
        t.cycle,
        t.blend,
        generator,
        options,
        params,
        layers,
        mapping,
        t.transition,
        replay,
        quantize=t.quantize,
        lfos=lfos,
        spark_bars=t.spark_bars,
    )


def _lfo(file: str, name: str, t: LfoTable) -> Lfo:
    specs = {p.name: p for p in PARAMS}
    if name not in specs:
        raise _fail(file, f"lfo.{name}", str(unknown(name, specs)))
    spec = specs[name]
    if spec.kind not in ("float", "int") or spec.lo is None or spec.hi is None:
        raise _fail(file, f"lfo.{name}", f"{name} is {spec.describe()}: only numbers can follow the beat")
    if name == "bpm":
        raise _fail(file, "lfo.bpm", "the tempo cannot follow its own beat", "remove [lfo.bpm]")
    if abs(t.depth) > spec.span:
        raise _fail(
            file, f"lfo.{name}.depth", f"{t.depth:g} is more than {name}'s whole range", f"keep it within {spec.span:g}"
        )
    return Lfo(name, t.shape, float(t.beats), float(t.depth))


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


def _params(file: str, table: dict[str, Any]) -> dict[str, Any]:
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


def _layer(file: str, i: int, entry: dict[str, Any], base: Path | None) -> LayerSpec:
    entry = dict(entry)
    source = entry.get("source")
    relative = isinstance(source, str) and not Path(source).is_absolute()
    if base is not None and relative and entry.get("kind") in ("image", "video"):
        entry["source"] = str(base / str(source))
    return layer_spec(entry, file, key=f"layers[{i}]")


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

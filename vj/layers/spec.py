"""Layer specs: what a scene's ``[[layers]]`` table or ``--layer`` asks for, checked with file, key and fix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from vj.errors import ConfigError
from vj.frame.compose import BlendMode
from vj.schema import Table, check, invalid

LayerKind = Literal["image", "video", "camera", "solid", "gradient", "brush"]
KINDS: tuple[str, ...] = get_args(LayerKind)
SLOTS = 4


def parse_colour(text: str) -> tuple[int, int, int]:
    t = text.strip().lstrip("#")
    if len(t) == 6:
        try:
            return int(t[0:2], 16), int(t[2:4], 16), int(t[4:6], 16)
        except ValueError:
            pass
    raise ValueError(f"'{text}' is not a colour; write it as #rrggbb, e.g. #ff0080")


class LayerTable(Table):
    """One ``[[layers]]`` table (or one ``--layer``)."""

    kind: LayerKind = Field(json_schema_extra={"what": "layer kind", "missing": f"add kind = {' | '.join(KINDS)}"})
    source: str = Field("", json_schema_extra={"expected": "text", "fix": "a path, a camera number or a colour"})
    mode: BlendMode = Field("normal", json_schema_extra={"what": "blend mode"})
    into: Literal["top", "loop"] = Field("top", json_schema_extra={"what": "place"})
    opacity: float = Field(0.5, ge=0.0, le=1.0)
    angle: float = Field(90.0, ge=-360.0, le=360.0)  # gradients: direction in degrees, 90 = top to bottom

    @model_validator(mode="after")
    def _source_fits_kind(self) -> LayerTable:
        kind, source = self.kind, self.source
        if kind in ("image", "video") and not Path(source).is_file():
            raise invalid(f"no such file: {source!r}", f"give the path of the {kind} file", key="source")
        if kind in ("solid", "gradient"):
            parts = source.split(":") if kind == "gradient" else [source]
            try:
                for part in parts:
                    parse_colour(part)
            except ValueError as e:
                fix = "a gradient takes two: #000000:#ff0080" if kind == "gradient" else "one colour, #rrggbb"
                raise invalid(str(e), fix, key="source") from None
            if len(parts) != (2 if kind == "gradient" else 1):
                raise invalid(f"a gradient needs two colours, got {source!r}", "write #000000:#ff0080", key="source")
        if kind == "camera" and source and not source.isdigit():
            raise invalid(f"camera wants a device number, got {source!r}", "e.g. 0 for the first camera", key="source")
        return self


@dataclass(frozen=True)
class LayerSpec:
    kind: str
    source: str = ""
    mode: str = "normal"
    into: str = "top"
    opacity: float = 0.5
    angle: float = 90.0


def layer_spec(data: Mapping[str, Any], where: str, key: str = "layer") -> LayerSpec:
    """A layer from a table (scene files) or from ``--layer`` (parsed into one); errors name where and the fix."""
    t = check(LayerTable, dict(data), where, prefix=key)
    return LayerSpec(t.kind, t.source, t.mode, t.into, float(t.opacity), float(t.angle))


def parse_layer_option(text: str) -> LayerSpec:
    """``--layer KIND=SOURCE,mode=screen,into=loop,opacity=0.6`` (``brush`` and ``camera`` need no source)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError("empty layer", key="--layer", fix="e.g. --layer video=clip.mp4,mode=screen")
    kind, _, source = parts[0].partition("=")
    data: dict[str, Any] = {"kind": kind.strip(), "source": source.strip()}
    for part in parts[1:]:
        k, eq, v = part.partition("=")
        if not eq:
            raise ConfigError(f"'{part}' is not key=value", key="--layer", fix="e.g. mode=screen")
        k = k.strip()
        try:
            data[k] = float(v) if k in ("opacity", "angle") else v.strip()
        except ValueError:
            data[k] = v
    return layer_spec(data, f"--layer {text}", key="")

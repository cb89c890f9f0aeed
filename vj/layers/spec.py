"""Layer specs: what a scene's ``[[layers]]`` table or ``--layer`` asks for, checked with file, key and fix."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vj.errors import ConfigError
from vj.frame.compose import BLEND_MODES

KINDS = ("image", "video", "camera", "solid", "gradient", "brush")
SLOTS = 4


def parse_colour(text: str) -> tuple[int, int, int]:
    t = text.strip().lstrip("#")
    if len(t) == 6:
        try:
            return int(t[0:2], 16), int(t[2:4], 16), int(t[4:6], 16)
        except ValueError:
            pass
    raise ValueError(f"'{text}' is not a colour; write it as #rrggbb, e.g. #ff0080")


@dataclass(frozen=True)
class LayerSpec:
    kind: str
    source: str = ""
    mode: str = "normal"
    into: str = "top"
    opacity: float = 0.5
    angle: float = 90.0  # gradients: direction in degrees, 90 = top to bottom


_LAYER_KEYS = ("kind", "source", "mode", "into", "opacity", "angle")


def layer_spec(data: Mapping[str, Any], where: str, key: str = "layer") -> LayerSpec:
    """A layer from a table (scene files) or from ``--layer`` (parsed into one); errors name where and the fix."""

    def fail(k: str, message: str, fix: str) -> ConfigError:
        return ConfigError(message, file=where, key=".".join(x for x in (key, k) if x), fix=fix)

    for k in data:
        if k not in _LAYER_KEYS:
            raise fail(k, f"unknown key '{k}'", f"known keys: {', '.join(_LAYER_KEYS)}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise fail("kind", f"unknown layer kind {kind!r}", f"choose {' | '.join(KINDS)}")
    source = data.get("source", "")
    if not isinstance(source, str):
        raise fail("source", f"expected text, got {source!r}", "a path, a camera number or a colour")
    if kind in ("image", "video") and not Path(source).is_file():
        raise fail("source", f"no such file: {source!r}", f"give the path of the {kind} file")
    if kind in ("solid", "gradient"):
        try:
            for part in source.split(":") if kind == "gradient" else [source]:
                parse_colour(part)
        except ValueError as e:
            raise fail(
                "source",
                str(e),
                "a gradient takes two: #000000:#ff0080" if kind == "gradient" else "one colour, #rrggbb",
            ) from None
        if kind == "gradient" and len(source.split(":")) != 2:
            raise fail("source", f"a gradient needs two colours, got {source!r}", "write #000000:#ff0080")
    if kind == "camera" and source and not source.isdigit():
        raise fail("source", f"camera wants a device number, got {source!r}", "e.g. 0 for the first camera")
    mode = data.get("mode", "normal")
    if mode not in BLEND_MODES:
        raise fail("mode", f"unknown blend mode {mode!r}", f"choose {' | '.join(BLEND_MODES)}")
    into = data.get("into", "top")
    if into not in ("top", "loop"):
        raise fail("into", f"unknown place {into!r}", "top (over the output) or loop (into the dream)")
    opacity, angle = data.get("opacity", 0.5), data.get("angle", 90.0)
    for k, v, lo, hi in (("opacity", opacity, 0.0, 1.0), ("angle", angle, -360.0, 360.0)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi) or not math.isfinite(v):
            raise fail(
                k, f"{k} must be a number {lo:g}..{hi:g}, got {v!r}", f"e.g. {k} = {0.5 if k == 'opacity' else 90}"
            )
    return LayerSpec(kind, source, mode, into, float(opacity), float(angle))


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

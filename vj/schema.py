"""TOML tables checked against pydantic models, with vj's one-line errors: file, key path, message, fix.

Models say the shape (keys, types, ranges, choices) as data; ``check`` runs pydantic in strict mode (TOML's types
are exact, so "1" is never taken for 1) and turns its first error into a ``ConfigError``:

    bad.toml: midi.cc[3].channel: 17 is out of range (use 1..16)
    bad.toml: midi.cc[0].chanel: unknown key 'chanel' (did you mean 'channel'?)

Checks that depend on more than one key raise ``Invalid`` from a validator, with the key it is about and the fix.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from vj.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Table(BaseModel):
    """A TOML table: unknown keys are errors, values are taken as they are."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def invalid(message: str, fix: str | None = None, key: str | None = None) -> PydanticCustomError:
    """An error for a validator to raise: ``key`` (relative to the table checked) names the key it is about."""
    return PydanticCustomError("vj", "{message}", {"message": message, "fix": fix, "key": key})


def describe(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def check(model: type[M], data: Any, file: str, prefix: str = "", context: Any = None) -> M:
    """``data`` as ``model``, or a ConfigError naming ``file``, the key path (under ``prefix``) and the fix."""
    try:
        return model.model_validate(data, strict=True, context=context)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        # A misspelt key explains the 'missing' error it causes: name the misspelling first.
        error = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
        loc = tuple(error["loc"])
        try:
            message, fix, key = _explain(model, error, loc)
        except Exception:  # noqa: BLE001 - explaining must never be what fails: pydantic's own words will do
            message, fix, key = error["msg"], None, path(loc)
        raise ConfigError(message, file=file, key=".".join(k for k in (prefix, key) if k), fix=fix) from None


def _explain(model: type[BaseModel], error: Any, loc: tuple[Any, ...]) -> tuple[str, str | None, str]:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    name = str(loc[-1]) if loc else ""
    field = _field(model, loc)
    extra = (field.json_schema_extra if field is not None else None) or {}
    assert isinstance(extra, dict)
    if kind == "vj":
        key = path((*loc, ctx["key"])) if ctx.get("key") else path(loc)
        return ctx["message"], ctx.get("fix"), key
    if kind == "extra_forbidden":
        known = list(_fields(model, loc[:-1]))
        close = difflib.get_close_matches(name, known, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
        return f"unknown key '{name}'", fix, path(loc)
    if kind == "missing":
        lo, hi = _bounds(field)
        hint = str(extra.get("missing", f"add {name} = <{lo:g}..{hi:g}>" if lo is not None else f"add {name} = ..."))
        return f"'{name}' is missing", hint, path(loc[:-1])
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        lo, hi = _bounds(field)
        if "expected" in extra or lo is None or hi is None:
            return f"expected {extra.get('expected', error['msg'])}, got {value!r}", extra.get("fix"), path(loc)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{shown} is out of range", f"use {lo:g}..{hi:g}", path(loc)
    if kind == "literal_error":
        choices = " | ".join(str(c) for c in _literal(field))
        return f"unknown {extra.get('what', name)} {value!r}", f"choose {choices}", path(loc)
    expected = extra.get("expected") or {
        "int_type": "a whole number",
        "bool_type": "true or false",
        "string_type": "text",
        "list_type": "an array",
        "finite_number": "a finite number",
        "float_type": "a number",
        "model_type": "a table",
        "dict_type": "a table",
    }.get(kind)
    if expected is None:
        msg = str(error["msg"])
        return f"{msg[:1].lower()}{msg[1:]}", extra.get("fix"), path(loc)
    return f"expected {expected}, got {describe(value)} {value!r}", extra.get("fix"), path(loc)


def _unwrap(annotation: Any) -> Any:
    """The model (or table of models) inside Optional[...] / list[...] / tuple[...], else the annotation itself."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple):
        for arg in typing.get_args(annotation):
            inner = _unwrap(arg)
            if (isinstance(inner, type) and issubclass(inner, BaseModel)) or typing.get_origin(inner) is dict:
                return inner
    return annotation


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, Any]:
    """Where ``loc`` leads: (the type there, the field of its last named key); (None, None) off the models."""
    current: Any = model
    field = None
    for part in loc:
        if typing.get_origin(current) is dict:  # a table of tables: any key leads to the value type
            current = _unwrap(typing.get_args(current)[1])
            continue
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None, None
        field = current.model_fields[part]
        current = _unwrap(field.annotation)
    return current, field


def _field(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    return _walk(model, loc)[1]


def _fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a table at ``loc`` knows."""
    current = _walk(model, loc)[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _bounds(field: Any) -> tuple[float | None, float | None]:
    lo = hi = None
    for m in getattr(field, "metadata", ()):
        lo = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else lo
        hi = getattr(m, "le", None) if getattr(m, "le", None) is not None else hi
    return lo, hi


def _literal(field: Any) -> tuple[Any, ...]:
    annotation = getattr(field, "annotation", None)
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is Literal:
            return typing.get_args(arg)
    return ()


def finite(value: float) -> float:
    """A validator for numbers: NaN and infinity are not settings."""
    if not math.isfinite(value):
        raise invalid(f"expected a finite number, got {value!r}")
    return value

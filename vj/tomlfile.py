"""Reading a TOML file someone else wrote (scenes, mappings): every way it can be wrong is a ConfigError that names
the file, the key and the fix — never a traceback, never a hang, never text the HUD cannot draw."""

from __future__ import annotations

import tomllib
import unicodedata
from pathlib import Path
from typing import Any

from vj.errors import ConfigError

MAX_BYTES = 1 << 20  # a scene or a mapping is a few kB; a bigger file is a mistake (or an attack)
MAX_DEPTH = 16  # tables and arrays in each other; the files vj reads go three deep


def read_toml(path: Path) -> dict[str, Any]:
    file = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{size} bytes is too big for a vj file", file=file, fix=f"keep it under {MAX_BYTES}")
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read it ({e.strerror or e})", file=file) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=file, fix="save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", file=file, fix="check the quoting and brackets there") from None
    except RecursionError:
        raise ConfigError("nested too deep to read", file=file, fix=f"vj files nest at most {MAX_DEPTH} deep") from None
    _check(data, file, "", 0)
    return data


def _bad_char(text: str) -> str | None:
    for ch in text:
        if ch not in "\t\n" and unicodedata.category(ch) in ("Cc", "Cs"):
            return f"U+{ord(ch):04X}"
    return None


def _check(value: Any, file: str, key: str, depth: int) -> None:
    """No nesting deeper than MAX_DEPTH; no control characters in keys or text (NUL breaks the HUD and logs)."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"nested more than {MAX_DEPTH} deep", file=file, key=key or None, fix="flatten it")
    if isinstance(value, dict):
        for k, v in value.items():
            where = f"{key}.{k}" if key else k
            bad = _bad_char(k)
            if bad:
                raise ConfigError(f"a control character ({bad}) in a key", file=file, key=repr(where), fix="remove it")
            _check(v, file, where, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check(v, file, f"{key}[{i}]", depth + 1)
    elif isinstance(value, str):
        bad = _bad_char(value)
        if bad:
            raise ConfigError(f"a control character ({bad}) in the text", file=file, key=key or None, fix="remove it")

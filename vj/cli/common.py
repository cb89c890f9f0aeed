"""Small pieces every vj command shares: argument types, the report writer, the dream store's folder."""

from __future__ import annotations

import argparse
import json
import logging
import re
from typing import Any

from vj.errors import ConfigError

log = logging.getLogger("vj")


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size; write WIDTHxHEIGHT, e.g. 1920x1080")
    w, h = int(m[1]), int(m[2])
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise argparse.ArgumentTypeError(f"{w}x{h} is out of range: each side 16..16384")
    return w, h


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} must be above 0")
        return value

    return parse


def _port(text: str) -> int:
    """A port number, 0..65535 (0: any free one)."""
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number 0..65535")
    return int(text)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"'{text}' is not HOST:PORT, e.g. 127.0.0.1:9001")
    return host, int(port)


def _write_report(report: dict[str, Any], target: str | None) -> None:
    if not target:
        return
    text = json.dumps(report, indent=2)
    if target == "-":
        print(text)
        return
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as e:
        raise ConfigError(f"cannot write the report ({e.strerror})", file=target) from None


def _dreams_folder(arg: str | None) -> Any:
    from pathlib import Path

    from vj.dreams.store import default_folder

    return Path(arg) if arg else default_folder()


def _clip(arg: str | None) -> Any:
    if not arg:
        return None
    from vj.dreams.clip import ClipScorer

    return ClipScorer(arg)

"""vj as a user runs it: the command in a child process, from the repository root, with dummy SDL drivers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "SDL_VIDEODRIVER": "dummy", "PYTHONPATH": str(ROOT)}


def vj(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``vj ARGS`` to the end: its return code and output."""
    return subprocess.run(
        [sys.executable, "-m", "vj", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**ENV, **(env or {})},
        cwd=ROOT,
        check=False,
    )


def start(*args: str, env: dict[str, str] | None = None, stdin: bool = False) -> subprocess.Popen:
    """Start ``vj ARGS`` (a show, usually) and return at once, to talk to it while it runs (``stdin``: a pipe)."""
    return subprocess.Popen(
        [sys.executable, "-m", "vj", *args],
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, **(env or {})},
        cwd=ROOT,
    )


def stop_after_line(proc: subprocess.Popen, text: str, timeout: float = 180) -> tuple[dict[str, Any], str]:
    """Read a show's log until a line says ``text`` (however long that takes on a busy machine), end the show
    (SIGTERM, as Ctrl-C) and return its report and its whole log."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            break
    proc.send_signal(signal.SIGTERM)
    stdout, rest = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, (rest or "".join(seen))[-2000:]
    return json.loads(stdout), "".join(seen) + rest


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[dict[str, Any], str]:
    """Wait for a show started with ``--report -``: its report and its stderr."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out), err

"""The real window path: SDL's X11 driver on an Xvfb server, screenshot taken by another program (ImageMagick)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("import")), reason="needs Xvfb and ImageMagick (.ci/run installs them)"
)


@pytest.fixture(scope="module")
def display():
    for n in range(90, 130):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            break
    proc = subprocess.Popen(
        ["Xvfb", f":{n}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        assert time.monotonic() < deadline, "Xvfb did not start"
        time.sleep(0.05)
    yield f":{n}"
    proc.terminate()
    proc.wait(5)


def screenshot(display: str) -> np.ndarray:
    png = subprocess.run(
        ["import", "-display", display, "-window", "root", "png:-"], capture_output=True, check=True, timeout=20
    ).stdout
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def test_the_show_paints_a_moving_dream_in_a_real_window(display, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDL_")}
    env.update(DISPLAY=display, PYTHONPATH=str(ROOT))
    report_path = tmp_path / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vj", "run", "--size", "640x360", "--seconds", "8", "--report", str(report_path)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(4)
        first = screenshot(display)
        time.sleep(0.7)
        second = screenshot(display)
    finally:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    report = json.loads(report_path.read_text())
    assert report["window"]["headless"] is False and report["frames"] > 0 and report["generated"] > 0
    # SDL centres the 640x360 window on the 1280x720 screen; it shows a 360x360 picture in its middle.
    lit = np.argwhere(first.sum(axis=2) > 30)
    (top, left), (bottom, right) = lit.min(axis=0), lit.max(axis=0)
    assert 300 <= bottom - top <= 370 and 300 <= right - left <= 700, "one window-sized lit area"
    picture = first[360 - 40 : 360 + 170, 640 - 170 : 640 + 170].astype(np.int16)  # below the HUD
    assert picture.std() > 20, "the window shows a picture with structure, not a flat colour"
    assert (picture.sum(axis=2) > 30).mean() > 0.9, "the picture is lit"
    assert first[:100, :100].max() == 0, "outside the window the screen is untouched"
    after = second[360 - 40 : 360 + 170, 640 - 170 : 640 + 170].astype(np.int16)
    assert np.abs(after - picture).mean() > 2, "the dream moves"

"""Run inside a private network namespace by test_feeds: a vj show sending NDI, and an NDI receiver finding it.

Prints one JSON line: the frames received, their size and mean level, and the show's report.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cyndilib.finder import Finder
from cyndilib.receiver import Receiver
from cyndilib.video_frame import VideoFrameSync
from cyndilib.wrapper.ndi_recv import RecvBandwidth, RecvColorFormat

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    name = sys.argv[1]
    report = Path(tempfile.mkdtemp()) / "report.json"
    show = subprocess.Popen(
        [sys.executable, "-m", "vj", "run", "--headless", "--seconds", "120", "--no-osc", "--no-dreams",
         "--gen-size", "160x90", "--ndi", name, "--report", str(report)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    finder = Finder()
    finder.open()
    found, deadline = None, time.monotonic() + 90
    while found is None and time.monotonic() < deadline:
        finder.wait_for_sources(1.0)
        found = next((n for n in finder.get_source_names() if f"({name})" in n), None)
    result: dict = {"found": found, "frames": 0}
    if found is not None:
        receiver = Receiver(color_format=RecvColorFormat.BGRX_BGRA, bandwidth=RecvBandwidth.highest)
        frame = VideoFrameSync()
        receiver.frame_sync.set_video_frame(frame)
        receiver.connect_to(finder.get_source(found))
        levels = []
        while result["frames"] < 10 and time.monotonic() < deadline:
            receiver.frame_sync.capture_video()
            if frame.get_data_size():
                data = frame.get_array()
                result["frames"] += 1
                result["size"] = list(frame.get_resolution())
                levels.append(float(data.reshape(-1, 4)[:, :3].mean()))
            time.sleep(0.05)
        result["level"] = max(levels) if levels else 0.0
        receiver.disconnect()
    finder.close()
    show.send_signal(signal.SIGTERM)
    _, err = show.communicate(timeout=60)
    result["returncode"] = show.returncode
    result["report"] = json.loads(report.read_text()) if report.exists() else None
    result["stderr"] = err[-1500:]
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Recording the set: files that ffprobe (a reader no one here wrote) plays, at the right length, whatever happens."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.child import finish, start, vj
from vj.engine.loop import Show, ShowConfig
from vj.output.record import Recorder, next_path

needs_ffprobe = pytest.mark.skipif(not shutil.which("ffprobe"), reason="needs ffprobe (Debian ffmpeg; .ci/run)")


def probe(path: Path) -> dict:
    """Frames ffprobe decodes, and the duration it reads."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames,codec_name,width,height:format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    data = json.loads(out.stdout)
    stream = data["streams"][0]
    return {
        "frames": int(stream["nb_read_frames"]),
        "seconds": float(data["format"]["duration"]),
        "codec": stream["codec_name"],
        "size": (stream["width"], stream["height"]),
    }


def picture(i: int) -> np.ndarray:
    img = np.zeros((90, 160, 4), np.uint8)
    img[..., 2] = i % 256
    img[20:60, (i * 3) % 120 : (i * 3) % 120 + 40, 1] = 255
    return img


@needs_ffprobe
def test_each_frame_keeps_its_time(tmp_path):
    rec = Recorder(tmp_path / "a.mp4", 60)
    rec.start()
    for i in range(180):
        rec.offer(picture(i), i / 60)
        while rec._queue.qsize() > 2:  # an encoder that keeps up: nothing dropped
            time.sleep(0.002)
    rec.stop()
    got = probe(tmp_path / "a.mp4")
    assert rec.frames == 180 and rec.dropped == 0
    assert got["frames"] == 180 and got["codec"] == "h264" and got["size"] == (160, 90)
    assert abs(got["seconds"] - 3.0) < 0.1


@needs_ffprobe
def test_an_encoder_that_falls_behind_drops_frames_and_never_holds_the_loop(tmp_path):
    rec = Recorder(tmp_path / "b.mp4", 60)
    rec.start()
    for i in range(2000):  # far faster than any encoder: offer() must return at once every time
        rec.offer(picture(i), i / 60)
    rec.stop()
    got = probe(tmp_path / "b.mp4")
    assert rec.dropped > 0 and rec.frames + rec.dropped == 2000
    assert got["frames"] == rec.frames
    assert got["seconds"] > 20, "the frames written keep their times: the file is as long as the set was"


def test_a_recording_never_overwrites_an_old_one(tmp_path):
    first = tmp_path / "set.mp4"
    assert next_path(first) == first
    first.write_bytes(b"x")
    assert next_path(first).name == "set-2.mp4"
    (tmp_path / "set-2.mp4").write_bytes(b"x")
    assert next_path(first).name == "set-3.mp4"


def test_a_recording_that_cannot_start_leaves_the_show_alone(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    show = Show(
        ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, frames=60, record=tmp_path / "a-file" / "x.mp4")
    )
    report = show.run()
    assert report["frames"] == 60 and report["record"]["error"], "it says why, and the show ran to its end"


@needs_ffprobe
def test_record_starts_and_stops_from_any_source_and_each_start_is_a_new_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # recordings/ without --record goes here
    show = Show(ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, frames=100_000))
    marks: dict[str, int] = {}

    def drive(s: Show) -> None:
        if s.frames == 5:
            s.bus.post("osc", "record", True)
        if s.frames == 65:
            s.bus.post("keys", "record", None, "toggle")
        if s.frames == 80:
            s.bus.post("midi", "record", True)
        if s.frames == 140:
            s.bus.post("voice", "record", False)
            marks["end"] = s.frames
        if "end" in marks and s.frames >= marks["end"] + 2:
            s.stop()

    show.on_frame.append(drive)
    report = show.run()
    files = [Path(f) for f in report["record"]["files"]]
    assert len(files) == 2 and all(f.parent.name == "recordings" for f in files) and files[0] != files[1]
    for f, rec in zip(files, show.recordings, strict=True):
        assert probe(f)["frames"] == rec.frames > 0, "each file holds what its recorder wrote"
        assert rec.frames + rec.dropped >= 55, "every frame between start and stop was offered"
    assert report["params"]["record"] is False


@needs_ffprobe
def test_vj_run_record_writes_a_file_ffprobe_reads(tmp_path):
    out = tmp_path / "set.mp4"
    proc = start(
        "run", "--headless", "--seconds", "6", "--no-osc", "--no-dreams", "--record", str(out), "--report", "-"
    )
    report, err = finish(proc, timeout=180)
    got = probe(out)
    rec = report["record"]
    assert rec["file"] == str(out) and rec["frames"] == got["frames"], err[-1500:]
    # From the first picture on (before it the screen is black by design, and on a busy box that takes a while),
    # every presented frame went to the recorder, and the file is as long as that span.
    assert rec["seconds"] >= 3.0 and abs(got["seconds"] - rec["seconds"]) < 0.25, (got, rec)
    assert rec["frames"] + rec["dropped"] >= 0.9 * report["fps"] * rec["seconds"], "every presented frame was offered"
    assert got["size"] == tuple(report["generator"]["size"])


@needs_ffprobe
def test_a_show_killed_mid_recording_leaves_a_playable_file(tmp_path):
    out = tmp_path / "killed.mp4"
    proc = start("run", "--headless", "--seconds", "120", "--no-osc", "--no-dreams", "--record", str(out))
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and out.stat().st_size > 60_000):  # a few seconds of fragments on disk
            assert proc.poll() is None, proc.stderr.read()[-1500:] if proc.stderr else ""
            assert time.monotonic() < deadline, "nothing was recorded"
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    got = probe(out)
    assert got["frames"] >= 10 and got["seconds"] >= 0.5, got  # at least the first second's fragment


def test_vj_run_refuses_a_record_file_that_is_not_mp4(tmp_path):
    result = vj("run", "--headless", "--frames", "5", "--record", str(tmp_path / "set.avi"))
    assert result.returncode == 2 and "recordings are MP4 files" in result.stderr

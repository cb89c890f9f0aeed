"""Where the voice comes from: a microphone (sounddevice, any PortAudio device), or a file played in real time.

Both give 16 kHz mono float32 in 32 ms pieces. The microphone is opened at its own rate and resampled with PyAV's
resampler (FFmpeg's swresample) when that is not 16 kHz. A file goes through the very same pipeline at the pace
it would be spoken, for tests and demos, followed by a second of silence so its last words are finished.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vj.control.voice.recognize import RATE, read_audio
from vj.errors import DeviceError

log = logging.getLogger(__name__)

PIECE = 512  # 32 ms


class FileCapture:
    def __init__(self, path: str | Path, tail_s: float = 1.0) -> None:
        self.path = str(path)
        self.audio = read_audio(path)
        self.tail = np.zeros(int(tail_s * RATE), np.float32)
        self.finished = threading.Event()
        self.started = 0.0  # time.monotonic() when the first piece went out

    def describe(self) -> str:
        return f"file {Path(self.path).name}"

    def pieces(self, stop: threading.Event) -> Iterator[np.ndarray]:
        audio = np.concatenate([self.audio, self.tail])
        start = self.started = time.monotonic()
        for i in range(0, len(audio), PIECE):
            if stop.is_set():
                return
            due = start + i / RATE
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield audio[i : i + PIECE]
        self.finished.set()


def find_device(query: str | int | None) -> tuple[int | None, str]:
    """An input device by index, or by name or part of a name; (None, default) for the default one."""
    import sounddevice as sd

    try:
        devices = list(sd.query_devices())
        apis = [a["name"] for a in sd.query_hostapis()]
    except Exception as e:  # noqa: BLE001 - PortAudio reports a missing audio system in many ways
        raise DeviceError(f"cannot list audio devices ({e})") from None
    # Named with their host API, so "JACK" or "ALSA" finds them too: "system (JACK Audio Connection Kit)".
    inputs = [
        (i, f"{d['name']} ({apis[d['hostapi']]})") for i, d in enumerate(devices) if d.get("max_input_channels", 0) > 0
    ]
    listing = "; ".join(f"{i}: {n}" for i, n in inputs) or "none"
    if not inputs:
        raise DeviceError(f"no audio input device (devices: {listing})")
    if query is None or query == "":
        return None, "default input"
    if isinstance(query, int) or str(query).isdigit():
        index = int(query)
        for i, name in inputs:
            if i == index:
                return i, name
        raise DeviceError(f"no audio input device {index} (inputs: {listing})")
    hits = [(i, n) for i, n in inputs if str(query).lower() in n.lower()]
    if not hits:
        raise DeviceError(f"no audio input matching '{query}' (inputs: {listing})")
    return hits[0]


class MicCapture:
    def __init__(self, device: str | int | None = None) -> None:
        self.index, self.name = find_device(device)
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=200)
        self.overflows = 0
        self.finished = threading.Event()  # never set: a microphone has no end

    def describe(self) -> str:
        return f"microphone {self.name}"

    def pieces(self, stop: threading.Event) -> Iterator[np.ndarray]:
        import av
        import sounddevice as sd

        info = sd.query_devices(self.index, "input")
        rate = int(info["default_samplerate"]) or RATE
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE) if rate != RATE else None

        def callback(data: Any, frames: int, when: Any, status: Any) -> None:
            if status:
                self.overflows += 1
            try:
                self._queue.put_nowait(data[:, 0].copy())
            except queue.Full:
                self.overflows += 1

        try:
            stream = sd.InputStream(
                device=self.index,
                channels=1,
                samplerate=rate,
                dtype="float32",
                blocksize=int(rate * 0.032),
                callback=callback,
            )
        except Exception as e:  # noqa: BLE001
            raise DeviceError(f"cannot open {self.name} ({e})") from None
        with stream:
            log.info("listening on %s at %d Hz", self.name, rate)
            while not stop.is_set():
                try:
                    block = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if resampler is None:
                    yield block
                    continue
                frame = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
                frame.sample_rate = rate
                for out in resampler.resample(frame):
                    yield out.to_ndarray()[0]

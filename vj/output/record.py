"""Recording the set: the program output (what the projector shows, without the HUD) to an MP4 file with PyAV.

The loop hands each presented picture to ``Recorder.offer``, which never waits: the picture goes on a short queue
and an encoder thread turns it into H.264 (a hardware encoder when the machine has one, libx264 otherwise). If the
encoder falls behind, pictures are dropped and counted, and the frames that are written keep their own times, so
the file plays at the right speed whatever was dropped. The file is fragmented MP4: every second or so is
complete on disk, so a show killed mid-set (or an encoder that dies) still leaves a playable file.

Recording starts with ``--record FILE`` or by setting the ``record`` parameter (Ctrl+R, ``/vj/record 1``, a MIDI
button); each start opens a new file (``FILE``, then ``FILE-2``...).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

QUEUE = 8  # pictures waiting for the encoder (~130 ms at 60 fps): beyond this they are dropped
# Tried in order; the first that opens is used. Hardware first: they leave the CPU to the show.
ENCODERS = ("h264_nvenc", "h264_videotoolbox", "h264_vaapi", "libx264")
FRAGMENTS = "frag_keyframe+empty_moov+default_base_moof"


def pick_encoder(candidates: tuple[str, ...] = ENCODERS) -> str:
    """The first H.264 encoder this PyAV build has and can open."""
    import av

    available = av.codecs_available
    for name in candidates:
        if name not in available:
            continue
        try:
            ctx: Any = av.CodecContext.create(name, "w")
            ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 64, "yuv420p", Fraction(1, 30)
            ctx.open()
            return name
        except Exception:  # noqa: BLE001 - no device behind a hardware encoder: try the next
            continue
    raise RuntimeError("no H.264 encoder in this PyAV build")


class Recorder:
    """One recording: ``start()``, ``offer(picture)`` per presented frame, ``stop()``."""

    def __init__(self, path: Path, fps: float, encoder: str | None = None) -> None:
        self.path = Path(path)
        self.fps = fps
        self.encoder = encoder
        self.frames = 0  # written to the file
        self.dropped = 0  # offered while the encoder was behind
        self.error: str | None = None
        self._queue: queue.Queue[tuple[np.ndarray, float] | None] = queue.Queue(QUEUE)
        self._thread: threading.Thread | None = None
        self._t0: float | None = None
        self._last_t = 0.0

    @property
    def seconds(self) -> float:
        return self._last_t

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vj-record", daemon=True)
        self._thread.start()

    def offer(self, picture: np.ndarray | None, now: float | None = None) -> None:
        """The loop's side: queue a copy of the picture (BGRA or RGB, H x W x C uint8), or count it dropped."""
        if picture is None or not self.running:
            return
        now = time.monotonic() if now is None else now
        if self._t0 is None:
            self._t0 = now
        try:
            self._queue.put_nowait((picture.copy(), now - self._t0))
        except queue.Full:
            self.dropped += 1

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the file: what is queued is written, then the encoder is flushed and the file closed."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("record: the encoder did not keep up at the end; %s ends early", self.path)
        self._thread.join(timeout)

    def report(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "frames": self.frames,
            "dropped": self.dropped,
            "seconds": round(self.seconds, 2),
            "encoder": self.encoder,
            "error": self.error,
        }

    # -- the encoder thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        import av

        try:
            self.encoder = self.encoder or pick_encoder()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            container = av.open(str(self.path), "w", format="mp4", options={"movflags": FRAGMENTS})
        except Exception as e:  # noqa: BLE001 - a recording that cannot start must not touch the show
            self._give_up(f"cannot record to {self.path}: {e}")
            return
        stream: Any = None
        last_pts = -1
        try:
            while (item := self._queue.get()) is not None:
                picture, t = item
                if stream is None:
                    stream = self._open_stream(container, picture)
                h, w = stream.height, stream.width
                frame = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(picture[:h, :w]), format="bgra" if picture.shape[2] == 4 else "rgb24"
                )
                # Each frame at its own time: drops leave a gap, not a speed-up.
                frame.pts = max(last_pts + 1, round(t * self.fps))
                last_pts = frame.pts
                for packet in stream.encode(frame.reformat(format="yuv420p")):
                    container.mux(packet)
                self.frames += 1
                self._last_t = t
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)
        except Exception as e:  # noqa: BLE001 - the show goes on; the file so far stays playable
            self._give_up(f"recording stopped: {e}")
        finally:
            try:
                container.close()
            except Exception:
                log.debug("closing the recording failed", exc_info=True)
        log.info("recorded %d frames (%d dropped) to %s", self.frames, self.dropped, self.path)

    def _open_stream(self, container: Any, picture: np.ndarray) -> Any:
        stream = container.add_stream(self.encoder, rate=round(self.fps))
        stream.width, stream.height = picture.shape[1] // 2 * 2, picture.shape[0] // 2 * 2  # 4:2:0 wants even sides
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, round(self.fps))
        stream.gop_size = round(self.fps)  # a keyframe, so a finished fragment on disk, every second
        if self.encoder == "libx264":
            stream.options = {"preset": "veryfast", "tune": "zerolatency", "crf": "20"}
        return stream

    def _give_up(self, why: str) -> None:
        self.error = why
        log.warning("%s", why)
        while True:  # nothing more will be taken: make room so offer() never blocks (it never does anyway)
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break


def next_path(path: Path) -> Path:
    """``path`` if free, else ``stem-2.mp4``, ``stem-3.mp4``...: a new recording never overwrites an old one."""
    if not path.exists():
        return path
    n = 2
    while (candidate := path.with_name(f"{path.stem}-{n}{path.suffix}")).exists():
        n += 1
    return candidate

"""Feeds of the program picture to other programs: NDI, a virtual camera, Spout (Windows) and Syphon (macOS).

Each feed is a source that wants frames: the loop hands it its latest picture (a reference swap, never a copy or
a wait), and the feed's own thread sends the newest one it has, so a slow receiver only ever misses frames.

    --ndi NAME          NDI on the network (cyndilib); Resolume, OBS, TouchDesigner and vMix list it as NAME
    --virtual-cam       a webcam for Zoom, Meet, OBS (pyvirtualcam; on Linux the v4l2loopback module)
    --output spout      a Spout sender (Windows, SpoutGL)
    --output syphon     a Syphon server (macOS, syphon-python)

Every one is optional: its library is imported when asked for, and a missing library or system part says what to
install in one line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, ClassVar

import numpy as np

from vj.control.bus import ControlBus
from vj.control.source import Source
from vj.errors import DeviceError

log = logging.getLogger(__name__)


class Feed(Source):
    """The shared part: a slot for the newest picture and a thread that sends it."""

    wants_frames: ClassVar[bool] = True
    what: ClassVar[str] = "feed"

    def __init__(self, fps: float = 60.0) -> None:
        super().__init__()
        self.fps = fps
        self.sent = 0
        self.missed = 0  # pictures replaced before the thread could send them
        self._picture: np.ndarray | None = None
        self._seq = 0
        self._sent_seq = 0
        self._opened: str | None = None

    def start(self, bus: ControlBus) -> None:
        self.open()
        self.spawn(self._run, f"vj-{self.name}")

    def offer(self, picture: Any, now: float) -> None:
        if picture is None:
            return
        if self._picture is not None and self._seq != self._sent_seq:
            self.missed += 1
        self._picture = picture
        self._seq += 1

    def _run(self) -> None:
        while not self.stopping:
            picture, seq = self._picture, self._seq
            if picture is None or seq == self._sent_seq:
                self._stopping.wait(0.25 / self.fps)
                continue
            self._sent_seq = seq
            self.send(picture)
            self.sent += 1

    def stop(self) -> None:
        super().stop()
        try:
            self.close()
        except Exception:
            log.debug("closing %s failed", self.name, exc_info=True)

    def report(self) -> dict[str, Any]:
        return {"to": self._opened, "sent": self.sent, "missed": self.missed}

    def status(self) -> str:
        return f"{self.what} {self._opened}: {self.sent} frames"

    # -- what each feed writes --------------------------------------------------------------------------------
    def open(self) -> None:
        raise NotImplementedError

    def send(self, picture: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NdiFeed(Feed):
    """NDI: the picture as BGRA video under ``ndi_name``, found by any NDI receiver on the network."""

    name = "ndi"
    what = "NDI"

    def __init__(self, ndi_name: str, fps: float = 60.0) -> None:
        super().__init__(fps)
        self.ndi_name = ndi_name
        self._sender: Any = None
        self._frame: Any = None
        self._size: tuple[int, int] | None = None

    def open(self) -> None:
        try:
            import cyndilib  # noqa: F401 - the NDI runtime comes with it
        except ImportError:
            raise DeviceError("NDI needs cyndilib: pip install 'vj[ndi]'") from None
        self._opened = self.ndi_name

    def send(self, picture: np.ndarray) -> None:
        from fractions import Fraction

        from cyndilib.sender import Sender
        from cyndilib.video_frame import VideoSendFrame
        from cyndilib.wrapper.ndi_structs import FourCC

        h, w = picture.shape[:2]
        if self._sender is None or self._size != (w, h):
            self.close()
            frame = VideoSendFrame()
            frame.set_resolution(w, h)
            frame.set_frame_rate(Fraction(round(self.fps), 1))
            frame.set_fourcc(FourCC.BGRA)
            sender = Sender(self.ndi_name, clock_video=False)
            sender.set_video_frame(frame)
            sender.open()
            self._sender, self._frame, self._size = sender, frame, (w, h)
            log.info("NDI: sending as '%s' (%dx%d)", self.ndi_name, w, h)
        bgra = picture if picture.shape[2] == 4 else np.dstack([picture, np.full((h, w), 255, np.uint8)])
        self._sender.write_video_async(np.ascontiguousarray(bgra).ravel())

    def close(self) -> None:
        if self._sender is not None:
            sender, self._sender = self._sender, None
            sender.close()


class VirtualCam(Feed):
    """A virtual webcam (pyvirtualcam): OBS Virtual Camera on Windows and macOS, v4l2loopback on Linux."""

    name = "virtual_cam"
    what = "virtual camera"

    def __init__(self, fps: float = 30.0, device: str | None = None) -> None:
        super().__init__(fps)
        self.device = device
        self._cam: Any = None

    def open(self) -> None:
        try:
            import pyvirtualcam  # noqa: F401
        except ImportError:
            raise DeviceError("the virtual camera needs pyvirtualcam: pip install 'vj[virtualcam]'") from None
        self._opened = self.device or "virtual camera"

    def send(self, picture: np.ndarray) -> None:
        import pyvirtualcam

        h, w = picture.shape[:2]
        if self._cam is None:
            try:
                self._cam = pyvirtualcam.Camera(
                    w, h, self.fps, fmt=pyvirtualcam.PixelFormat.BGR, device=self.device, print_fps=False
                )
            except RuntimeError as e:
                self.dead = True
                self.last_error = virtual_cam_help(str(e))
                log.warning("%s", self.last_error)
                self._stopping.set()
                return
            self._opened = self._cam.device
            log.info("virtual camera: %s (%dx%d)", self._cam.device, w, h)
        self._cam.send(np.ascontiguousarray(picture[..., :3]))

    def close(self) -> None:
        if self._cam is not None:
            cam, self._cam = self._cam, None
            cam.close()


def virtual_cam_help(error: str) -> str:
    """One line that says what is missing for a virtual camera on this system."""
    if sys.platform.startswith("linux"):
        return (
            f"no virtual camera ({error.splitlines()[0] if error else 'no device'}): load v4l2loopback, e.g. "
            "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=vj (Debian: v4l2loopback-dkms)"
        )
    return f"no virtual camera ({error}): install OBS Studio and start its virtual camera once"


class SpoutFeed(Feed):
    """Spout (Windows): the picture as a shared GPU texture that Resolume and TouchDesigner read."""

    name = "spout"
    what = "Spout"

    def __init__(self, sender_name: str = "vj", fps: float = 60.0) -> None:
        super().__init__(fps)
        self.sender_name = sender_name
        self._sender: Any = None

    def open(self) -> None:
        if sys.platform != "win32":
            raise DeviceError(f"Spout is a Windows system; this is {sys.platform} (on macOS use --output syphon)")
        try:
            import SpoutGL  # noqa: F401
        except ImportError:
            raise DeviceError("Spout needs SpoutGL: pip install SpoutGL") from None
        self._opened = self.sender_name

    def send(self, picture: np.ndarray) -> None:  # pragma: no cover - Windows only
        import SpoutGL
        from OpenGL import GL

        h, w = picture.shape[:2]
        if self._sender is None:
            self._sender = SpoutGL.SpoutSender()
            self._sender.setSenderName(self.sender_name)
        self._sender.sendImage(np.ascontiguousarray(picture), w, h, GL.GL_BGRA, False, 0)
        self._sender.setFrameSync(self.sender_name)

    def close(self) -> None:  # pragma: no cover - Windows only
        if self._sender is not None:
            self._sender.releaseSender()
            self._sender = None


class SyphonFeed(Feed):
    """Syphon (macOS): the picture as a shared texture for Resolume, MadMapper, VDMX."""

    name = "syphon"
    what = "Syphon"

    def __init__(self, server_name: str = "vj", fps: float = 60.0) -> None:
        super().__init__(fps)
        self.server_name = server_name
        self._server: Any = None

    def open(self) -> None:
        if sys.platform != "darwin":
            raise DeviceError(f"Syphon is a macOS system; this is {sys.platform} (on Windows use --output spout)")
        try:
            import syphon  # noqa: F401
        except ImportError:
            raise DeviceError("Syphon needs syphon-python: pip install syphon-python") from None
        self._opened = self.server_name

    def send(self, picture: np.ndarray) -> None:  # pragma: no cover - macOS only
        import syphon
        from syphon.utils.numpy import copy_image_to_mtl_texture
        from syphon.utils.raw import create_mtl_texture

        h, w = picture.shape[:2]
        if self._server is None:
            self._server = syphon.SyphonMetalServer(self.server_name)
            self._texture = create_mtl_texture(self._server.device, w, h)
        rgba = np.ascontiguousarray(picture[..., [2, 1, 0, 3]] if picture.shape[2] == 4 else picture)
        copy_image_to_mtl_texture(rgba, self._texture)
        self._server.publish_frame_texture(self._texture)

    def close(self) -> None:  # pragma: no cover - macOS only
        if self._server is not None:
            self._server.stop()
            self._server = None

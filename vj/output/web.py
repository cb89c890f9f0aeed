"""The browser view and remote: the live picture and a phone-friendly control panel, over HTTP and a WebSocket.

``vj run --web 8080`` serves a page (``vj/data/web/index.html``) at http://127.0.0.1:8080/. It shows the program
output as JPEG frames over a WebSocket and has faders for the motion parameters, a prompt box, scene buttons,
spark, save and blackout. The page sends OSC-shaped messages (``{"address": "/vj/zoom", "args": [0.3]}``) that go
through the same router as OSC, with the same checks and limits, and on to the bus as source ``web``; what any
source changes comes back to every open page, so its faders follow the show.

aiohttp runs on the source's own thread with its own event loop. The loop only hands over its latest picture
(``offer``: a reference swap, at most ``fps`` times a second); encoding JPEG and sending happen on this thread.
A client that cannot keep up misses frames, never holds anything. Bound beyond loopback (``--web-host``), the
page and socket want a token in the URL, printed at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vj.control.bus import ControlBus
from vj.control.osc import MAX_TEXT, Budget, OscRouter, Reject
from vj.control.source import Source
from vj.errors import DeviceError
from vj.net import is_loopback
from vj.params import PARAMS

log = logging.getLogger(__name__)

PAGE = Path(__file__).resolve().parent.parent / "data" / "web" / "index.html"
MAX_MESSAGE = 4096  # bytes of one control message from a page
FADERS = ("zoom", "pan_x", "pan_y", "rotate", "speed", "strength", "chaos", "brightness")


class WebView(Source):
    name = "web"
    listens = frozenset({"changed"})
    wants_frames: ClassVar[bool] = True

    def __init__(
        self,
        port: int = 8080,
        host: str = "127.0.0.1",
        *,
        scenes: tuple[str, ...] = (),
        token: str | None = None,
        fps: float = 15.0,
        quality: int = 80,
    ) -> None:
        super().__init__()
        self.host, self.port = host, port
        self.scenes = scenes
        self.token = token if token is not None else (None if is_loopback(host) else secrets.token_urlsafe(12))
        self.fps, self.quality = fps, quality
        self.router = OscRouter()
        self.budget = Budget()  # the OSC limits: a page flooding messages cannot take the interpreter away
        self.dropped = 0
        self.clients = 0
        self.frames_sent = 0
        self.messages = 0
        self.rejected = 0
        self._picture: np.ndarray | None = None
        self._picture_seq = 0
        self._offered_at = 0.0
        self._values: dict[str, Any] = {}
        self._changed: dict[str, Any] = {}  # not yet sent to the pages
        self._sockets: set[Any] = set()
        self._bus: ControlBus | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: str | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    # -- the loop's side -------------------------------------------------------------------------------------
    def start(self, bus: ControlBus) -> None:
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            raise DeviceError("the web view needs aiohttp: pip install 'vj[web]'") from None
        self._bus = bus
        self.spawn(self._serve, "vj-web")
        if not self._ready.wait(30):
            raise DeviceError(f"the web view did not start on {self.host}:{self.port}")
        if self._error:
            raise DeviceError(self._error)
        # Shown at every log level: the address (and token) to open.
        elsewhere = (
            ""
            if is_loopback(self.host)
            else " (from a phone or another machine, put this machine's network address in place of 127.0.0.1)"
        )
        log.warning("web view and remote: %s%s", self.url, elsewhere)

    def offer(self, picture: np.ndarray | None, now: float) -> None:
        """The latest program picture (BGRA); kept by reference, at most ``fps`` times a second, never copied here."""
        if picture is None or not self._sockets or now - self._offered_at < 1.0 / self.fps:
            return
        self._offered_at = now
        self._picture = picture
        self._picture_seq += 1

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        super().stop()

    def status(self) -> str:
        return f"web {self.url}  ({self.clients} open)"

    def report(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "clients": self.clients,
            "frames_sent": self.frames_sent,
            "messages": self.messages,
            "rejected": self.rejected,
            "dropped": self.dropped,
        }

    # -- the source's thread: aiohttp -----------------------------------------------------------------------
    def _serve(self) -> None:
        from aiohttp import web

        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application(client_max_size=MAX_MESSAGE)
        app.router.add_get("/", self._page)
        app.router.add_get("/ws", self._socket)
        runner = web.AppRunner(app, access_log=None)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            loop.run_until_complete(site.start())
            server = site._server
            if self.port == 0 and server is not None:
                self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        except OSError as e:
            self._error = f"cannot serve the web view on {self.host}:{self.port} ({e.strerror or e})"
            self._ready.set()
            return
        self._ready.set()
        tasks = [loop.create_task(self._send_frames()), loop.create_task(self._mail())]
        try:
            loop.run_forever()
        finally:
            for t in tasks:
                t.cancel()
            for ws in list(self._sockets):
                with contextlib.suppress(Exception):
                    loop.run_until_complete(ws.close())
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def _allowed(self, request: Any) -> bool:
        return self.token is None or secrets.compare_digest(request.query.get("token", ""), self.token)

    async def _page(self, request: Any) -> Any:
        from aiohttp import web

        if not self._allowed(request):
            return web.Response(status=403, text="this vj wants its token: use the address vj printed at start")
        return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")

    async def _socket(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        if not self._allowed(request):
            return web.Response(status=403, text="token needed")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=10)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.clients = len(self._sockets)
        try:
            await ws.send_str(json.dumps(self._hello()))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._control(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._reject("binary message", "?")
        finally:
            self._sockets.discard(ws)
            self.clients = len(self._sockets)
        return ws

    def _hello(self) -> dict[str, Any]:
        specs = {p.name: p for p in PARAMS}
        faders = [
            {"name": n, "lo": specs[n].lo, "hi": specs[n].hi, "value": self._values.get(n, specs[n].default)}
            for n in FADERS
        ]
        return {"faders": faders, "scenes": list(self.scenes), "params": _jsonable(self._values)}

    def _control(self, text: str) -> None:
        """One message from a page: through the OSC router to the bus, or counted and dropped."""
        self.messages += 1
        if not self.budget.take(len(text)):
            self.dropped += 1
            return
        started = time.monotonic()
        try:
            self._route(text)
        finally:
            self.budget.spend(time.monotonic() - started)

    def _route(self, text: str) -> None:
        bus = self._bus
        try:
            data = json.loads(text)
            address, args = data["address"], data.get("args", [])
            if not isinstance(address, str) or not isinstance(args, list) or len(args) > 4:
                raise Reject("expected {address: text, args: [up to 4 values]}")
            if any(not isinstance(a, (int, float, str, bool)) for a in args):
                raise Reject("arguments are numbers, text or true/false")
            if any(isinstance(a, str) and len(a) > MAX_TEXT for a in args):
                raise Reject(f"a string longer than {MAX_TEXT} characters")
            ops = self.router.route(address[:200], args)
            self.router.answers.clear()  # a page gets every value pushed to it: "?" has nothing to add
        except Reject as e:
            self._reject(str(e), text[:60])
            return
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            self._reject(f"not a control message ({type(e).__name__})", text[:60])
            return
        if bus is not None:
            for target, value, op in ops:
                bus.post("web", target, value, op)

    def _reject(self, why: str, what: str) -> None:
        self.rejected += 1
        if self._bus is not None:
            self._bus.reject("web", f"{what!r}: {why}", key=why.split(" (", maxsplit=1)[0])

    async def _mail(self) -> None:
        """The loop's mail (changed values) on this thread; each change goes out to every open page."""
        while True:
            self.deliver()
            if self._changed and self._sockets:
                text = json.dumps({"params": _jsonable(self._changed)})
                await asyncio.gather(*(_send(ws, text) for ws in list(self._sockets)))
            self._changed = {}
            await asyncio.sleep(0.05)

    def on_changed(self, values: dict[str, Any]) -> None:
        self._values.update(values)
        self._changed.update(values)

    async def _send_frames(self) -> None:
        import cv2

        sent_seq = 0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.5 / self.fps)
            picture, seq = self._picture, self._picture_seq
            if picture is None or seq == sent_seq or not self._sockets:
                continue
            sent_seq = seq
            started = time.monotonic()

            def encode(picture: np.ndarray = picture) -> bytes:
                ok, jpeg = cv2.imencode(".jpg", picture[..., :3], [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                return jpeg.tobytes() if ok else b""

            data = await loop.run_in_executor(None, encode)
            if not data:
                continue
            for ws in list(self._sockets):
                if not ws.closed and _buffered(ws) < 2 * len(data):  # a slow client misses frames instead
                    await _send(ws, data)
            self.frames_sent += 1
            log.debug("web frame %d bytes in %.1f ms", len(data), (time.monotonic() - started) * 1000)


async def _send(ws: Any, data: str | bytes) -> None:
    with contextlib.suppress(Exception):  # a page that went away mid-send
        if isinstance(data, bytes):
            await ws.send_bytes(data)
        else:
            await ws.send_str(data)


def _buffered(ws: Any) -> int:
    transport = getattr(getattr(ws, "_req", None), "transport", None)
    return int(transport.get_write_buffer_size()) if transport is not None else 0


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool)) or v is None}

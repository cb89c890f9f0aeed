"""The remote generator: frames from a generator node (``vj node``) on another machine, and a local stand-in while
the node cannot be reached.

``vj run --generator remote --node HOST:PORT``. Frames here are ``RemoteFrame``s: the picture as known on this
machine, the node's frame it came from, and the warps and mixes since. Per frame only those moves, the parameters
and any layer pictures go out (the node keeps its frames where its generator keeps them, a model's on its GPU),
and one compressed picture comes back.

The display never waits for the network: this runs on the generator's worker thread, and each request waits at
most ``timeout`` seconds. A node that does not answer in time is taken for lost: frames come from a local sketch
generator, fed with the last picture, while a fresh connection is tried in the background (a hello every
``RETRY_S``, never blocking a frame); when the node answers, its frames come back (``reconnects`` counts it). A
node that was restarted no longer holds our frames: the picture goes up once and the dream carries on from it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import median
from typing import Any

import numpy as np

from vj.errors import ConfigError, GeneratorError, GeneratorUnusable
from vj.frame import motion
from vj.frame.compose import blend
from vj.gen import wire
from vj.gen.base import Generator

log = logging.getLogger(__name__)

RETRY_S = 0.5  # between tries to reach a lost node
CLIENT = secrets.token_hex(8)  # who this show is to a node: the same across reconnects and rebuilt generators


@dataclass(frozen=True)
class RemoteFrame:
    image: np.ndarray  # H x W x 3 uint8 RGB, as known here (before ``ops``)
    base: int | None = None  # the node's frame this is, or derives from; None: a picture only here
    session: str | None = None  # the node run that holds ``base``
    ops: tuple[tuple[Any, ...], ...] = ()  # ("warp", delta) and ("mix", other, weights, mode) since ``base``


def materialize(frame: RemoteFrame) -> np.ndarray:
    """The picture with its moves and mixes applied, here."""
    image = frame.image
    for op in frame.ops:
        if op[0] == "warp":
            image = motion.warp(image, op[1])
        else:
            other = materialize(op[1]) if isinstance(op[1], RemoteFrame) else op[1]
            image = blend(image, other, op[3], op[2])
    return image


def parse_address(text: str, key: str = "--node", any_port: bool = False) -> tuple[str, int]:
    """HOST:PORT (an IPv6 address in brackets: [::1]:9510), checked; ``any_port``: 0 is allowed (any free one)."""
    host, _, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    lowest = 0 if any_port else 1
    ok = host and port.isdigit() and lowest <= int(port) < 65536 and (bracketed or ":" not in host) and "/" not in host
    if not ok:
        raise ConfigError(
            f"expected HOST:PORT, got {text!r}", key=key, fix=f"e.g. {key} 127.0.0.1:9510 (IPv6: [::1]:9510)"
        )
    return host, int(port)


def check_address(text: str) -> str:
    """A node's address as the show is started: well formed, and its host name known."""
    import socket

    host, port = parse_address(text)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ConfigError(f"cannot find {host} ({e.strerror or e})", key="--node") from None
    return text


class RemoteGenerator(Generator):
    name = "remote"

    def __init__(
        self,
        size: tuple[int, int] = (512, 512),
        node: str = "127.0.0.1:9510",
        token: str | None = None,
        codec: str = "jpeg",
        timeout: float = 1.0,
    ) -> None:
        super().__init__(size)
        try:
            import zmq  # noqa: F401
        except ImportError:
            raise GeneratorUnusable("the remote generator needs pyzmq: pip install 'vj[node]'") from None
        if codec not in wire.CODECS:
            raise ConfigError(f"unknown codec {codec!r}", key="--node-codec", fix=f"choose {', '.join(wire.CODECS)}")
        self.host, self.port = parse_address(node)
        self.address = f"{self.host}:{self.port}"
        self.token, self.codec, self.timeout = token, codec, float(timeout)
        self.client = CLIENT
        self.frame_timeout = self.timeout + 5.0  # the worker's hang guard, well past our own
        from vj.gen.sketch import SketchGenerator

        self._stand_in = SketchGenerator(size)
        self._sock: Any = None
        self._probe: Any = None  # a hello in flight to a lost node
        self._probe_sent = 0.0
        self._next_probe = 0.0
        self.session: str | None = None
        self.connected = False
        self.frames = 0
        self.stand_in_frames = 0
        self.reconnects = 0
        self.disconnects = 0
        self.uploads = 0
        self.errors = 0
        self._rtt: deque[float] = deque(maxlen=100)
        self._node_ms: deque[float] = deque(maxlen=100)
        self._bytes: deque[int] = deque(maxlen=100)

    # -- the connection ------------------------------------------------------------------------------------------
    def _socket(self) -> Any:
        import zmq

        sock: Any = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_PART)
        if ":" in self.host:
            sock.setsockopt(zmq.IPV6, 1)
        sock.connect(f"tcp://{wire.endpoint(self.host, self.port)}")
        return sock

    def _hello(self) -> list[bytes]:
        header = {"op": "hello", "size": [self.width, self.height], "codec": self.codec, **self._auth()}
        return wire.pack(header, [])

    def _auth(self) -> dict[str, str]:
        return {"client": self.client, **({"token": self.token} if self.token else {})}

    def load(self) -> None:
        """Say hello, waiting at most ``timeout``; a node that does not answer by then is looked for while a
        local stand-in dreams (a node loading a model answers when it is ready)."""
        sock = self._socket()
        sock.send_multipart(self._hello())
        if not sock.poll(self.timeout * 1000):
            sock.close()
            self._next_probe = time.monotonic()
            log.warning("generator node %s does not answer yet; a local stand-in dreams until it does", self.address)
            return
        try:
            self._greeted(sock, sock.recv_multipart())
        except ConnectionError as e:
            self._next_probe = time.monotonic() + RETRY_S
            log.warning("generator node %s: %s; a local stand-in dreams until it is free", self.address, e)

    def _greeted(self, sock: Any, reply: list[bytes]) -> None:
        header, _ = wire.unpack(reply)
        if not header.get("ok"):
            sock.close()
            why = header.get("error", "refused")
            if header.get("kind") in ("token", "malformed"):  # a wrong token or size will not get better
                raise GeneratorUnusable(f"node {self.address}: {why}")
            if header.get("kind") == "busy":  # serving another show: it may let go
                raise ConnectionError(why)
            raise GeneratorError(f"node {self.address}: {why}")
        if self._sock is not None:
            self._sock.close()
        self._sock, self.connected, self.session = sock, True, str(header.get("session"))
        log.info("generator node %s: %s, session %s", self.address, header.get("generator"), self.session)

    def _lost(self, why: str) -> None:
        if self._sock is not None:
            self._sock.close()  # a REQ socket waiting for an answer cannot send again: start afresh
            self._sock = None
        if self.connected:
            self.disconnects += 1
            log.warning("generator node %s lost (%s); a local stand-in dreams until it is back", self.address, why)
        self.connected = False
        self._next_probe = time.monotonic()

    def _try_reconnect(self) -> None:
        """One step of looking for a lost node, never waiting: send a hello, or see whether it was answered."""
        now = time.monotonic()
        if self._probe is None:
            if now >= self._next_probe:
                self._probe, self._probe_sent = self._socket(), now
                self._probe.send_multipart(self._hello())
            return
        if self._probe.poll(0):
            probe, self._probe = self._probe, None
            try:
                self._greeted(probe, probe.recv_multipart())
            except (GeneratorError, wire.WireError, ConnectionError) as e:
                log.debug("generator node %s: %s", self.address, e)
                self._next_probe = now + RETRY_S
                return
            self.reconnects += 1
            log.warning("generator node %s is back", self.address)
        elif now - self._probe_sent > max(self.timeout, RETRY_S):
            self._probe.close()
            self._probe, self._next_probe = None, now + RETRY_S

    def _request(self, header: dict[str, Any], parts: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        """One round trip; ``ConnectionError`` when the node does not answer in time."""
        if self._sock is None:
            raise ConnectionError("not connected")
        message = wire.pack({**header, **self._auth()}, parts)
        started = time.perf_counter()
        self._sock.send_multipart(message)
        if not self._sock.poll(self.timeout * 1000):
            raise ConnectionError(f"no answer in {self.timeout:g} s")
        reply = self._sock.recv_multipart()
        self._rtt.append((time.perf_counter() - started) * 1000)
        self._bytes.append(sum(len(p) for p in message) + sum(len(p) for p in reply))
        return wire.unpack(reply)

    # -- the generator contract ----------------------------------------------------------------------------------
    def generate(self, image: Any, params: Mapping[str, Any]) -> Any:
        frame = image if isinstance(image, RemoteFrame) or image is None else RemoteFrame(image)
        if not self.connected:
            self._try_reconnect()
        if self.connected:
            try:
                return self._remote("generate", frame, params)
            except ConnectionError as e:
                self._lost(str(e))
        picture = materialize(frame) if frame is not None else None
        self.stand_in_frames += 1
        return RemoteFrame(self._stand_in.generate(picture, params))

    def fresh(self, params: Mapping[str, Any]) -> Any:
        if self.connected:
            try:
                return self._remote("fresh", None, params)
            except ConnectionError as e:
                self._lost(str(e))
        return RemoteFrame(self._stand_in.fresh(params))

    def _remote(self, op: str, frame: RemoteFrame | None, params: Mapping[str, Any]) -> RemoteFrame:
        for upload in (False, True):
            parts: list[bytes] = []
            spec = self._describe(frame, parts, upload) if frame is not None else None
            header, reply = self._request({"op": op, "frame": spec, "params": dict(params)}, parts)
            if header.get("ok"):
                break
            if header.get("kind") == "base" and not upload:
                continue  # the node let our frame go, or was restarted: send the picture once
            if header.get("kind") in ("hello", "busy"):  # the node was restarted, or taken by another show
                raise ConnectionError(header.get("error", "the node forgot us"))
            self.errors += 1
            raise GeneratorError(f"node {self.address}: {header.get('error', 'failed')}")
        session = str(header.get("session"))
        if session != self.session:
            self.session = session
        picture = wire.decode_picture(wire.part(reply, 0), self.codec, (self.width, self.height))
        self.frames += 1
        if isinstance(header.get("ms"), (int, float)):
            self._node_ms.append(float(header["ms"]))
        return RemoteFrame(picture, int(header["id"]), session)

    def _describe(self, frame: RemoteFrame, parts: list[bytes], upload: bool, depth: int = 0) -> dict[str, Any]:
        """How the node makes ``frame``: from its own frame and our moves, or from the picture sent up."""
        held = frame.base is not None and frame.session == self.session and len(frame.ops) <= wire.MAX_OPS
        if upload or not held or depth >= wire.MAX_DEPTH:
            parts.append(wire.encode_picture(materialize(frame), self.codec))
            self.uploads += 1
            return {"upload": len(parts) - 1}
        ops: list[dict[str, Any]] = []
        for op in frame.ops:
            if op[0] == "warp":
                ops.append({"warp": [float(v) for v in op[1]]})
                continue
            _, other, weights, mode = op
            if isinstance(other, RemoteFrame):
                what: Any = self._describe(other, parts, upload, depth + 1)
            else:
                parts.append(wire.encode_picture(np.asarray(other, np.uint8), self.codec))
                what = len(parts) - 1
            ops.append({"mix": what, "weights": wire.encode_weights(weights, parts), "mode": mode})
        return {"base": frame.base, "ops": ops}

    def warp(self, frame: Any, delta: motion.Camera) -> Any:
        if motion.is_still(delta):
            return frame
        return self._with(frame, ("warp", np.array(delta, np.float64)))

    def mix(self, frame: Any, other: Any, weights: float | np.ndarray, mode: str = "normal") -> Any:
        return self._with(frame, ("mix", other, weights, mode))

    def _with(self, frame: RemoteFrame, op: tuple[Any, ...]) -> RemoteFrame:
        if len(frame.ops) >= wire.MAX_OPS:  # a long chain without a generated frame: settle it here
            frame = RemoteFrame(materialize(frame))
        return RemoteFrame(frame.image, frame.base, frame.session, (*frame.ops, op))

    def adopt(self, image: Any) -> Any:
        if isinstance(image, RemoteFrame):
            return RemoteFrame(materialize(image))  # from an earlier connection: its node frames are not ours
        return RemoteFrame(np.asarray(image, np.uint8))

    def to_display(self, frame: Any) -> np.ndarray:
        return materialize(frame) if isinstance(frame, RemoteFrame) else frame

    def report(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "connected": self.connected,
            "codec": self.codec,
            "frames": self.frames,
            "stand_in_frames": self.stand_in_frames,
            "reconnects": self.reconnects,
            "disconnects": self.disconnects,
            "uploads": self.uploads,
            "errors": self.errors,
            "rtt_ms": round(median(self._rtt), 2) if self._rtt else None,
            "node_ms": round(median(self._node_ms), 2) if self._node_ms else None,
            "bytes_per_frame": round(sum(self._bytes) / len(self._bytes)) if self._bytes else None,
        }

    def close(self) -> None:
        for sock in (self._sock, self._probe):
            if sock is not None:
                sock.close()
        self._sock = self._probe = None
        self.connected = False

"""A generator node: ``vj node`` serves the generator contract to shows on other machines (see ``vj.gen.wire``).

The node keeps its last frames where its generator keeps them (a model's on its GPU), so per frame only the
parameters, the camera move and any layer pictures come in, and one compressed picture goes out. One show at a
time is served: the show that said hello owns the node (its size, its codec, its frames) until it has been quiet
for ``OWNER_S``; another show's hello meanwhile is answered "busy".

Anyone who can reach the port can send anything: the node listens on 127.0.0.1 unless told otherwise, and beyond
loopback only with a shared token (sent in the clear: a trusted network, a VPN or an SSH tunnel). Parts over
``wire.MAX_PART`` are dropped by ZeroMQ unread, and few requests queue (``HWM``); malformed ones, bad tokens and
parameters out of their table are answered with an error and counted, and the node goes on serving. The work one
request can ask for is bounded (``wire.MAX_OPS`` moves, pictures of the owner's size).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from vj.errors import ConfigError, ParamError
from vj.frame.compose import BLEND_MODES
from vj.gen import base, wire
from vj.net import is_loopback
from vj.params import PARAMS

log = logging.getLogger(__name__)

KEEP_FRAMES = 8  # the last outputs kept for shows to build on (a spark's bloom holds one for a while)
POLL_MS = 200
OWNER_S = 5.0  # a show quiet this long has let the node go: another may say hello
HWM = 4  # requests queued, replies waiting to be read: a client that never reads cannot fill the node's memory
MIN_TOKEN = 8
LOGGED_ERRORS = 20  # generator failures logged one by one; after that every hundredth


def _same(given: Any, token: str) -> bool:
    """The token, compared in constant time (as bytes: any text a client sends is only ever wrong, never an error)."""
    return isinstance(given, str) and hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def check_params(params: Any) -> dict[str, Any]:
    """Every parameter, checked against the table (a generator never sees a value the show could not hold)."""
    if not isinstance(params, dict):
        raise wire.WireError("params that are not an object")
    out = {}
    for spec in PARAMS:
        if spec.kind == "trigger":
            continue
        try:
            out[spec.name] = spec.check(params[spec.name]) if spec.name in params else spec.default
        except ParamError as e:
            raise wire.WireError(str(e), "param") from None
    return out


@dataclass
class NodeStats:
    requests: int = 0
    frames: int = 0
    malformed: int = 0
    refused: int = 0  # bad or missing token
    errors: int = 0  # the generator failed
    uploads: int = 0
    busy: int = 0  # hellos from a second show while the first was served
    bytes_in: int = 0
    bytes_out: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


class GeneratorNode:
    """The node's state and request handling, apart from the socket (tests drive ``handle`` directly)."""

    def __init__(self, generator: str, options: dict[str, Any] | None = None, token: str | None = None) -> None:
        self.generator = generator
        self.options = dict(options or {})
        self.token = token
        self.session = secrets.token_hex(6)
        self.size: tuple[int, int] | None = None
        self.codec = "jpeg"
        self.gen: base.Generator | None = None
        self.frames: OrderedDict[int, Any] = OrderedDict()
        self._next_id = 1
        self.owner: str | None = None  # the show served now (the id it sends), and when it last asked
        self._owner_at = 0.0
        self._ops = 0  # moves counted in the request being handled
        self.stats = NodeStats()

    # -- requests ----------------------------------------------------------------------------------------------
    def handle(self, message: list[bytes]) -> list[bytes]:
        """One request, one reply. Never raises: trouble is answered and counted."""
        self.stats.requests += 1
        self.stats.bytes_in += sum(len(p) for p in message)
        try:
            header, parts = wire.unpack(message)
            if self.token is not None and not _same(header.get("token"), self.token):
                self.stats.refused += 1
                raise wire.WireError("a wrong or missing token", "token")
            op = header.get("op")
            client = str(header.get("client", ""))[:64]
            if op == "hello":
                reply = self._hello(header, client)
            elif op in ("generate", "fresh"):
                if client != self.owner:
                    raise wire.WireError("say hello first (another show may have had the node)", "hello")
                self._owner_at = time.monotonic()
                reply = self._generate(header, parts, fresh=op == "fresh")
            else:
                raise wire.WireError(f"unknown op {op!r:.20}")
        except wire.WireError as e:
            if e.kind != "token":
                self.stats.malformed += e.kind in ("malformed", "oversize", "param")
            self.stats.kinds[e.kind] = self.stats.kinds.get(e.kind, 0) + 1
            reply = wire.pack({"ok": False, "error": str(e)[:300], "kind": e.kind, "session": self.session}, [])
        except Exception as e:  # noqa: BLE001 - the generator failed: say so, drop it, build it again next time
            self.stats.errors += 1
            if self.stats.errors <= LOGGED_ERRORS or self.stats.errors % 100 == 0:
                log.warning(
                    "generator %s failed (%s: %s); rebuilding it (%d failures)",
                    self.generator,
                    type(e).__name__,
                    e,
                    self.stats.errors,
                )
            self._close_generator()
            reply = wire.pack(
                {"ok": False, "error": f"{type(e).__name__}: {e}"[:300], "kind": "generator", "session": self.session},
                [],
            )
        self.stats.bytes_out += sum(len(p) for p in reply)
        return reply

    def _hello(self, header: dict[str, Any], client: str) -> list[bytes]:
        now = time.monotonic()
        if self.owner is not None and client != self.owner and now - self._owner_at < OWNER_S:
            self.stats.busy += 1
            raise wire.WireError("this node serves another show", "busy")
        size, codec = header.get("size"), header.get("codec", "jpeg")
        if (
            not isinstance(size, list)
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= wire.MAX_SIDE for v in size)
        ):
            raise wire.WireError(f"a size of {size!r:.40}: expected [width, height], 16..{wire.MAX_SIDE}")
        if codec not in wire.CODECS:
            raise wire.WireError(f"unknown codec {codec!r:.20}: choose {', '.join(wire.CODECS)}")
        w, h = size
        if codec == "raw" and w * h * 3 > wire.MAX_PART:
            raise wire.WireError(f"raw pictures of {w}x{h} are over {wire.MAX_PART >> 20} MiB: use jpeg or webp")
        if client != self.owner:
            self.frames.clear()  # a new show: nothing of the last one's carries over
        self.owner, self._owner_at = client, now
        if self.size != (w, h):
            self._close_generator()
            self.size = (w, h)
        self.codec = codec
        self._ensure_generator()
        return wire.pack({"ok": True, "session": self.session, "generator": self.generator}, [])

    def _ensure_generator(self) -> base.Generator:
        if self.gen is None:
            if self.size is None:
                raise wire.WireError("generate before hello", "hello")
            started = time.monotonic()
            gen = base.factory(self.generator, self.size, **self.options)()
            gen.load()
            self.gen = gen
            log.info("generator %s ready at %dx%d in %.1f s", self.generator, *self.size, time.monotonic() - started)
        return self.gen

    def _generate(self, header: dict[str, Any], parts: list[bytes], fresh: bool) -> list[bytes]:
        gen = self._ensure_generator()
        params = check_params(header.get("params"))
        self._ops = 0
        started = time.perf_counter()
        if fresh:
            out = gen.fresh(params)
        else:
            spec = header.get("frame")
            x = None if spec is None else self._frame(spec, parts, gen, 0)
            out = gen.generate(x, params)
        ms = (time.perf_counter() - started) * 1000
        frame_id = self._keep(out)
        self.stats.frames += 1
        assert self.size is not None
        picture = wire.encode_picture(base.check_frame(gen.to_display(out), self.size), self.codec)
        return wire.pack({"ok": True, "id": frame_id, "session": self.session, "ms": round(ms, 2)}, [picture])

    def _frame(self, spec: Any, parts: list[bytes], gen: base.Generator, depth: int) -> Any:
        """A frame description from a show, made into the generator's frame."""
        assert self.size is not None
        if depth > wire.MAX_DEPTH or not isinstance(spec, dict):
            raise wire.WireError("a frame that is not an object, or nested too deep")
        if "upload" in spec:
            self.stats.uploads += 1
            return gen.adopt(wire.decode_picture(wire.part(parts, spec["upload"]), self.codec, self.size))
        frame_id: Any = spec.get("base")
        if not wire.whole(frame_id) or frame_id not in self.frames:
            raise wire.WireError(f"frame {frame_id!r:.20} is not held here (any more)", "base")
        self.frames.move_to_end(frame_id)  # in use: kept
        x = self.frames[frame_id]
        ops = spec.get("ops", [])
        if not isinstance(ops, list):
            raise wire.WireError("ops that are not a list")
        self._ops += len(ops)
        if self._ops > wire.MAX_OPS:
            raise wire.WireError(f"more than {wire.MAX_OPS} moves in one request")
        for op in ops:
            if not isinstance(op, dict):
                raise wire.WireError("an op that is not an object")
            if "warp" in op:
                x = gen.warp(x, wire.delta(op["warp"]))
            elif "mix" in op:
                other = op["mix"]
                if isinstance(other, dict):
                    other = self._frame(other, parts, gen, depth + 1)
                else:
                    other = wire.decode_picture(wire.part(parts, other), self.codec, self.size)
                mode = op.get("mode", "normal")
                if mode not in BLEND_MODES:
                    raise wire.WireError(f"unknown mix mode {mode!r:.20}")
                x = gen.mix(x, other, wire.decode_weights(op.get("weights"), parts, self.size), mode)
            else:
                raise wire.WireError("an op that is neither warp nor mix")
        return x

    def _keep(self, frame: Any) -> int:
        frame_id, self._next_id = self._next_id, self._next_id + 1
        self.frames[frame_id] = frame
        while len(self.frames) > KEEP_FRAMES:
            self.frames.popitem(last=False)
        return frame_id

    def _close_generator(self) -> None:
        self.frames.clear()
        if self.gen is not None:
            self.gen.close()
            self.gen = None

    def close(self) -> None:
        self._close_generator()


def serve(
    host: str,
    port: int,
    generator: str,
    *,
    options: dict[str, Any] | None = None,
    token: str | None = None,
    stop: Any = None,
    ready: Any = None,
) -> NodeStats:
    """Serve until ``stop`` (an Event) is set or the process is interrupted."""
    import zmq

    if not is_loopback(host) and not token:
        raise ConfigError(
            f"a node on {host} answers anyone who can reach it",
            key="--listen",
            fix="give --token SECRET (or VJ_NODE_TOKEN), and the same to the show",
        )
    if token is not None and len(token) < MIN_TOKEN:
        raise ConfigError(f"a token of {len(token)} characters is easy to guess", key="--token", fix="use 8 or more")
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(wire.MAX_SIDE * wire.MAX_SIDE))
    node = GeneratorNode(generator, options, token)
    ctx: Any = zmq.Context.instance()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_PART)  # a bigger part drops its connection, unread
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.LINGER, 0)
    if ":" in host:
        sock.setsockopt(zmq.IPV6, 1)
    try:
        sock.bind(f"tcp://{wire.endpoint(host, port)}")
        port = int(sock.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])  # port 0: the one given
    except zmq.ZMQError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {wire.endpoint(host, port)} ({e})", key="--listen") from None
    log.warning("node serving %s on %s%s", generator, wire.endpoint(host, port), " (token required)" if token else "")
    if ready is not None:
        ready.set()
    try:
        while stop is None or not stop.is_set():
            if not sock.poll(POLL_MS):
                continue
            sock.send_multipart(node.handle(sock.recv_multipart()))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        node.close()
    return node.stats

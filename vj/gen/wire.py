"""What goes over the wire between a show and a generator node (``vj node``): messages, pictures, limits.

Transport: ZeroMQ (pyzmq), REQ/REP over TCP. ZeroMQ frames messages, reconnects a dropped TCP link by itself
and lets a client give up on a request and start afresh (a fresh REQ socket: the "lazy pirate" pattern), which is
all a show needs; there is no protocol of our own below the message.

A message is a multipart ZeroMQ message: a JSON header, then binary parts (pictures, masks) the header points to
by index. Requests:

    {"op": "hello", "size": [w, h], "codec": "jpeg"}            -> {"ok", "session", "generator"}
    {"op": "generate", "frame": FRAME | null, "params": {...}}   -> {"ok", "id", "session", "ms"} + picture
    {"op": "fresh", "params": {...}}                             -> the same: a new image of the prompt

    FRAME = {"base": id, "ops": [OP...]}   a frame the node holds (its last outputs), moved on by the ops
          | {"upload": part}               a picture from the show (after the node restarted, or a stand-in's)
    OP    = {"warp": [4 numbers]}          the camera difference (vj.frame.motion)
          | {"mix": part | FRAME, "weights": number | {"mask": part, "shape": [h, w]}, "mode": "normal"}

Every request may carry "token". Replies carry the node's "session" (a new one each time the node starts: a show
that sees it change re-sends its picture) or {"ok": false, "error": "...", "kind": "..."}.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np

CODECS = ("jpeg", "webp", "raw")
MAX_PART = 16 << 20  # bytes a part: ZeroMQ drops a bigger one unread (a raw picture up to about 2300x2300)
MAX_MESSAGE = 64 << 20  # bytes a message, all parts together
MAX_HEADER = 256 << 10
MAX_PARTS = 8
MAX_DEPTH = 4  # frames nested in mixes (a spark's bloom is one level)
MAX_OPS = 32  # warps and mixes in one request, all levels together: bounds the node's work a request
MAX_SIDE = 4096  # pixels: pictures are the show's generator size, never bigger than this
# A camera move between two frames: log zoom, angle (radians), pan x, pan y (frame heights). A show moves a
# hundredth of these a frame; beyond them the warp's matrix overflows and OpenCV can spin on it.
MAX_DELTA = (4.0, 7.0, 100.0, 100.0)
QUALITY = 90


class WireError(ValueError):
    """A message that cannot be used; ``kind`` names the trouble without the details a sender can vary."""

    def __init__(self, why: str, kind: str = "malformed") -> None:
        super().__init__(why)
        self.kind = kind


def pack(header: dict[str, Any], parts: list[bytes]) -> list[bytes]:
    return [json.dumps(header, separators=(",", ":")).encode(), *parts]


def unpack(message: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
    """The header and parts of a message, or ``WireError``."""
    if not message or len(message) > 1 + MAX_PARTS:
        raise WireError(f"a message of {len(message)} parts")
    if sum(len(p) for p in message) > MAX_MESSAGE:
        raise WireError("a message over 64 MiB", "oversize")
    if len(message[0]) > MAX_HEADER:
        raise WireError("a header over 256 KiB", "oversize")
    try:
        header = json.loads(message[0])
    except (ValueError, RecursionError):
        raise WireError("a header that is not JSON") from None
    if not isinstance(header, dict):
        raise WireError("a header that is not an object")
    return header, list(message[1:])


def encode_picture(rgb: np.ndarray, codec: str) -> bytes:
    """H x W x 3 uint8 RGB as ``codec``: JPEG or WebP through OpenCV, or the raw bytes (fastest on a LAN)."""
    if codec == "raw":
        return np.ascontiguousarray(rgb, np.uint8).tobytes()
    import cv2

    ext, flag = (".webp", cv2.IMWRITE_WEBP_QUALITY) if codec == "webp" else (".jpg", cv2.IMWRITE_JPEG_QUALITY)
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), [flag, QUALITY])
    if not ok:
        raise WireError(f"cannot encode a picture as {codec}")
    return bytes(buf)


def decode_picture(data: bytes, codec: str, size: tuple[int, int]) -> np.ndarray:
    """A picture of exactly ``size`` (w, h), or ``WireError``. JPEG/WebP headers are read before any pixel is,
    so a tiny file claiming a huge picture costs nothing."""
    w, h = size
    if codec == "raw":
        if len(data) != w * h * 3:
            raise WireError(f"a raw picture of {len(data)} bytes, not {w}x{h}x3")
        return np.frombuffer(data, np.uint8).reshape(h, w, 3).copy()
    magic = {"jpeg": data[:2] == b"\xff\xd8", "webp": data[:4] == b"RIFF" and data[8:12] == b"WEBP"}
    if not magic.get(codec, False):
        raise WireError(f"a picture that is not {codec}")
    claimed = picture_size(data)
    if claimed != (w, h):
        raise WireError(f"a picture of {claimed} where {w}x{h} was expected")
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (h, w):
        raise WireError("a picture that does not decode")
    return np.ascontiguousarray(bgr[..., ::-1])


def picture_size(data: bytes) -> tuple[int, int] | None:
    """(w, h) from a JPEG's frame header or a WebP's, without decoding; None when neither is found."""
    if data[:2] == b"\xff\xd8":  # JPEG: walk the segments to a start-of-frame
        i = 2
        while i + 9 < len(data) and data[i] == 0xFF:
            marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
            i += 2 + length
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 ":
            return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def encode_weights(weights: float | np.ndarray, parts: list[bytes]) -> float | dict[str, Any]:
    """A mix's weights: a number as is, a mask (H x W, 0..1) as 8 bits, deflated (masks are smooth: a few kB)."""
    if np.isscalar(weights) or np.ndim(weights) == 0:
        return float(weights)
    mask = np.asarray(weights, np.float32)
    if mask.ndim == 3:
        mask = mask[..., 0]
    parts.append(zlib.compress(np.clip(mask * 255 + 0.5, 0, 255).astype(np.uint8).tobytes(), 1))
    return {"mask": len(parts) - 1, "shape": [int(mask.shape[0]), int(mask.shape[1])]}


def decode_weights(spec: Any, parts: list[bytes], size: tuple[int, int]) -> float | np.ndarray:
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not 0.0 <= float(spec) <= 1.0:
            raise WireError(f"a mix weight {spec!r} outside 0..1")
        return float(spec)
    if not isinstance(spec, dict) or spec.get("shape") != [size[1], size[0]]:
        raise WireError("a mask that is not the picture's size")
    raw = zlib.decompressobj()
    data = raw.decompress(part(parts, spec.get("mask")), size[0] * size[1] + 1)
    if len(data) != size[0] * size[1] or raw.unconsumed_tail:
        raise WireError("a mask of the wrong size")
    return np.frombuffer(data, np.uint8).reshape(size[1], size[0]).astype(np.float32) / 255.0


def endpoint(host: str, port: int | str) -> str:
    """HOST:PORT as ZeroMQ (and people) write it: an IPv6 address in brackets; port 0 is any free port."""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{'*' if port in (0, '0') else port}"


def whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def part(parts: list[bytes], index: Any) -> bytes:
    if not whole(index) or not 0 <= index < len(parts):
        raise WireError(f"a part number {index!r:.20} that is not in the message")
    return parts[index]


def delta(value: Any) -> np.ndarray:
    """A camera difference: four finite numbers, each within ``MAX_DELTA``."""
    if not isinstance(value, list) or len(value) != 4:
        raise WireError("a warp that is not four numbers")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    out = np.array(value, np.float64) if numbers else None
    if out is None or not np.all(np.isfinite(out)) or np.any(np.abs(out) > np.array(MAX_DELTA)):
        raise WireError(f"a warp that is not four finite numbers within {MAX_DELTA}")
    return out

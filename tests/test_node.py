"""The generator node (vj node) and the remote generator: real ZeroMQ sockets on loopback, real processes."""

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
import zlib

import numpy as np
import pytest

from tests.child import start
from vj.errors import ConfigError, GeneratorUnusable
from vj.gen import wire
from vj.gen.node import GeneratorNode, serve
from vj.gen.remote import RemoteFrame, RemoteGenerator
from vj.params import ParamStore

zmq = pytest.importorskip("zmq", reason="the node needs pyzmq (pip install 'vj[node]')")

SIZE = (128, 72)
PARAMS = ParamStore().values()
STEP = np.array([0.01, 0.002, 0.0, 0.0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """``serve`` on a thread, as ``vj node`` runs it."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.stop, ready = threading.Event(), threading.Event()
        self.stats = None

        def run() -> None:
            self.stats = serve("127.0.0.1", port, "sketch", token=token, stop=self.stop, ready=ready)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(30)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def node():
    port = free_port()
    n = Node(port)
    n.port = port
    yield n
    n.close()


def test_frames_come_from_the_node_and_only_moves_go_up(node):
    gen = RemoteGenerator(SIZE, node=f"127.0.0.1:{node.port}")
    gen.load()
    x = gen.generate(None, PARAMS)
    layer = np.full((SIZE[1], SIZE[0], 3), 200, np.uint8)
    for _ in range(20):
        x = gen.generate(gen.mix(gen.warp(x, STEP), layer, 0.2, "screen"), PARAMS)
    spark = gen.fresh(PARAMS)
    mask = np.zeros((SIZE[1], SIZE[0]), np.float32)
    mask[20:50, 40:90] = 0.8
    x = gen.generate(gen.mix(gen.warp(x, STEP), gen.warp(spark, STEP), mask), PARAMS)
    report = gen.report()
    gen.close()
    assert isinstance(x, RemoteFrame) and x.base is not None and x.image.shape == (SIZE[1], SIZE[0], 3)
    assert report["frames"] == 23 and report["stand_in_frames"] == 0 and report["uploads"] == 0
    assert report["connected"] and report["rtt_ms"] > 0
    assert node.stop is not None


def test_a_lost_node_is_stood_in_for_and_found_again():
    port = free_port()
    n = Node(port)
    gen = RemoteGenerator(SIZE, node=f"127.0.0.1:{port}", timeout=0.5)
    gen.load()
    x = gen.generate(None, PARAMS)
    n.close()
    for _ in range(3):  # the node is gone: frames still come, from here
        x = gen.generate(gen.warp(x, STEP), PARAMS)
    assert not gen.connected and gen.stand_in_frames >= 2 and x.base is None
    n = Node(port)  # a new node run: it holds none of our frames
    try:
        deadline = time.monotonic() + 60
        while not gen.connected or gen.frames < 3:
            assert time.monotonic() < deadline, gen.report()
            x = gen.generate(gen.warp(x, STEP), PARAMS)
            time.sleep(0.02)
    finally:
        n.close()
        gen.close()
    report = gen.report()
    assert report["reconnects"] == 1 and report["disconnects"] == 1
    assert report["uploads"] >= 1, "the stand-in's picture went up: the dream carries on from it"


def nested_warps(base: int) -> dict:
    """A frame mixed with itself, four levels deep, each level with 20 warps: 80 moves in all."""
    frame: dict = {"base": base, "ops": [{"warp": [0.01, 0, 0, 0]}] * 20}
    for _ in range(3):
        frame = {"base": base, "ops": [*[{"warp": [0.01, 0, 0, 0]}] * 20, {"mix": frame, "weights": 0.5}]}
    return frame


def test_the_node_answers_trouble_and_goes_on():
    node = GeneratorNode("sketch")
    rgb = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    hello = wire.pack({"op": "hello", "size": list(SIZE), "codec": "jpeg", "client": "a"}, [])
    assert json.loads(node.handle(hello)[0])["ok"]
    first = json.loads(
        node.handle(wire.pack({"op": "generate", "frame": None, "params": PARAMS, "client": "a"}, []))[0]
    )
    huge_jpeg = b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03" + b"\0" * 64  # claims 65535 x 65535
    bad = [
        [b"not json"],
        [b"[1, 2]"],
        wire.pack({"op": "dance"}, []),
        wire.pack({"op": "hello", "size": [10**9, 1]}, []),
        wire.pack({"op": "generate", "frame": {"upload": 0}, "params": PARAMS}, [huge_jpeg]),
        wire.pack({"op": "generate", "frame": {"upload": 5}, "params": PARAMS}, []),
        wire.pack({"op": "generate", "frame": {"base": 999}, "params": PARAMS}, []),
        wire.pack({"op": "generate", "frame": {"base": first["id"], "ops": [{"warp": [1e308, 0, 0, "x"]}]}}, []),
        wire.pack(
            {"op": "generate", "frame": {"base": first["id"], "ops": [{"mix": 0, "weights": {"mask": 0}}]}},
            [zlib.compress(b"\0" * 10**7)],
        ),
        wire.pack({"op": "generate", "frame": None, "params": {**PARAMS, "zoom": "fast"}}, []),
        [b"{}"] * 40,
        wire.pack({"op": "generate", "frame": {"base": first["id"], "ops": [{"warp": [709, 0, 0, 0]}]}}, []),
        wire.pack({"op": "generate", "frame": {"base": True}, "params": PARAMS}, []),
        wire.pack({"op": "generate", "frame": nested_warps(first["id"]), "params": PARAMS}, []),
        wire.pack({"op": "generate", "frame": {"upload": 0}, "params": PARAMS}, [wire.encode_picture(rgb, "webp")]),
    ]
    for message in bad:
        sent = message
        with contextlib.suppress(ValueError):
            h = json.loads(message[0])
            if isinstance(h, dict):  # from the show that said hello, so only the trouble itself is answered
                sent = [json.dumps({**h, "client": "a"}).encode(), *message[1:]]
        header = json.loads(node.handle(sent)[0])
        assert header["ok"] is False and header["error"], message[0][:40]
    assert node.stats.malformed == len(bad) - 2  # frames not held (999, True) are not malformed
    assert node.stats.kinds["base"] == 2 and node.stats.errors == 0, "nothing reached the generator"
    again = json.loads(
        node.handle(wire.pack({"op": "generate", "frame": None, "params": PARAMS, "client": "a"}, []))[0]
    )
    assert again["ok"], "still serving"


def test_one_show_at_a_time(node):
    first = RemoteGenerator(SIZE, node=f"127.0.0.1:{node.port}")
    first.load()
    x = first.generate(None, PARAMS)
    second = RemoteGenerator(SIZE, node=f"127.0.0.1:{node.port}", codec="raw")
    second.client = "another show"
    second.load()  # answered "busy": it dreams on its own stand-in, looking for the node now and then
    y = second.generate(None, PARAMS)
    for _ in range(5):
        x = first.generate(first.warp(x, STEP), PARAMS)
    assert first.connected and first.frames == 6 and first.stand_in_frames == 0, "the first show kept its node"
    assert not second.connected and second.stand_in_frames >= 1 and y.base is None
    first.close()
    second.close()


def test_a_restarted_worker_adopts_the_last_picture_not_a_remote_frame(node):
    gen = RemoteGenerator(SIZE, node=f"127.0.0.1:{node.port}")
    gen.load()
    x = gen.warp(gen.generate(None, PARAMS), STEP)
    gen.close()
    again = RemoteGenerator(SIZE, node=f"127.0.0.1:{node.port}")
    again.load()
    y = again.generate(again.adopt(x), PARAMS)
    assert y.base is not None and again.report()["uploads"] == 1
    again.close()


def test_addresses_are_checked_when_the_show_starts():
    from vj.gen.remote import check_address, parse_address

    for bad in ("127.0.0.1:abc", "http://127.0.0.1:9510", "127.0.0.1:9510:1", "127.0.0.1", ":9510", "h:0"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            check_address(bad)
    with pytest.raises(ConfigError, match="cannot find"):
        check_address("nohost.invalid:9510")
    assert parse_address("[::1]:9510") == ("::1", 9510)
    assert parse_address("0.0.0.0:0", key="--listen", any_port=True) == ("0.0.0.0", 0)


def test_beyond_loopback_a_token_is_required_and_checked():
    with pytest.raises(ConfigError, match="--token"):
        serve("0.0.0.0", free_port(), "sketch")
    port = free_port()
    with pytest.raises(ConfigError, match="easy to guess"):
        serve("0.0.0.0", free_port(), "sketch", token="abc")
    port = free_port()
    n = Node(port, token="s3cret-token")
    try:
        for wrong in ("wrong-token", "café-ü"):
            with pytest.raises(GeneratorUnusable, match="token"):
                RemoteGenerator(SIZE, node=f"127.0.0.1:{port}", token=wrong).load()
        gen = RemoteGenerator(SIZE, node=f"127.0.0.1:{port}", token="s3cret-token")
        gen.load()
        assert gen.connected and gen.generate(None, PARAMS).base is not None
        gen.close()
    finally:
        n.close()
    assert n.stats.refused == 2 and n.stats.errors == 0, "any wrong token is refused, never an error"


def test_codecs_travel_and_pictures_are_checked():
    rgb = (np.random.default_rng(1).random((72, 128, 3)) * 255).astype(np.uint8)
    for codec in wire.CODECS:
        data = wire.encode_picture(rgb, codec)
        back = wire.decode_picture(data, codec, SIZE)
        assert back.shape == rgb.shape
        if codec == "raw":
            assert np.array_equal(back, rgb)
        else:
            assert wire.picture_size(data) == SIZE
        with pytest.raises(wire.WireError):
            wire.decode_picture(data, codec, (64, 64))


# -- vj node and vj run, as a user runs them -------------------------------------------------------------------------
def lines(proc) -> queue.Queue:
    out: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stderr:
            out.put(line)
        out.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return out


def expect(q: queue.Queue, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while True:
        line = q.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, f"ended before saying {text!r}: {seen[-1500:]}"
        seen += line
        if text in line:
            return


def start_node(port: int) -> tuple[subprocess.Popen, queue.Queue]:
    proc = start("node", "--generator", "sketch", "--listen", f"127.0.0.1:{port}")
    q = lines(proc)
    expect(q, "node serving sketch")
    return proc, q


def test_a_show_on_a_node_survives_losing_it_and_takes_it_back():
    port = free_port()
    node, _ = start_node(port)
    run = ["run", "--generator", "remote", "--node", f"127.0.0.1:{port}", "--headless", "--seconds", "10"]
    show = start("-v", *run, "--report", "-", "--no-osc", "--no-dreams", "--gen-size", "256x144")
    said = lines(show)
    try:
        expect(said, "first frame from remote")
        node.kill()  # pulled out: no goodbye
        node.wait(10)
        expect(said, "lost")
        node, _ = start_node(port)
        expect(said, "is back")
        out, _ = show.communicate(timeout=120)
    finally:
        for p in (show, node):
            if p.poll() is None:
                p.kill()
    assert show.returncode == 0
    report = json.loads(out)
    gen = report["generator"]
    assert gen["name"] == "remote" and gen["generated_by"]["remote"] >= 100
    assert gen["node"]["reconnects"] >= 1 and gen["node"]["stand_in_frames"] >= 1 and gen["node"]["connected"]
    assert gen["node"]["frames"] >= 100 and gen["node"]["bytes_per_frame"] > 0
    # Had the display waited for the network, one frame would have taken the node's whole timeout (1 s).
    assert report["interval_ms"]["max"] < 1000, "the display never waited for the network"
    assert report["frames"] >= 0.5 * 60 * report["seconds"]


def test_a_hung_node_is_stood_in_for_from_the_start_and_taken_back_when_it_wakes():
    port = free_port()
    node, _ = start_node(port)
    os.kill(node.pid, signal.SIGSTOP)  # a node that hangs rather than dies: TCP still connects
    try:
        gen = RemoteGenerator(SIZE, node=f"127.0.0.1:{port}", timeout=0.5)
        started = time.monotonic()
        gen.load()
        x = gen.generate(None, PARAMS)
        assert time.monotonic() - started < 30, "not a long wait for a node that does not answer"
        assert not gen.connected and gen.stand_in_frames == 1
        os.kill(node.pid, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while not gen.connected or gen.frames < 2:
            assert time.monotonic() < deadline, gen.report()
            x = gen.generate(gen.warp(x, STEP), PARAMS)
            time.sleep(0.02)
        gen.close()
    finally:
        os.kill(node.pid, signal.SIGCONT)
        node.kill()
        node.wait(10)
    assert gen.report()["reconnects"] == 1

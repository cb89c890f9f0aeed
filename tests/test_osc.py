import contextlib
import json
import math
import random
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from tests.child import finish, start, vj
from vj.control.bus import ControlBus
from vj.control.mapping import parse_mapping
from vj.control.osc import OscFeedback, OscRouter, OscServer, Reject, address_table
from vj.engine.loop import Show, ShowConfig
from vj.params import PARAMS

needs_liblo = pytest.mark.skipif(not shutil.which("oscsend"), reason="needs liblo-tools (.ci/run installs it)")


# -- the router, no sockets ----------------------------------------------------------------------------------
@pytest.fixture
def router():
    return OscRouter()


def test_set_in_the_parameters_own_units(router):
    assert router.route("/vj/zoom", [0.5]) == [("zoom", 0.5, "set")]
    assert router.route("/vj/seed", [42]) == [("seed", 42.0, "set")]
    assert router.route("/vj/prompt", ["a neon city"]) == [("prompt", "a neon city", "set")]


@pytest.mark.parametrize(
    ("address", "args", "why"),
    [
        ("/vj/zoom", [1.5], "outside zoom's range"),
        ("/vj/zoom", [math.nan], "finite"),
        ("/vj/zoom", [math.inf], "finite"),
        ("/vj/zoom", ["fast"], "expected a number"),
        ("/vj/zoom", [], "got no argument"),
        ("/vj/zoom", [0.1, "fast"], "mixed types"),
        ("/vj/zoom", ["/", 2.0], "unknown form"),
        ("/vj/prompt", [True], "needs one string"),
        ("/vj/prompt", [b"\xff\xfe"], "not UTF-8"),
        ("/vj/scene", [2.5], "whole number"),
        ("/vj/spark", ["?"], "no value to ask for"),
        ("/vj/prompt", ["   "], "needs some text"),
        ("/vj/zzz", [1], "unknown address"),
        ("/other/zoom", [1], "vj listens under /vj/"),
        ("/vj/quit", [], "unknown address"),
        ("/vj/norm/zoom", [2.0], "outside 0..1"),
        ("/vj/norm/prompt", [0.5], "no number parameter"),
        ("/vj/stop", ["now"], "expected no argument or a number"),
    ],
)
def test_what_cannot_be_used_is_rejected_with_a_reason(router, address, args, why):
    with pytest.raises(Reject, match=re.escape(why)):
        router.route(address, args)


def test_resolume_relative_form(router):
    assert router.route("/vj/zoom", ["+", 0.1]) == [("zoom", 0.1, "add")]
    assert router.route("/vj/zoom", ["-", 0.25]) == [("zoom", -0.25, "add")]
    assert router.route("/vj/zoom", ["a", 0.25]) == [("zoom", 0.25, "set")]


def test_normalised_form_maps_0_to_1_onto_the_range(router):
    assert router.route("/vj/norm/zoom", [0.75]) == [("zoom", 0.5, "set")]
    assert router.route("/vj/norm/speed", [0.5]) == [("speed", 2.0, "set")]
    assert router.route("/vj/norm/freeze", [0.9]) == [("freeze", True, "set")]


def test_bools_set_or_flip(router):
    assert router.route("/vj/freeze", [1]) == [("freeze", True, "set")]
    assert router.route("/vj/freeze", [False]) == [("freeze", False, "set")]
    assert router.route("/vj/blackout", []) == [("blackout", None, "toggle")]


def test_buttons_fire_on_press_not_on_release(router):
    assert router.route("/vj/stop", []) == [("stop", None, "fire")]
    assert router.route("/vj/stop", [1.0]) == [("stop", None, "fire")]
    assert router.route("/vj/stop", [0.0]) == []


def test_repeated_unchanged_values_are_skipped_like_touchdesigner_streams(router):
    assert router.route("/vj/zoom", [0.3], now=0.0)
    assert router.route("/vj/zoom", [0.3], now=0.016) == []
    assert router.route("/vj/zoom", [0.3], now=0.032) == []
    assert router.route("/vj/zoom", [0.31], now=0.048) == [("zoom", 0.31, "set")]
    assert router.route("/vj/zoom", [0.31], now=5.0) == [("zoom", 0.31, "set")], "a deliberate resend later applies"
    assert router.duplicates == 2
    assert router.route("/vj/zoom", ["+", 0.1]) and router.route("/vj/zoom", ["+", 0.1]), "relative moves repeat"


def test_mapping_routes_alias_any_address():
    m = parse_mapping(
        {
            "osc": {
                "route": [
                    {"address": "/1/fader1", "target": "zoom", "range": [-1.0, 1.0]},
                    {"address": "/1/push1", "target": "stop"},
                ]
            }
        },
        "x",
    )
    r = OscRouter(m)
    assert r.route("/1/fader1", [0.25]) == [("zoom", -0.5, "set")]
    assert r.route("/1/push1", [1.0]) == [("stop", None, "fire")]
    with pytest.raises(Reject, match=r"outside 0\.\.1"):
        r.route("/1/fader1", [3.0])


def test_osc_list_names_every_parameter():
    addresses = {row[0] for row in address_table()}
    for p in PARAMS:
        assert f"/vj/{p.name}" in addresses
    assert "/vj/norm/zoom" in addresses and "/vj/quit" not in addresses


# -- a running engine, real UDP --------------------------------------------------------------------------------
def run_show(sources, frames=40, at=None, **params) -> dict:
    cfg = ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, frames=frames, params=params)
    show = Show(cfg)
    for s in sources:
        show.add_source(s)
    for n, action in (at or {}).items():
        show.on_frame.append(lambda s, n=n, action=action: action() if s.frames == n else None)
    return show.run()


def server() -> OscServer:
    s = OscServer("127.0.0.1", 0)
    s.bind()
    return s


def test_python_osc_client_into_a_running_engine():
    osc = server()
    client = SimpleUDPClient("127.0.0.1", osc.port)
    report = run_show(
        [osc],
        at={
            5: lambda: client.send_message("/vj/zoom", 0.5),
            6: lambda: client.send_message("/vj/prompt", "a forest made of glass"),
        },
    )
    assert report["params"]["zoom"] == 0.5 and report["params"]["prompt"] == "a forest made of glass"
    assert report["events"]["osc"] == 2 and report["rejected"]["osc"] == 0
    assert report["osc"]["port"] == osc.port
    assert (report["osc"]["dropped"], report["osc"]["oversize"], report["osc"]["malformed"]) == (0, 0, 0)
    assert report["sources"]["osc"] == {"alive": True, "restarts": 0, "error": None}, "it lived until the show ended"
    assert osc.status() == f"OSC :{osc.port}", "a quiet line when all is well"


@needs_liblo
def test_oscsend_a_client_no_one_here_wrote():
    osc = server()

    def send(*args: str) -> None:
        subprocess.run(["oscsend", "127.0.0.1", str(osc.port), *args], check=True, timeout=10)

    report = run_show(
        [osc],
        frames=60,
        at={
            5: lambda: send("/vj/pan_x", "f", "-0.25"),
            6: lambda: send("/vj/rotate", "sf", "+", "0.2"),
            7: lambda: send("/vj/seed", "i", "7"),
            8: lambda: send("/vj/freeze", "T"),
            9: lambda: send("/vj/zoom", "f", "3.0"),
            10: lambda: send("/vj/prompt", "s", "golden clouds"),
        },
    )
    p = report["params"]
    assert (p["pan_x"], p["rotate"], p["seed"], p["freeze"], p["prompt"]) == (-0.25, 0.2, 7, True, "golden clouds")
    assert p["zoom"] == 0.15, "out of range: dropped"
    assert report["events"]["osc"] == 5 and report["rejected"]["osc"] == 1


def test_bundles_are_unpacked():
    osc = server()
    bundle = OscBundleBuilder(IMMEDIATELY)
    for address, value in (("/vj/chaos", 0.9), ("/vj/strength", 0.2), ("/vj/nope", 1.0)):
        msg = OscMessageBuilder(address)
        msg.add_arg(value)
        bundle.add_content(msg.build())
    dgram = bundle.build().dgram
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    report = run_show([osc], at={5: lambda: sock.sendto(dgram, ("127.0.0.1", osc.port))})
    assert report["params"]["chaos"] == 0.9 and report["params"]["strength"] == 0.2
    assert report["rejected"]["osc"] == 1


def test_a_busy_port_named_on_the_command_line_stops_the_show_with_a_message():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        out = vj("run", "--headless", "--frames", "2", "--osc-port", str(port))
    assert out.returncode == 2 and f"cannot listen for OSC on 127.0.0.1:{port}" in out.stderr


def wait_until(condition, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


@needs_liblo
def test_changes_from_any_source_go_back_out_over_osc():
    with socket.socket() as s:  # a free port for oscdump
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dump = subprocess.Popen(["oscdump", "-L", str(port)], stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert dump.stdout is not None
    stdout = dump.stdout
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    probe = SimpleUDPClient("127.0.0.1", port)
    try:

        def listening() -> bool:  # oscdump has no "ready" signal: it prints what it gets
            probe.send_message("/probe", 1)
            time.sleep(0.05)
            return any("/probe" in line for line in lines)

        wait_until(listening, what="oscdump listening")
        show_out = OscFeedback("127.0.0.1", port)
        report = run_show([show_out], frames=30, at={5: lambda: None})
        wait_until(lambda: any(" /vj/zoom f 0.150000" in line for line in lines), what="all values at the start")
        wait_until(lambda: any('/vj/prompt s "a luminous dream of drifting nebulae"' in line for line in lines))
    finally:
        dump.terminate()
        dump.wait(timeout=10)
    assert report["osc_out"]["sent"] >= len([p for p in PARAMS if p.kind != "trigger"])
    assert report["sources"]["osc_out"]["restarts"] == 0


def test_feedback_follows_a_change_from_midi():
    received: list = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        out = OscFeedback("127.0.0.1", sock.getsockname()[1])
        stop = threading.Event()

        def listen() -> None:
            from pythonosc.osc_message import OscMessage

            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    received.append(OscMessage(sock.recv(4096)))

        t = threading.Thread(target=listen)
        t.start()
        try:
            cfg = ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, frames=20)
            show = Show(cfg)
            show.add_source(out)
            show.on_frame.append(lambda s: s.bus.post("midi", "chaos", 0.8) if s.frames == 5 else None)
            show.run()

            def chaos() -> list:
                return [m.params for m in list(received) if m.address == "/vj/chaos"]

            wait_until(lambda: [pytest.approx(0.8)] in chaos(), what="the change from MIDI going out")
        finally:
            stop.set()
            t.join()
    assert chaos()[0] == [pytest.approx(0.3)] and chaos()[-1] == [pytest.approx(0.8)]


def test_feedback_sends_from_its_own_thread_what_the_loop_tells_it(monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(30)
        out = OscFeedback("127.0.0.1", sock.getsockname()[1])
        senders: list[str] = []
        send = out.client.send_message

        def recording(address, value):
            senders.append(threading.current_thread().name)
            send(address, value)

        monkeypatch.setattr(out.client, "send_message", recording)
        out.start(ControlBus())
        try:
            out.tell("changed", {"zoom": 0.5})
            out.tell("changed", {"freeze": True})
            out.tell("remap", None)  # not a kind it listens to: ignored
            from pythonosc.osc_message import OscMessage

            got: dict[str, list] = {}
            while len(got) < 2:
                m = OscMessage(sock.recv(4096))
                got[m.address] = m.params
        finally:
            out.stop()
    assert got == {"/vj/zoom": [0.5], "/vj/freeze": [1]}
    assert set(senders) == {"vj-osc-out"}, "UDP sends happen on the source's thread, never the caller's"
    assert out.report()["sent"] == 2 and out.health()["restarts"] == 0


def test_a_remap_is_taken_on_the_socket_thread_and_routes_the_next_packets(monkeypatch):
    bus = ControlBus()
    osc = server()
    threads: list[str] = []
    on_remap = osc.on_remap

    def recording(mapping):
        threads.append(threading.current_thread().name)
        on_remap(mapping)

    monkeypatch.setattr(osc, "on_remap", recording)
    osc.start(bus)
    client = SimpleUDPClient("127.0.0.1", osc.port)
    try:
        osc.tell("remap", parse_mapping({"osc": {"route": [{"address": "/knob", "target": "rotate"}]}}, "x"))
        osc.tell("changed", {"zoom": 0.1})  # not a kind it listens to: ignored
        seen: list = []

        def knob_routed() -> bool:
            client.send_message("/knob", 0.5)  # rejected until the new mapping is in place
            time.sleep(0.05)
            seen.extend(e for e in bus.drain() if e.target == "rotate")
            return bool(seen)

        wait_until(knob_routed, what="the remapped address routed")
    finally:
        osc.stop()
    assert seen[0].value == 0.5 and threads == ["vj-osc"]


# -- fuzz ------------------------------------------------------------------------------------------------------
def _random_packets(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    names = [p.name for p in PARAMS] + ["stop", "hud", "quit", "nope", "norm/zoom", "norm/seed", ""]
    values = [0.5, -3.0, 1e30, math.nan, math.inf, -math.inf, 0, 2**31 - 1, -(2**31), "x", "", "+", "-", True, False]
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.25:  # random bytes
            out.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))))
            continue
        msg = OscMessageBuilder(rng.choice(["/vj/", "/", "/x/", "/vj/norm/"]) + rng.choice(names))
        for _ in range(rng.randint(0, 3)):
            v = rng.choice(values)
            msg.add_arg(v)
        dgram = msg.build().dgram
        if kind < 0.45:  # truncated or corrupted valid messages
            dgram = dgram[: rng.randint(0, len(dgram))]
            if dgram and rng.random() < 0.5:
                i = rng.randrange(len(dgram))
                dgram = dgram[:i] + bytes([rng.getrandbits(8)]) + dgram[i + 1 :]
        elif kind < 0.55:  # a bundle of a few, with a far-future time tag
            b = OscBundleBuilder(IMMEDIATELY)
            b.add_content(msg.build())
            dgram = bytearray(b.build().dgram)
            dgram[8:16] = struct.pack(">Q", 2**63)
            dgram = bytes(dgram)
        out.append(dgram)
    return out


def test_fuzz_ten_thousand_packets_the_engine_keeps_running_and_in_range():
    osc = server()
    packets = _random_packets(10_000)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    done = threading.Event()

    def flood() -> None:
        deadline = time.monotonic() + 50
        for i, p in enumerate(packets):
            # Stay within the socket buffer, whatever else the machine is doing: every packet must arrive to be
            # counted, so at most 500 are in flight at once.
            while osc.packets < i - 500 and time.monotonic() < deadline:
                time.sleep(0.001)
            sock.sendto(p, ("127.0.0.1", osc.port))
        done.set()

    cfg = ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, seconds=60)
    show = Show(cfg)
    show.add_source(osc)
    show.on_frame.append(lambda s: threading.Thread(target=flood).start() if s.frames == 3 else None)
    show.on_frame.append(lambda s: s.stop() if done.is_set() and osc.packets >= len(packets) else None)
    report = show.run()
    assert report["osc"]["packets"] == len(packets), "every packet reached the server"
    assert report["frames"] > 10 and show.elapsed < 60, "the show kept running and ended normally"
    assert report["rejected"]["osc"] > 1000 and report["osc"]["malformed"] > 1000
    for spec in PARAMS:
        if spec.kind in ("float", "int"):
            value = report["params"][spec.name]
            assert math.isfinite(value) and spec.lo <= value <= spec.hi, spec.name
    json.dumps(report)


@needs_liblo
def test_vj_run_on_the_default_port_takes_oscsend():
    proc = start("run", "--headless", "--seconds", "8", "--report", "-")
    # UDP has no handshake: send a few times while the show starts (repeats within 2 s count once).
    for _ in range(6):
        time.sleep(0.5)
        subprocess.run(["oscsend", "127.0.0.1", "9000", "/vj/zoom", "f", "0.5"], check=True, timeout=10)
    report, err = finish(proc)
    assert report["params"]["zoom"] == 0.5, err
    assert report["events"]["osc"] >= 1 and report["osc"]["port"] == 9000

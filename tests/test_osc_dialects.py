"""OSC as real clients send it: each shape written out byte for byte here, not by the library vj parses with."""

import json
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from pythonosc.osc_message import OscMessage

from tests.child import finish, start
from vj.control.bus import ControlBus
from vj.control.mapping import load_mapping, parse_mapping
from vj.control.osc import OscServer, address_table

ROOT = Path(__file__).resolve().parent.parent


# -- a minimal OSC encoder, to write the exact bytes each client sends ----------------------------------------------
def _pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def osc(address: str, tags: str = "", *values) -> bytes:
    out = _pad(address.encode()) + _pad(b"," + tags.encode())
    values = list(values)
    for tag in tags:
        if tag in "TFNI":
            continue
        v = values.pop(0)
        if tag == "i":
            out += struct.pack(">i", v)
        elif tag == "h":
            out += struct.pack(">q", v)
        elif tag == "f":
            out += struct.pack(">f", v)
        elif tag == "d":
            out += struct.pack(">d", v)
        elif tag == "s":
            out += _pad(v.encode())
        elif tag == "b":
            out += struct.pack(">i", len(v)) + v + b"\0" * (-len(v) % 4)
        elif tag == "m":
            out += bytes(v)
        else:
            raise ValueError(tag)
    assert not values
    return out


def bundle(*elements: bytes, timetag: int = 1) -> bytes:
    return b"#bundle\0" + struct.pack(">Q", timetag) + b"".join(struct.pack(">i", len(e)) + e for e in elements)


def routed(data: bytes, mapping=None, values=None) -> tuple[list, OscServer]:
    """The bus events one datagram makes."""
    srv = OscServer("127.0.0.1", 0, mapping=mapping)
    if values:
        srv.on_changed(values)
    bus = ControlBus()
    srv.receive(bus, data)
    return [(e.target, e.value, e.op) for e in bus.drain()], srv


# -- shapes --------------------------------------------------------------------------------------------------------
def test_touchdesigner_time_slice_takes_the_last_sample_of_a_bundle():
    # OSC Out CHOP, Time Slice on: every sample since the last cook in one message, always in a bundle whose time
    # tag counts from its first send (not a wall-clock time: ignored).
    data = bundle(osc("/vj/zoom", "fff", 0.25, 0.5, 0.75), osc("/vj/chaos", "ff", 0.1, 0.2), timetag=0x00000001_0000)
    events, srv = routed(data)
    assert events == [("zoom", 0.75, "set"), ("chaos", 0.2, "set")]
    assert srv.malformed == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (osc("/vj/zoom", "i", 0), [("zoom", 0.0, "set")]),
        (osc("/vj/zoom", "f", 0.5), [("zoom", 0.5, "set")]),
        (osc("/vj/zoom", "d", 0.3125), [("zoom", 0.3125, "set")]),
        (osc("/vj/seed", "h", 2**31 - 1), [("seed", float(2**31 - 1), "set")]),
        (osc("/vj/scene", "f", 3.0), [("scene", 3, "set")]),  # osc.js, Node-RED, TouchOSC
        (osc("/vj/scene", "d", 2.0), [("scene", 2, "set")]),
        (osc("/vj/scene", "h", 4), [("scene", 4, "set")]),
        (osc("/vj/scene", "s", "next"), [("scene", "next", "set")]),
        (osc("/vj/freeze", "T"), [("freeze", True, "set")]),
        (osc("/vj/freeze", "F"), [("freeze", False, "set")]),
        (osc("/vj/freeze", "N"), [("freeze", None, "toggle")]),
        (osc("/vj/spark", "N"), [("spark", None, "fire")]),
        (osc("/vj/spark", "I"), [("spark", None, "fire")]),  # impulse: python-osc itself does not read it
        (osc("/vj/stop", "I"), [("stop", None, "fire")]),
        (osc("/vj/spark", "T"), [("spark", None, "fire")]),
        (osc("/vj/spark", "F"), []),
        (osc("/vj/prompt", "b", b"neon rain"), [("prompt", "neon rain", "set")]),
        (osc("/vj/prompt", "b", "café noir".encode()), [("prompt", "café noir", "set")]),
        (osc("/vj/prompt", "i", 1999), [("prompt", "1999", "set")]),
        (osc("/vj/prompt", "i", 1234567), [("prompt", "1234567", "set")]),
        (osc("/vj/prompt_b", "s", ""), [("prompt_b", "", "set")]),  # empty means none: it clears the blend
        (osc("/vj/spark", "II"), [("spark", None, "fire")]),
        (osc("/vj/prompt", "f", 2.5), [("prompt", "2.5", "set")]),
        (osc("/vj/norm/zoom", "d", 1.0), [("zoom", 1.0, "set")]),
    ],
)
def test_any_numeric_type_and_the_typeless_tags(data, expected):
    events, srv = routed(data)
    assert events == expected
    assert srv.malformed == 0


def test_resolume_string_first_forms():
    values = {"zoom": 0.2, "speed": 0.5}
    assert routed(osc("/vj/zoom", "sf", "+", 0.1), values=values)[0] == [("zoom", 0.1, "add")]
    assert routed(osc("/vj/zoom", "sf", "-", 0.1), values=values)[0] == [("zoom", -0.1, "add")]
    assert routed(osc("/vj/zoom", "sf", "a", 0.4), values=values)[0] == [("zoom", 0.4, "set")]
    assert routed(osc("/vj/speed", "sf", "*", 2.0), values=values)[0] == [("speed", 2.0, "scale")]
    assert routed(osc("/vj/speed", "si", "*", 3), values=values)[0] == [("speed", 3.0, "scale")]
    events, srv = routed(osc("/vj/zoom", "s", "?"), values=values)
    assert events == [] and srv.router.answers == [], "answered (to nobody here: no sender)"


def test_a_query_is_answered_at_the_senders_address_and_port():
    srv = OscServer("127.0.0.1", 0)
    srv.bind()
    srv.on_changed({"zoom": 0.25, "freeze": True, "prompt": "reef", "seed": 7})
    bus = ControlBus()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(10)
        for address in ("/vj/zoom", "/vj/freeze", "/vj/prompt", "/vj/seed", "/vj/norm/zoom"):
            srv.receive(bus, osc(address, "s", "?"), client.getsockname())
            reply, where = client.recvfrom(1024)
            assert where == ("127.0.0.1", srv.port), "from the port vj listens on"
            message = OscMessage(reply)
            assert message.address == address
            yield_ = {"/vj/zoom": 0.25, "/vj/freeze": 1, "/vj/prompt": "reef", "/vj/seed": 7, "/vj/norm/zoom": 0.625}
            assert message.params == [pytest.approx(yield_[address])]
            assert (
                reply[len(_pad(address.encode())) :][:2]
                == {str: b",s", int: b",i", float: b",f"}[type(yield_[address])]
            )
    srv.stop()
    assert srv.answered == 5 and bus.drain() == []


def test_midi_inside_osc_goes_through_the_midi_mapping():
    mapping = load_mapping(ROOT / "mappings" / "default.toml")
    # A MIDI-over-OSC bridge: port, status, data 1, data 2. CC 21 on channel 1 is zoom; note 36 is freeze.
    events, _ = routed(osc("/midi", "m", (0, 0xB0, 21, 127)), mapping, values={"zoom": 1.0})
    assert events == [("zoom", 1.0, "set")]
    events, _ = routed(osc("/anything", "mm", (0, 0x90, 36, 100), (0, 0x80, 36, 0)), mapping, values={"zoom": 0})
    assert events[0][0] == "freeze"
    srv = OscServer("127.0.0.1", 0, mapping=mapping)
    bus = ControlBus()
    for broken in ((0, 0x30, 0, 0), (0, 0x90, 0xC0, 5), (0, 0x90, 200, 255), (0, 0xF0, 1, 2), (0, 0xFF, 0, 0)):
        srv.receive(bus, osc("/midi", "m", broken))
    assert bus.drain() == [], "a data byte over 127 is not a program change or a reset"
    assert bus.rejected_counts()["osc"] == 5, "bytes that make no channel message: counted and dropped"


ALIASES = """
[[osc.route]]
address = "/composition/layers/1/video/opacity"
target = "layer1_opacity"
range = [0.0, 1.0]

[[osc.route]]
address = "/1/fader1"
target = "zoom"
range = [-1.0, 1.0]

[[osc.route]]
address = "/1/xy1"
target = ["pan_x", "pan_y"]
range = [-1.0, 1.0]

[[osc.route]]
address = "/1/push1"
target = "spark"

[[osc.route]]
address = "/1/push2"
target = "stop"
"""


def test_aliases_for_foreign_addresses(tmp_path):
    mapping = parse_mapping(__import__("tomllib").loads(ALIASES), "rig.toml")
    assert routed(osc("/composition/layers/1/video/opacity", "f", 0.5), mapping)[0] == [("layer1_opacity", 0.5, "set")]
    assert routed(osc("/1/fader1", "f", 0.75), mapping)[0] == [("zoom", 0.5, "set")]
    assert routed(osc("/1/xy1", "ff", 0.0, 1.0), mapping)[0] == [("pan_x", -1.0, "set"), ("pan_y", 1.0, "set")]
    assert routed(osc("/1/push1", "f", 1.0), mapping)[0] == [("spark", None, "fire")]
    assert routed(osc("/1/push1", "f", 0.0), mapping)[0] == [], "the release does nothing"
    assert routed(osc("/1/push2", "f", 1.0), mapping)[0] == [("stop", None, "fire")]
    events, srv = routed(osc("/1/xy1", "f", 0.5), mapping)
    assert events == [] and srv.router.duplicates == 0


def test_aliases_with_a_range_speak_the_senders_units(tmp_path):
    mapping = parse_mapping(__import__("tomllib").loads(ALIASES), "rig.toml")
    values = {"zoom": 0.5, "pan_x": -1.0, "pan_y": 0.5}
    assert routed(osc("/1/fader1", "sf", "+", 0.1), mapping, values)[0] == [("zoom", pytest.approx(0.2), "add")]
    assert routed(osc("/1/fader1", "sf", "a", 0.5), mapping, values)[0] == [("zoom", 0.0, "set")]
    srv = OscServer("127.0.0.1", 0, mapping=mapping)
    srv.bind()
    srv.on_changed(values)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(10)
        srv.receive(ControlBus(), osc("/1/fader1", "s", "?"), client.getsockname())
        assert OscMessage(client.recv(1024)).params == [pytest.approx(0.75)], "where the fader should sit, 0..1"
        srv.receive(ControlBus(), osc("/1/xy1", "s", "?"), client.getsockname())
        assert OscMessage(client.recv(1024)).params == [pytest.approx(0.0), pytest.approx(0.75)]
    srv.stop()


def test_answers_are_capped_so_vj_cannot_be_made_to_amplify():
    srv = OscServer("127.0.0.1", 0)
    srv.bind()
    srv.on_changed({"prompt": "x" * 300})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(0.5)
        srv.receive(ControlBus(), bundle(*[osc("/vj/prompt", "s", "?")] * 100), client.getsockname())
        got = 0
        try:
            while True:
                client.recv(2048)
                got += 1
        except TimeoutError:
            pass
    srv.stop()
    assert got == 4 and srv.answered == 4 and srv.unanswered == 96


def test_a_scene_switch_keeps_the_repeat_filter():
    srv = OscServer("127.0.0.1", 0)
    bus = ControlBus()
    srv.receive(bus, osc("/vj/speed", "f", 3.0))
    srv.on_remap(load_mapping("touchosc"))  # a scene's mapping comes in...
    srv.receive(bus, osc("/vj/speed", "f", 3.0))  # ...and the fader, streaming the same value, must not undo it
    assert [e.value for e in bus.drain()] == [3.0] and srv.router.duplicates == 1


@pytest.mark.parametrize("name", ["touchosc", "scope"])
def test_the_shipped_rig_mappings_route_their_addresses(name):
    mapping = load_mapping(name)
    assert mapping.osc, "it has routes"
    for route in mapping.osc:
        targets = (route.target, *route.more)
        spec = route.target.param
        if spec is not None and spec.kind == "string":
            args = ("s", "a reef at night")
        elif route.target.action is not None and route.target.action.arg != "none":
            args = ("i", 2)
        else:
            args = ("f" * len(targets), *([1.0] * len(targets)))
        events, srv = routed(osc(route.address, *args), mapping, values={"zoom": 0})
        assert srv.malformed == 0 and [e[0] for e in events] == [t.name for t in targets], route.address


def test_osc_list_says_which_forms_each_address_takes():
    rows = {address: kind for address, kind, _ in address_table()}
    assert '"+"|"-"|"*"|"a" x' in rows["/vj/zoom"] and '"?"' in rows["/vj/zoom"]
    assert "blob" in rows["/vj/prompt"] and "number" in rows["/vj/prompt"]
    assert "T|F" in rows["/vj/freeze"]
    assert "N|I" in rows["/vj/spark"]
    out = subprocess.run(
        ["python", "-m", "vj", "osc", "list"], capture_output=True, text=True, cwd=ROOT, check=True, timeout=60
    ).stdout
    assert "Time Slice" in out and "MIDI" in out


# -- the whole show, as a rig would drive it ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_show_driven_by_every_shape():
    port = _free_port()
    proc = start("run", "--headless", "--seconds", "13", "--report", "-", "--osc-port", str(port), "--no-dreams")
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(0.2)
    target = ("127.0.0.1", port)

    def ask(address: str) -> list:
        """Ask until the show answers (it may still be starting)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            client.sendto(osc(address, "s", "?"), target)
            try:
                reply = client.recv(2048)
            except TimeoutError:
                continue
            message = OscMessage(reply)
            assert message.address == address
            return message.params
        raise AssertionError(f"no answer to {address} ?")

    def wait_for(address: str, wanted) -> None:
        deadline = time.monotonic() + 60
        while (got := ask(address)) != [wanted]:
            assert time.monotonic() < deadline, f"{address} is {got}, not {wanted}"

    try:
        assert ask("/vj/zoom") == [pytest.approx(0.15)], "/vj/zoom ,s ? answers ,f <value>"
        send = ["oscsend", "127.0.0.1", str(port)]
        if shutil.which("oscsend"):  # a client no one here wrote
            subprocess.run([*send, "/vj/scene", "f", "3.0"], check=True, timeout=10)
        else:
            client.sendto(osc("/vj/scene", "f", 3.0), target)
        wait_for("/vj/prompt", "an underwater coral reef")  # scene 3's first prompt: the switch has happened
        client.sendto(osc("/vj/zoom", "ff", 0.31, 0.32), target)
        client.sendto(osc("/vj/prompt", "b", b"neon rain"), target)
        client.sendto(osc("/vj/speed", "f", 0.5), target)
        client.sendto(osc("/vj/speed", "sf", "*", 2.0), target)
        wait_for("/vj/speed", pytest.approx(1.0))
        report, _ = finish(proc, timeout=90)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
    assert report["scene_number"] == 3
    assert report["params"]["zoom"] == pytest.approx(0.32, abs=1e-6)
    assert report["params"]["prompt"] == "neon rain"
    assert report["params"]["speed"] == pytest.approx(1.0)
    assert report["osc"]["answered"] >= 3 and report["osc"]["malformed"] == 0
    assert report["rejected"]["osc"] == 0, json.dumps(report["osc"])

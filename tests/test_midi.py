import json
import math
import queue
import random
import threading
import time
from pathlib import Path

import mido
import pytest

from tests.child import finish, start, vj
from vj.control.bus import ControlBus
from vj.control.mapping import load_mapping, parse_mapping
from vj.control.midi import MidiInput, MidiRouter, match_port, relative_ticks
from vj.engine.loop import Show, ShowConfig
from vj.params import PARAMS

JACK = "mido.backends.rtmidi/UNIX_JACK"


def cc(control, value, channel=0):
    return mido.Message("control_change", channel=channel, control=control, value=value)


def note(n, velocity=100, channel=0):
    return mido.Message("note_on", channel=channel, note=n, velocity=velocity)


def router(**midi) -> MidiRouter:
    return MidiRouter(parse_mapping({"midi": midi}, "test"))


# -- the router, no ports -------------------------------------------------------------------------------------
def test_absolute_cc_maps_0_127_onto_the_range():
    r = router(cc=[{"channel": 1, "control": 21, "target": "zoom", "range": [-1.0, 1.0]}])
    assert r.handle(cc(21, 127)) == [("zoom", 1.0, "set")]
    assert r.handle(cc(21, 0)) == [("zoom", -1.0, "set")]
    assert r.handle(cc(21, 64))[0][1] == pytest.approx(-1 + 2 * 64 / 127)
    assert r.handle(cc(21, 127, channel=1)) == [], "other channels are not this control"


def test_default_range_is_the_parameters_own_and_ints_round():
    r = router(
        cc=[
            {"channel": 1, "control": 1, "target": "speed"},
            {"channel": 1, "control": 2, "target": "seed", "range": [0, 10]},
        ]
    )
    assert r.handle(cc(1, 127)) == [("speed", 4.0, "set")]
    assert r.handle(cc(2, 64)) == [("seed", 5, "set")]


def test_14_bit_pairs_msb_then_lsb():
    r = router(cc=[{"channel": 1, "control": 7, "target": "strength", "bits": 14}])
    assert r.handle(cc(39, 5)) == [], "an LSB before any MSB is ignored"
    assert r.handle(cc(7, 64)) == [("strength", pytest.approx(8192 / 16383), "set")], "MSB resets the LSB"
    assert r.handle(cc(39, 127)) == [("strength", pytest.approx(8319 / 16383), "set")]
    assert r.handle(cc(7, 127)) == [("strength", pytest.approx(16256 / 16383), "set")]
    assert r.handle(cc(39, 127)) == [("strength", 1.0, "set")]


@pytest.mark.parametrize(
    ("mode", "up", "down"),
    [
        ("relative-twos", (1, 3), (127, 125)),
        ("relative-signed", (1, 3), (65, 67)),
        ("relative-offset", (65, 67), (63, 61)),
    ],
)
def test_relative_encoders_in_all_three_encodings(mode, up, down):
    assert relative_ticks(mode, up[0]) == 1 and relative_ticks(mode, up[1]) == 3
    assert relative_ticks(mode, down[0]) == -1 and relative_ticks(mode, down[1]) == -3
    r = router(cc=[{"channel": 1, "control": 10, "target": "rotate", "mode": mode, "step": 0.05}])
    assert r.handle(cc(10, up[1])) == [("rotate", pytest.approx(0.15), "add")]
    assert r.handle(cc(10, down[0])) == [("rotate", pytest.approx(-0.05), "add")]


def test_note_buttons_trigger_toggle_hold_and_velocity_zero_is_release():
    r = router(
        note=[
            {"channel": 1, "note": 36, "target": "stop"},
            {"channel": 1, "note": 37, "target": "blackout", "mode": "toggle"},
            {"channel": 1, "note": 38, "target": "freeze", "mode": "hold"},
            {"channel": 1, "note": 39, "target": "zoom", "mode": "hold", "value": 1.0, "release": 0.0},
        ]
    )
    assert r.handle(note(36)) == [("stop", None, "fire")]
    assert r.handle(note(36, 0)) == []
    assert r.handle(note(37)) == [("blackout", None, "toggle")]
    assert r.handle(mido.Message("note_off", note=37)) == []
    assert r.handle(note(37)) == [("blackout", None, "toggle")]
    assert r.handle(note(38)) == [("freeze", True, "set")]
    assert r.handle(note(38, 0)) == [("freeze", False, "set")]
    assert r.handle(note(39)) == [("zoom", 1.0, "set")]
    assert r.handle(mido.Message("note_off", note=39)) == [("zoom", 0.0, "set")]


def test_cc_buttons_act_on_the_edge():
    r = router(cc=[{"channel": 1, "control": 41, "target": "freeze", "mode": "toggle"}])
    assert r.handle(cc(41, 127)) == [("freeze", None, "toggle")]
    assert r.handle(cc(41, 127)) == [], "held: no repeat"
    assert r.handle(cc(41, 0)) == []
    assert r.handle(cc(41, 100)) == [("freeze", None, "toggle")]


def test_program_change_picks_a_number():
    r = router(program=[{"target": "seed"}])
    assert r.handle(mido.Message("program_change", program=12)) == [("seed", 12, "set")]


def test_sysex_clock_and_unmapped_messages_are_ignored():
    r = router(cc=[{"channel": 1, "control": 21, "target": "zoom"}])
    for msg in (
        mido.Message("sysex", data=[1, 2, 3]),
        mido.Message("clock"),
        mido.Message("start"),
        mido.Message("aftertouch", value=3),
        cc(99, 5),
        note(60),
        mido.Message("pitchwheel", pitch=100),
    ):
        assert r.handle(msg) == []
    assert r.ignored == 7 and r.received == 7


def test_pickup_waits_until_the_knob_reaches_the_value():
    r = router(takeover="pickup", cc=[{"channel": 1, "control": 21, "target": "zoom"}])
    r.targets["zoom"] = 0.0  # the current value; the knob is at the far left
    assert r.handle(cc(21, 0)) == [] and r.handle(cc(21, 30)) == []
    assert r.pending_pickups() == ["zoom"]
    (op,) = r.handle(cc(21, 70))  # crossed 0.0 (CC 63.5) on the way up: picked up
    assert op[0] == "zoom" and op[1] == pytest.approx(-1 + 2 * 70 / 127)
    r.targets["zoom"] = op[1]
    assert r.handle(cc(21, 72)), "now it follows"
    r.targets["zoom"] = -0.9  # a voice command moved it elsewhere
    assert r.handle(cc(21, 75)) == [], "the knob has to pick it up again"
    assert r.handle(cc(21, 3)), "crossing -0.9 on the way down picks it up"
    assert r.waiting == 3


def test_jump_takeover_applies_at_once():
    r = router(cc=[{"channel": 1, "control": 21, "target": "zoom"}])
    r.targets["zoom"] = 0.0
    assert r.handle(cc(21, 0)) == [("zoom", -1.0, "set")]


def test_feedback_lights_buttons_and_moves_faders():
    r = router(
        cc=[
            {"channel": 1, "control": 0, "target": "brightness"},
            {"channel": 1, "control": 48, "target": "blackout", "mode": "toggle", "led": [127, 0]},
        ],
        note=[{"channel": 1, "note": 1, "target": "freeze", "mode": "toggle", "led": [21, 0]}],
    )
    assert [m.bytes() for m in r.feedback("blackout", True)] == [[0xB0, 48, 127]]
    assert [m.bytes() for m in r.feedback("freeze", False)] == [[0x90, 1, 0]]
    assert [m.bytes() for m in r.feedback("brightness", 0.5)] == [[0xB0, 0, 64]]


def test_port_names_match_by_part():
    names = ["Midi Through:0", "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"]
    assert match_port("nanokontrol", names) == names[1]
    assert match_port("Midi Through:0", names) == names[0]
    assert match_port("apc", names) is None


def test_port_names_match_by_words_when_no_part_matches():
    alsa = [
        "APC mini mk2:APC mini mk2 APC mini mk2 Notes 20:1",
        "APC mini mk2:APC mini mk2 APC mini mk2 Contr 20:0",
    ]
    jack = ["system:midi_capture_2 APC mini mk2 Notes", "system:midi_capture_1 APC mini mk2 Control"]
    for names in (alsa, jack):
        assert match_port("APC mini mk2 Contr", names) == names[1], "a part, at once"
        assert match_port("apc CONTR", names) == names[1], "each word, any case"
        assert match_port("APC mini mk2", names) == names[0], "a part: the first that has it"
    assert match_port("apc notes control", alsa + jack) is None, "every word has to be there"
    assert match_port("   ", alsa) is None


def test_without_a_midi_system_vj_says_so_once_and_shows_on():
    """No ALSA sequencer (or no such device): one line, not libasound's errors at every port listing."""
    out = vj(
        "run",
        "--headless",
        "--seconds",
        "3",
        "--no-osc",
        "--midi-in",
        "vj-no-such-device",
        "--report",
        "-",
        env={"MIDO_BACKEND": "mido.backends.rtmidi"},  # the default: ALSA on Linux
    )
    assert out.returncode == 0, out.stderr[-2000:]
    noisy = [line for line in out.stderr.splitlines() if "alsa" in line.lower() or "rtmidi" in line.lower()]
    assert len(noisy) <= 1, out.stderr[-2000:]
    assert "MIDI device 'vj-no-such-device'" in out.stderr
    report = json.loads(out.stdout)
    assert report["midi"]["connected"] is False and report["midi"]["port"] is None


# -- a real transport: rtmidi ports on a JACK server with the dummy driver ---------------------------------------------
@pytest.fixture
def controller(jack):
    """A virtual MIDI controller: an rtmidi output port vj can open as its input."""
    mido.set_backend(JACK, load=True)
    name = f"vj-test-{random.randrange(10**6)}"
    port = mido.open_output(name, virtual=True)
    yield name, port
    port.close()


def contract_mapping(tmp_path: Path) -> Path:
    path = tmp_path / "zoom.toml"
    path.write_text('[[midi.cc]]\nchannel = 1\ncontrol = 21\ntarget = "zoom"\nrange = [-1.0, 1.0]\n')
    return path


def wait_for_child_input(proc, name: str, timeout: float = 120) -> None:
    """Until the vj child process's MIDI input is connected to the controller ``name`` (JACK's graph says)."""
    from vj.control.midi_port import JackGraph

    full = next(n for n in mido.get_input_names() if name in n)
    graph = JackGraph.shared()
    deadline = time.monotonic() + timeout
    while not graph.connected(f"vj-midi-{proc.pid}-1:in", full):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "the show never connected its MIDI input"
        time.sleep(0.05)


def lines_of(proc) -> queue.Queue:
    """The child's standard output, line by line, as it comes (None at the end)."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def expect(lines: queue.Queue, text: str, timeout: float = 120) -> str:
    """Read lines until one holds ``text``; everything read, for later asserts."""
    seen = ""
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, f"ended before saying {text!r}: {seen[-1000:]}"
        seen += line
        if text in line:
            return seen


def run_show(sources, frames=60, at=None, seconds=None) -> tuple[Show, dict]:
    cfg = ShowConfig(
        size=(160, 90), gen_size=(64, 64), headless=True, frames=None if seconds else frames, seconds=seconds
    )
    show = Show(cfg)
    for s in sources:
        show.add_source(s)
    for n, action in (at or {}).items():
        show.on_frame.append(lambda s, n=n, action=action: action() if s.frames == n else None)
    return show, show.run()


def test_a_cc_through_a_real_port_sets_the_parameter(controller, tmp_path):
    name, port = controller
    midi = MidiInput(name, load_mapping(contract_mapping(tmp_path)), backend=JACK)
    _, report = run_show([midi], at={10: lambda: port.send(cc(21, 127))})
    assert report["params"]["zoom"] == 1.0
    assert report["events"]["midi"] == 1 and report["midi"]["connected"] and name in report["midi"]["port"]


def test_the_device_can_vanish_and_come_back(controller, tmp_path):
    name, port = controller
    midi = MidiInput(name, load_mapping(contract_mapping(tmp_path)), backend=JACK)
    state = {}

    def unplug():
        port.close()

    def replug():
        state["port"] = mido.open_output(name, virtual=True)

    _, report = run_show(
        [midi],
        seconds=6.0,
        at={
            10: unplug,
            150: replug,
            300: lambda: state["port"].send(cc(21, 0)),
        },
    )
    state["port"].close()
    assert report["midi"]["disconnects"] == 1 and report["midi"]["connects"] == 2
    assert report["params"]["zoom"] == -1.0, "the control works again after the device came back"


def test_leds_follow_changes_from_any_source(controller, tmp_path):
    name, _ = controller
    leds = mido.open_input(f"{name}-leds", virtual=True)  # stands in for the controller's LED input
    mapping = tmp_path / "leds.toml"
    mapping.write_text('[[midi.note]]\nchannel = 1\nnote = 1\ntarget = "blackout"\nmode = "toggle"\nled = [21, 0]\n')
    midi = MidiInput(name, load_mapping(mapping), out_query=f"{name}-leds", backend=JACK)
    show = Show(ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, frames=100_000))
    show.add_source(midi)
    got: list[list[int]] = []
    show.on_frame.append(lambda s: s.bus.post("osc", "blackout", True) if s.frames == 10 else None)
    show.on_frame.append(lambda s: got.extend(m.bytes() for m in leds.iter_pending()))
    show.on_frame.append(lambda s: s.stop() if [0x90, 1, 21] in got else None)  # waits on the LED, not a clock
    try:
        report = show.run()
    finally:
        leds.close()
    assert report["frames"] < 100_000
    assert got[0] == [0x90, 1, 0], "the LED shows the state at the start"
    assert [0x90, 1, 21] in got, "blackout set over OSC lit the pad"


def test_fuzz_ten_thousand_midi_messages(controller, tmp_path):
    name, port = controller
    midi = MidiInput(name, load_mapping("nanokontrol2"), backend=JACK)
    rng = random.Random(3)
    raw = port._rt  # the rtmidi port itself: raw bytes, including ones mido would never build
    done = threading.Event()

    def flood() -> None:
        for i in range(10_000):
            kind = rng.random()
            if kind < 0.5:
                raw.send_message([0xB0 | rng.randrange(16), rng.randrange(128), rng.randrange(128)])
            elif kind < 0.65:
                raw.send_message([rng.choice([0x80, 0x90]) | rng.randrange(16), rng.randrange(128), rng.randrange(128)])
            elif kind < 0.75:
                raw.send_message([0xF0, *(rng.randrange(128) for _ in range(rng.randrange(1, 20))), 0xF7])
            elif kind < 0.85:
                raw.send_message([rng.choice([0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF])])
            elif kind < 0.95:
                raw.send_message([0xC0 | rng.randrange(16), rng.randrange(128)])
            else:  # out-of-range data bytes
                raw.send_message([0xB0, rng.randrange(128, 256), rng.randrange(128, 256)])
            if i % 10 == 9:
                time.sleep(0.002)  # 5000 messages/s at most (DIN MIDI carries ~1000): JACK's buffers keep up
        done.set()

    show = Show(ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, seconds=60))
    show.add_source(midi)
    finished: list[int] = []

    def watch(s: Show) -> None:
        if s.frames == 10:
            threading.Thread(target=flood).start()
        if done.is_set() and not finished:
            finished.append(s.frames)
        if finished and s.frames >= finished[0] + 30 and midi._incoming.empty():  # the last ones landed
            s.stop()

    show.on_frame.append(watch)
    report = show.run()
    assert show.elapsed < 60 and report["frames"] > 40, "the show kept going"
    assert report["midi"]["received"] > 8000, "the messages arrived"
    assert report["midi"]["ignored"] > 1000, "sysex, clock and unmapped controls were counted and ignored"
    for spec in PARAMS:
        if spec.kind in ("float", "int"):
            value = report["params"][spec.name]
            assert math.isfinite(value) and spec.lo <= value <= spec.hi, spec.name
    json.dumps(report)


def test_vj_run_with_a_mapping_file_and_a_cc(controller, tmp_path):
    name, port = controller
    proc = start(
        "run",
        "--headless",
        "--seconds",
        "8",
        "--no-osc",
        "--mapping",
        str(contract_mapping(tmp_path)),
        "--midi-in",
        name,
        "--midi-backend",
        JACK,
        "--report",
        "-",
    )
    wait_for_child_input(proc, name)  # the show's input is connected: no guessing how long start-up takes
    port.send(cc(21, 127))
    report, err = finish(proc, timeout=120)
    assert report["params"]["zoom"] == 1.0, err
    assert report["events"]["midi"] >= 1


def test_midi_learn_writes_a_mapping_that_loads(controller, tmp_path):
    name, port = controller
    out_file = tmp_path / "learned.toml"
    proc = start("midi", "learn", "--midi-in", name, "--midi-backend", JACK, "--out", str(out_file), stdin=True)
    lines = lines_of(proc)
    said = expect(lines, "listening to")  # each step waits for what the dialogue says, not for a clock
    port.send(cc(21, 90))
    said += expect(lines, "heard CC 21")
    proc.stdin.write("zom\nzoom\n\n-0.5 0.5\n")  # a typo first: it asks again
    proc.stdin.flush()
    said += expect(lines, "move the next control")
    port.send(note(36))
    said += expect(lines, "heard note 36")
    proc.stdin.write("blackout\n\n")
    proc.stdin.flush()
    said += expect(lines, "move the next control")
    proc.stdin.close()  # ends it
    proc.wait(timeout=60)
    out = said + "".join(iter(lines.get, None))
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert "did you mean 'zoom'" in out
    m = load_mapping(out_file)
    (knob,) = m.cc
    (pad,) = m.notes
    assert (knob.control, knob.target.name, knob.lo, knob.hi) == (21, "zoom", -0.5, 0.5)
    assert (pad.note, pad.target.name, pad.mode) == (36, "blackout", "toggle")
    assert m.device and name in m.device


def test_the_hud_reads_pick_up_state_while_the_midi_thread_changes_it(controller, tmp_path):
    """The pick-up table lives on the MIDI thread alone; the loop's side only reads what that thread publishes."""
    name, port = controller
    mapping = tmp_path / "pickup.toml"
    mapping.write_text(
        '[midi]\ntakeover = "pickup"\n'
        + "".join(
            f'[[midi.cc]]\nchannel = 1\ncontrol = {20 + i}\ntarget = "{t}"\n'
            for i, t in enumerate(["zoom", "rotate", "strength", "chaos", "speed"])
        )
    )
    midi = MidiInput(name, load_mapping(mapping), backend=JACK)
    bus = ControlBus()
    midi.start(bus)
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop_side() -> None:
        rng = random.Random(5)
        try:
            while not stop.is_set():
                midi.status()
                midi.report()
                midi.tell("changed", {"zoom": rng.uniform(-1, 1), "rotate": rng.uniform(-1, 1)})
                time.sleep(0.0005)  # a loop far faster than 60 fps, yet one that lets the other threads run
        except BaseException as e:  # noqa: BLE001 - the test reports whatever it was
            errors.append(e)

    t = threading.Thread(target=loop_side)
    t.start()
    try:
        rng = random.Random(6)
        for i in range(3000):
            port.send(mido.Message("control_change", control=20 + rng.randrange(5), value=rng.randrange(128)))
            if i % 10 == 9:
                time.sleep(0.002)
        deadline = time.monotonic() + 30
        while midi.router.received < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
        midi.stop()
    assert not errors, errors
    assert midi.router.received >= 1000 and midi.health()["restarts"] == 0


def test_a_lone_sysex_start_does_not_mute_the_controller(controller, tmp_path):
    """0xF0 with no 0xF7: rtmidi would swallow every later message; the flush gives them back, in order."""
    name, port = controller
    midi = MidiInput(name, load_mapping(contract_mapping(tmp_path)), backend=JACK)
    show = Show(ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, seconds=60))
    show.add_source(midi)
    seen: list[float] = []

    def watch(s: Show) -> None:
        if s.frames == 10:
            port._rt.send_message([0xF0, 0x7E])  # a dump cut short
            port.send(cc(21, 127))  # swallowed by the open sysex...
            port.send(cc(21, 0))  # ...and this one too
        zoom = s.params.target("zoom")
        if s.frames > 10 and (not seen or seen[-1] != zoom):
            seen.append(zoom)
        if s.frames > 10 and zoom == -1.0:
            s.stop()

    show.on_frame.append(watch)
    report = show.run()
    assert show.elapsed < 60, "MIDI stayed muted after a lone 0xF0"
    assert report["params"]["zoom"] == -1.0 and report["midi"]["recovered_from_sysex"] == 2
    assert report["midi"]["rejected"] == 0


def test_messages_after_a_lone_sysex_start_keep_working(controller, tmp_path):
    """The flush ends the broken sysex even when nothing follows it at once: later knob moves arrive as usual."""
    name, port = controller
    midi = MidiInput(name, load_mapping(contract_mapping(tmp_path)), backend=JACK)
    show = Show(ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, seconds=60))
    show.add_source(midi)
    flushed: list[int] = []

    def watch(s: Show) -> None:
        if s.frames == 10:
            port._rt.send_message([0xF0])
            flushed.append(midi.arrived)
        if len(flushed) == 1 and midi._last_flush > 0 and s.frames > 10:
            flushed.append(s.frames)
            port.send(cc(21, 127))
        if s.params.target("zoom") == 1.0:
            s.stop()

    show.on_frame.append(watch)
    report = show.run()
    assert show.elapsed < 60 and report["params"]["zoom"] == 1.0, "MIDI stayed muted after a lone 0xF0"


def test_a_replug_faster_than_a_port_listing_is_reopened(controller, tmp_path):
    """The device vanishes and comes back under the same name between two checks: JACK's graph tells."""
    name, port = controller
    midi = MidiInput(name, load_mapping(contract_mapping(tmp_path)), backend=JACK)
    show = Show(ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, seconds=60))
    show.add_source(midi)
    state: dict = {}

    def watch(s: Show) -> None:
        if s.frames == 10:
            state["before"] = midi.port_name
            port.close()
            state["port"] = mido.open_output(name, virtual=True)  # back at once, same name
        if "port" in state and midi.connects == 2 and "sent" not in state:
            state["sent"] = s.frames
            state["port"].send(cc(21, 0))
        if s.params.target("zoom") == -1.0:
            s.stop()

    show.on_frame.append(watch)
    try:
        report = show.run()
    finally:
        if "port" in state:
            state["port"].close()
    assert state["before"] == report["midi"]["port"], "the device came back under the same name"
    assert report["midi"]["connects"] == 2 and report["midi"]["disconnects"] == 1
    assert report["params"]["zoom"] == -1.0, "the control works again after the replug"

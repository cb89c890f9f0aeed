"""The shipped controller mappings, as the controllers send and light them."""

import random

import mido
import pytest

from vj.control.mapping import load_mapping
from vj.control.midi import MidiInput, MidiRouter, match_port
from vj.engine.loop import Show, ShowConfig

JACK = "mido.backends.rtmidi/UNIX_JACK"


def cc(control, value, channel=0):
    return mido.Message("control_change", channel=channel, control=control, value=value)


def note(n, velocity=127, channel=0):
    return mido.Message("note_on", channel=channel, note=n, velocity=velocity)


def press(r: MidiRouter, n: int) -> list:
    """A button pressed and let go: what the press did (the release of a trigger or toggle does nothing)."""
    ops = r.handle(note(n))
    assert r.handle(mido.Message("note_off", note=n)) == []
    return ops


def faders(r: MidiRouter, controls: list[int]) -> list[str]:
    """The targets the controls drive, each pushed to the top (with jump takeover, as the router has no values)."""
    return [r.handle(cc(c, 127))[0][0] for c in controls]


def router(name: str) -> MidiRouter:
    return MidiRouter(load_mapping(name))


# -- the routes ----------------------------------------------------------------------------------------------------
def test_apc_mini_mk2_faders_pads_and_scene_buttons():
    r = router("apc-mini-mk2")
    assert faders(r, list(range(48, 57))) == [
        *("zoom", "pan_x", "pan_y", "rotate", "speed", "strength", "chaos", "prompt_blend"),
        "brightness",
    ]
    assert press(r, 0) == [("freeze", None, "toggle")]
    assert press(r, 1) == [("blackout", None, "toggle")]
    assert [press(r, 112 + i) for i in range(8)] == [[("scene", i + 1, "set")] for i in range(8)]
    assert press(r, 6) == [("scene", "previous", "set")] and press(r, 7) == [("scene", "next", "set")]


def test_apc_mini_mk2_pads_light_at_full_brightness_on_channel_7():
    r = router("apc-mini-mk2")
    assert [m.bytes() for m in r.feedback("freeze", True)] == [[0x96, 0, 21]], "note-on, channel 7, green"
    assert [m.bytes() for m in r.feedback("freeze", False)] == [[0x96, 0, 0]]
    assert [m.bytes() for m in r.feedback("blackout", True)] == [[0x96, 1, 5]], "red"
    assert r.feedback("spark", True) == [], "triggers have no LED"


def test_apc_mini_mk1_leds_are_its_own_colours_and_scene_buttons_are_82_to_89():
    r = router("apc-mini")
    assert [m.bytes() for m in r.feedback("freeze", True)] == [[0x90, 0, 1]], "1: green, on channel 1"
    assert [m.bytes() for m in r.feedback("blackout", False)] == [[0x90, 1, 0]]
    assert [press(r, 82 + i) for i in range(8)] == [[("scene", i + 1, "set")] for i in range(8)]
    assert press(r, 112) == [], "the mk2's scene notes are not the mk1's"
    assert faders(r, [48, 56]) == ["zoom", "brightness"]


def test_midimix_columns_master_and_buttons():
    r = router("midimix")
    assert faders(r, [19, 23, 27, 31, 49, 53, 57, 61, 62]) == [
        *("zoom", "pan_x", "pan_y", "rotate", "speed", "strength", "chaos", "prompt_blend"),
        "brightness",
    ]
    assert faders(r, [16, 20, 24, 28]) == [f"layer{n}_opacity" for n in range(1, 5)]
    assert press(r, 1) == [("freeze", None, "toggle")] and press(r, 4) == [("blackout", None, "toggle")]
    assert r.handle(note(10)) == [("ptt", True, "set")], "push-to-talk is on while held"
    assert r.handle(note(10, velocity=0)) == [("ptt", False, "set")]
    assert [press(r, 3 + 3 * i) for i in range(8)] == [[("scene", i + 1, "set")] for i in range(8)], "rec arm"
    assert press(r, 25) == [("scene", "previous", "set")] and press(r, 26) == [("scene", "next", "set")]
    assert [m.bytes() for m in r.feedback("freeze", True)] == [[0x90, 1, 127]]
    assert [m.bytes() for m in r.feedback("record", False)] == [[0x90, 7, 0]]


def test_the_controller_mappings_pick_up_and_name_their_device():
    for name in ("apc-mini-mk2", "apc-mini", "midimix", "nanokontrol2"):
        m = load_mapping(name)
        assert m.device, name
        assert all(r.takeover == "pickup" for r in m.cc if r.mode == "absolute"), name


# -- the APC mini mk2's two ports, as real JACK ports ------------------------------------------------------------
@pytest.fixture(params=["jack", "alsa"])
def mk2(request, jack):
    """Stand-ins for an APC mini mk2's Notes and Control ports (Notes first), named as JACK or ALSA shows them.

    Each port is in a client of this test's own, so a query with the client's name finds only these.
    """
    mido.set_backend(JACK, load=True)
    client = f"vj-mk2-{random.randrange(10**6)}"
    names = (
        ("APC mini mk2 Notes", "APC mini mk2 Control")
        if request.param == "jack"
        else ("APC mini mk2 APC mini mk2 Notes", "APC mini mk2 APC mini mk2 Contr")  # ALSA cuts it short
    )
    ports = [mido.open_output(n, virtual=True, client_name=client) for n in names]
    yield client, ports[0], ports[1]
    for p in ports:
        p.close()


def test_the_mk2_mapping_opens_the_control_port_never_notes(mk2):
    client, _, _ = mk2
    ours = [n for n in mido.get_input_names() if n.startswith(client)]
    assert len(ours) == 2 and any("Notes" in n for n in ours)
    device = load_mapping("apc-mini-mk2").device
    assert device is not None
    found = match_port(device, ours)
    assert found is not None and "Contr" in found
    assert match_port("apc contr", ours) == found, "any case, words in any place"


def test_a_pad_on_the_mk2_toggles_freeze_and_lights_at_full_brightness(mk2):
    client, notes, control = mk2
    # The client's name keeps other shows' ports out; the words still have to find Control, not Notes.
    leds = mido.open_input("APC mini mk2 Control", virtual=True, client_name=f"{client}-leds")
    midi = MidiInput(
        f"{client} APC mini mk2 Contr",
        load_mapping("apc-mini-mk2"),
        out_query=f"{client}-leds APC mini mk2 Contr",
        backend=JACK,
    )
    show = Show(ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, seconds=120))
    show.add_source(midi)
    got: list[list[int]] = []
    lit: list[int] = []  # where in got the pad lit up
    frozen: list[bool] = []

    def tap_pad() -> None:
        control.send(note(0))
        control.send(note(0, velocity=0))  # the mk2 lets go with a note-on at velocity 0

    def watch(s: Show) -> None:
        got.extend(m.bytes() for m in leds.iter_pending())
        if not frozen and midi.connects and got:  # both ports open: feedback is coming through
            frozen.append(False)
            notes.send(note(1))  # blackout's pad, but on the Notes port: not vj's to hear
            tap_pad()
        if not lit and [0x96, 0, 21] in got and s.params.target("freeze") is True:
            lit.append(got.index([0x96, 0, 21]))
            frozen.append(True)
            tap_pad()  # and off again
        if lit and [0x96, 0, 0] in got[lit[0] :] and s.params.target("freeze") is False:
            s.stop()

    show.on_frame.append(watch)
    try:
        report = show.run()
    finally:
        leds.close()
    assert frozen == [False, True], "the pad toggled freeze on"
    assert lit, "its LED came back: note-on on channel 7 (index 6), velocity 21 (green)"
    assert [0x96, 0, 0] in got[lit[0] :], "the second press turned freeze off and the pad dark, on channel 7"
    assert report["params"]["freeze"] is False and report["params"]["blackout"] is False
    assert "Contr" in report["midi"]["port"]

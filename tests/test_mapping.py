from pathlib import Path

import pytest

from tests.child import vj
from vj.control.mapping import MAPPINGS_DIR, load_mapping, parse_mapping, resolve
from vj.errors import ConfigError

SHIPPED = sorted(MAPPINGS_DIR.glob("*.toml"))


def write(tmp_path: Path, text: str, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_mapping(write(tmp_path, text))
    return str(info.value)


def test_the_shipped_mappings_cover_a_default_and_the_controllers():
    names = {p.stem for p in SHIPPED}
    assert {"default", "nanokontrol2", "apc-mini", "apc-mini-mk2", "midimix"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_mapping_loads(path):
    m = load_mapping(path)
    assert m.cc or m.notes or m.osc, "a mapping maps something"


def test_the_minimal_contract_entry():
    m = parse_mapping({"midi": {"cc": [{"channel": 1, "control": 21, "target": "zoom", "range": [-1.0, 1.0]}]}}, "x")
    (cc,) = m.cc
    assert (cc.channel, cc.control, cc.target.name, cc.lo, cc.hi, cc.takeover) == (0, 21, "zoom", -1.0, 1.0, "jump")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[midi.cc]]\nchannel = 1\ncontrol = 1\ntarget = "zoom"\n'
            '[[midi.cc]]\nchannel = 1\ncontrol = 2\ntarget = "zoom"\n'
            '[[midi.cc]]\nchannel = 1\ncontrol = 3\ntarget = "pan_x"\n'
            '[[midi.cc]]\nchannel = 1\ncontrol = 4\ntarget = "zom"\n',
            "m.toml: midi.cc[3].target: unknown parameter or action 'zom' (did you mean 'zoom'?)",
        ),
        (
            '[[midi.cc]]\nchanel = 1\ncontrol = 4\ntarget = "zoom"\n',
            "midi.cc[0].chanel: unknown key 'chanel' (did you mean 'channel'?)",
        ),
        (
            '[[midi.cc]]\nchannel = 17\ncontrol = 4\ntarget = "zoom"\n',
            "midi.cc[0].channel: 17 is out of range (use 1..16)",
        ),
        ('[[midi.cc]]\ncontrol = 4\ntarget = "zoom"\n', "midi.cc[0]: 'channel' is missing (add channel = <1..16>)"),
        (
            '[[midi.cc]]\nchannel = 1\ncontrol = 4\ntarget = "zoom"\nrange = [-2, 1]\n',
            "midi.cc[0].range: -2 is outside zoom's range",
        ),
        (
            '[[midi.cc]]\nchannel = 1\ncontrol = 4\ntarget = "zoom"\nmode = "spin"\n',
            "midi.cc[0].mode: unknown mode 'spin' (choose absolute |",
        ),
        (
            '[[midi.cc]]\nchannel = 1\ncontrol = 40\ntarget = "zoom"\nbits = 14\n',
            "midi.cc[0].control: 40 is out of range (use 0..31)",
        ),
        (
            '[[midi.cc]]\nchannel = 1\ncontrol = 4\ntarget = "prompt"\n',
            "midi.cc[0].target: a knob or fader cannot drive prompt",
        ),
        (
            '[[midi.note]]\nchannel = 1\nnote = 36\ntarget = "zoom"\nmode = "toggle"\n',
            "midi.note[0].mode: toggle needs an on/off parameter",
        ),
        (
            '[[midi.note]]\nchannel = 1\nnote = 36\ntarget = "zoom"\n',
            "midi.note[0].value: a button on zoom (float -1..1) needs a value to set",
        ),
        (
            '[[midi.note]]\nchannel = 1\nnote = 36\ntarget = "stop"\nvalue = 3\n',
            "midi.note[0].value: stop takes no value",
        ),
        (
            '[[midi.note]]\nchannel = 1\nnote = 36\ntarget = "zoom"\nvalue = "fast"\n',
            "midi.note[0].value: zoom needs a number",
        ),
        (
            '[[midi.note]]\nchannel = 1\nnote = 36\ntarget = "hud"\n'
            '[[midi.note]]\nchannel = 1\nnote = 36\ntarget = "stop"\n',
            "midi.note[1]: the same control as midi.note[0]",
        ),
        (
            '[[midi.note]]\nchannel = 1\nnote = 0\ntarget = "freeze"\nmode = "toggle"\nled_channel = 7\n',
            "midi.note[0].led_channel: there is no led to send (add led = [on, off] or remove led_channel)",
        ),
        (
            '[[midi.cc]]\nchannel = 1\ncontrol = 1\ntarget = "freeze"\nmode = "toggle"\nled = [1, 0]\n'
            "led_channel = 0\n",
            "midi.cc[0].led_channel: 0 is out of range (use 1..16)",
        ),
        ('[[midi.program]]\ntarget = "zoom"\n', "midi.program[0].target: program change gives a number"),
        ('[[osc.route]]\naddress = "fader"\ntarget = "zoom"\n', "osc.route[0].address: expected an OSC address"),
        ('[midi]\ntakeover = "grab"\n', "midi.takeover: unknown takeover 'grab' (choose jump | pickup)"),
        ("[midi]\ncc = 3\n", "midi.cc: expected an array of tables ([[midi.cc]]), got int"),
        ("[video]\nx = 1\n", "video: unknown key 'video'"),
        ("[[midi.cc]\nchannel = 1\n", "m.toml: not valid TOML"),
    ],
)
def test_errors_name_file_key_path_and_fix(tmp_path, text, expected):
    assert expected in error(tmp_path, text)


def test_led_channel_counts_from_1_in_the_file_and_defaults_to_the_entrys_own():
    m = parse_mapping(
        {
            "midi": {
                "note": [
                    {"channel": 1, "note": 0, "target": "freeze", "mode": "toggle", "led": [21, 0], "led_channel": 7},
                    {"channel": 2, "note": 1, "target": "blackout", "mode": "toggle", "led": [127, 0]},
                ]
            }
        },
        "x",
    )
    assert [(n.channel, n.led, n.led_channel) for n in m.notes] == [(0, (21, 0), 6), (1, (127, 0), None)]


def test_a_missing_mapping_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"no such mapping file.*nanokontrol2"):
        resolve("nanokontrol3")


def test_bare_names_find_shipped_mappings():
    assert resolve("apc-mini").name == "apc-mini.toml"


def test_vj_mapping_check_exits_2_with_the_message(tmp_path):
    bad = write(tmp_path, '[[midi.cc]]\nchannel = 1\ncontrol = 4\ntarget = "zom"\n')
    out = vj("mapping", "check", str(bad))
    assert out.returncode == 2
    assert (
        out.stderr.strip() == f"vj: {bad}: midi.cc[0].target: unknown parameter or action 'zom' (did you mean 'zoom'?)"
    )
    good = vj("mapping", "check", "default")
    assert good.returncode == 0 and "ok" in good.stdout


def test_vj_run_refuses_a_broken_mapping(tmp_path):
    bad = write(tmp_path, '[[midi.cc]]\nchannel = 1\ncontrol = 4\ntarget = "zom"\n')
    out = vj("run", "--headless", "--frames", "2", "--mapping", str(bad))
    assert out.returncode == 2 and "midi.cc[0].target" in out.stderr and "Traceback" not in out.stderr

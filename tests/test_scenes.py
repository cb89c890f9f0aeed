import shutil
import subprocess
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from tests.child import finish, start, vj
from vj.control.mapping import parse_mapping
from vj.control.osc import OscServer
from vj.engine.clock import SteppedClock
from vj.engine.director import Director
from vj.engine.loop import Show, ShowConfig
from vj.errors import ConfigError, ParamError
from vj.scenes import SCENES_DIR, load_scene, load_scenes, parse_scene


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_scene(write(tmp_path, "bad.toml", text))
    return str(info.value)


# -- files --------------------------------------------------------------------------------------------------------
def test_the_shipped_scenes_load_and_list_in_file_order():
    scenes = load_scenes(SCENES_DIR)
    assert len(scenes) >= 5
    assert [Path(s.file).name for s in scenes] == sorted(Path(s.file).name for s in scenes)
    assert any(s.kind == "replay" for s in scenes)
    out = vj("scenes", "list")
    assert out.stdout.splitlines() == [s.name for s in scenes]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('promt = "x"\n', "bad.toml: promt: unknown key 'promt' (did you mean 'prompt'?)"),
        ('prompt = "x"\n[params]\nzom = 0.2\n', "bad.toml: params.zom: unknown parameter 'zom' (did you mean 'zoom'?)"),
        ('[params]\nzoom = "fast"\n', "bad.toml: params.zoom: zoom needs a number"),
        ("[params]\nspark = 1\n", "params.spark: spark is a trigger, not a setting"),
        ('kind = "slideshow"\n', "bad.toml: kind: unknown scene kind 'slideshow' (choose dream | replay)"),
        ('prompt = "a"\ncycle = 10\n', "bad.toml: cycle: needs at least two prompts"),
        ('prompts = ["a", "b"]\ncycle = 10\nblend = 0.5\n', "blend: cycle and blend are set"),
        ("transition = 500\n", "bad.toml: transition: 500 is out of range (use 0..60)"),
        ('generator = "dalle"\n', "bad.toml: generator.name: unknown generator 'dalle'"),
        ('generator = { name = "lcm", stepz = 2 }\n', "bad.toml: generator.stepz: 'lcm' has no option 'stepz'"),
        ('[[layers]]\nkind = "video"\nsource = "missing.mp4"\n', "bad.toml: layers[0].source: no such file"),
        (
            '[[mapping.midi.cc]]\nchannel = 1\ncontrol = 7\ntarget = "zom"\n',
            "bad.toml: mapping.midi.cc[0].target: unknown parameter or action 'zom' (did you mean 'zoom'?)",
        ),
        ("[replay]\nseconds = 5\n", 'replay: replay options belong to a replay scene (add kind = "replay")'),
        ('kind = "replay"\n[replay]\ncount = 0\n', "replay.count: expected a whole number 1..1000, got 0"),
        ('prompt = "x\n', "bad.toml: not valid TOML"),
    ],
)
def test_scene_errors_name_file_key_and_fix(tmp_path, text, expected):
    assert expected in error(tmp_path, text)


def test_layer_paths_are_relative_to_the_scene_file(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "smoke.mp4").write_bytes(b"x")
    scene = load_scene(write(tmp_path, "s.toml", '[[layers]]\nkind = "video"\nsource = "clips/smoke.mp4"\n'))
    assert scene.layers is not None and scene.layers[0].source == str(tmp_path / "clips" / "smoke.mp4")


def test_two_scenes_cannot_share_a_name(tmp_path):
    write(tmp_path, "a.toml", 'name = "Same"\n')
    write(tmp_path, "b.toml", 'name = "same"\n')
    with pytest.raises(ConfigError, match="also used by"):
        load_scenes(tmp_path)


def test_vj_run_refuses_a_broken_scene_folder(tmp_path):
    write(tmp_path, "01.toml", "[params]\nzom = 1\n")
    out = vj("run", "--headless", "--frames", "2", "--scenes", str(tmp_path))
    assert out.returncode == 2 and "01.toml: params.zom: unknown parameter" in out.stderr


# -- choosing a scene -------------------------------------------------------------------------------------------------
def director(tmp_path: Path) -> Director:
    for n, name in enumerate(["Alpha", "Beta", "Gamma"], 1):
        write(tmp_path, f"{n:02d}-{name.lower()}.toml", f'name = "{name}"\nprompt = "{name.lower()}"\n')
    return Director(load_scenes(tmp_path), tmp_path)


def test_scenes_by_number_name_stem_next_and_previous(tmp_path):
    d = director(tmp_path)
    assert d.resolve(2).name == "Beta" and d.resolve("2").name == "Beta" and d.resolve(3.0).name == "Gamma"
    assert d.resolve("gamma").name == "Gamma" and d.resolve("01-alpha").name == "Alpha"
    assert d.resolve("next").name == "Alpha" and d.resolve("previous").name == "Gamma", "from nothing"
    d.active = d.scenes[2]
    assert d.resolve("next").name == "Alpha", "wraps round"
    with pytest.raises(ParamError, match="no scene 4: there are 3"):
        d.resolve(4)
    with pytest.raises(ParamError, match="did you mean 'Beta'"):
        d.resolve("Betta")


# -- a running show ---------------------------------------------------------------------------------------------------
def show(tmp_path: Path, clock=None, **kw) -> Show:
    cfg = ShowConfig(
        size=(160, 90), gen_size=(64, 64), headless=True, scenes=load_scenes(tmp_path), scenes_dir=tmp_path, **kw
    )
    return Show(cfg, clock=clock)


def scenes_with_motion(tmp_path: Path) -> None:
    write(
        tmp_path,
        "01-calm.toml",
        'name = "Calm"\nprompt = "a forest made of glass"\ntransition = 1.0\n[params]\nzoom = 0.0\nchaos = 0.9\n',
    )
    write(
        tmp_path,
        "02-fast.toml",
        'name = "Fast"\nprompt = "fire and lava"\ntransition = 1.0\n[params]\nzoom = 0.8\nrotate = 0.5\n',
    )


def test_switching_by_every_source(tmp_path):
    scenes_with_motion(tmp_path)
    from vj.control.midi import MidiRouter

    router = MidiRouter(parse_mapping({"midi": {"program": [{"target": "scene"}]}}, "m"))
    import mido

    names = []
    s = show(tmp_path, frames=60)

    def drive(s: Show) -> None:
        pg = s.window.pg
        if s.frames == 5:
            pg.event.post(pg.event.Event(pg.KEYDOWN, key=pg.K_2, unicode="2", mod=0))  # keys
        if s.frames == 15:
            for target, value, op in router.handle(mido.Message("program_change", program=0)):  # MIDI
                s.bus.post("midi", target, value, op)
        if s.frames == 25:
            s.bus.post("osc", "scene", "Fast")  # OSC, by name
        if s.frames == 35:
            s.bus.post("voice", "scene", "previous")  # voice
        if s.frames in (10, 20, 30, 40):
            names.append(s.director.active.name)

    s.on_frame.append(drive)
    report = s.run()
    assert names == ["Fast", "Calm", "Fast", "Calm"]
    assert report["scene"] == "Calm" and report["scene_switches"] == 4
    assert report["events"]["scene"] > 0


def test_a_switch_glides_numbers_and_crossfades_without_a_stall(tmp_path):
    scenes_with_motion(tmp_path)
    s = show(tmp_path, frames=150, scene=1, clock=SteppedClock(paced=True))  # frame k at k/60 s, however busy
    zooms, pictures = [], []

    def watch(s: Show) -> None:
        if s.frames == 40:
            s.bus.post("keys", "scene", 2)
        if 38 <= s.frames <= 110:
            zooms.append(s.params["zoom"])
            pictures.append(s.window.screenshot().astype(np.int16))

    s.on_frame.append(watch)
    report = s.run()
    assert report["frames"] == 150, "the display kept its pace"
    assert zooms[0] == 0.0 and zooms[-1] == pytest.approx(0.8, abs=0.05)
    assert all(b >= a - 1e-9 for a, b in pairwise(zooms)), "a glide, not a jump"
    assert 0.1 < zooms[30] < 0.75, "half a second in, half way there"
    steps = [np.abs(b - a).mean() for a, b in pairwise(pictures)]
    total = np.abs(pictures[-1] - pictures[0]).mean()
    assert max(steps) < 0.3 * total, "the picture crossfades: no frame carries the change"


def test_a_scene_sets_the_whole_look_but_leaves_the_performers_settings(tmp_path):
    scenes_with_motion(tmp_path)
    s = show(tmp_path, frames=100, scene=1, params={"brightness": 0.6})
    s.on_frame.append(lambda s: s.bus.post("keys", "scene", 2) if s.frames == 10 else None)
    report = s.run()
    p = report["params"]
    assert p["zoom"] == 0.8 and p["rotate"] == 0.5
    assert p["chaos"] == 0.3, "Fast does not set chaos: back to the default, not Calm's 0.9"
    assert p["brightness"] == 0.6, "the master fader is the performer's"
    assert p["prompt"] == "fire and lava"


def test_hot_reload_takes_a_good_edit_and_keeps_the_old_scene_on_a_bad_one(tmp_path):
    scenes_with_motion(tmp_path)
    s = show(tmp_path, frames=240, scene=2)
    seen = {}

    def edit(s: Show) -> None:
        if s.frames == 20:
            time.sleep(0.01)
            write(tmp_path, "02-fast.toml", 'name = "Fast"\nprompt = "fire and lava"\n[params]\nzoom = -0.4\n')
        if s.frames == 100:
            seen["good"] = s.params.target("zoom")
            write(tmp_path, "02-fast.toml", 'name = "Fast"\nprompt = "fire and lava"\n[params]\nzoom = "fast"\n')
        if s.frames == 180:
            seen["bad"] = s.params.target("zoom")
            seen["errors"] = dict(s.director.errors)

    s.on_frame.append(edit)
    report = s.run()
    assert seen["good"] == -0.4, "the edit was applied live"
    assert seen["bad"] == -0.4, "a broken edit changes nothing"
    (message,) = seen["errors"].values()
    assert "02-fast.toml: params.zoom: zoom needs a number" in message
    assert report["scene"] == "Fast" and report["scene_errors"]


def test_a_prompt_cycle_fades_through_the_prompt_fader(tmp_path):
    write(
        tmp_path,
        "01.toml",
        'name = "Cycle"\nprompts = ["fire and lava", "deep blue ocean"]\ncycle = 1.0\ntransition = 0.5\n',
    )
    s = show(tmp_path, frames=150, scene=1, clock=SteppedClock(paced=True))  # frame k at k/60 s, however busy
    prompts, blends = [], []
    s.on_frame.append(lambda s: (prompts.append(s.params["prompt"]), blends.append(s.params["prompt_blend"])))
    s.run()
    assert prompts[0] == "fire and lava" and "deep blue ocean" in prompts
    i = prompts.index("deep blue ocean")
    assert 0.9 < max(blends[:i]) <= 1.0, "the fader went most of the way first"
    assert blends[i] == 0.0, "then the new prompt took over with the fader back at 0"


def test_a_scene_can_change_the_generator_and_the_layers(tmp_path):
    write(
        tmp_path,
        "01.toml",
        'name = "Decay"\ngenerator = "decay"\n[[layers]]\nkind = "solid"\nsource = "#ff0000"\nopacity = 0.7\n',
    )
    write(tmp_path, "02.toml", 'name = "Back"\n')
    s = show(tmp_path, frames=120)
    seen = {}

    def watch(s: Show) -> None:
        if s.frames == 10:
            s.bus.post("osc", "scene", 1)
        if s.frames == 60:
            seen["gen"] = s.worker.stats.name
            seen["layers"] = [layer.spec.kind for layer in s.mixer.layers]
            s.bus.post("osc", "scene", 2)

    s.on_frame.append(watch)
    report = s.run()
    assert seen["gen"] == "decay" and seen["layers"] == ["solid"]
    assert report["generator"]["restarts"] == 0, "a switch is not a restart"
    assert s.worker.stats.name == "dream", "a scene without a generator goes back to the show's own"
    assert report["params"]["layer1_opacity"] == 0.7


def test_a_scene_refines_the_command_line_s_generator_options(tmp_path):
    write(tmp_path, "01.toml", 'name = "Two steps"\ngenerator = { name = "tests.gens:Solid", steps = 2 }\n')
    write(tmp_path, "02.toml", 'name = "Other"\ngenerator = "decay"\n')
    s = show(tmp_path, frames=80, generator="tests.gens:Solid", generator_options={"model": "m", "steps": 4})
    seen = {}

    def watch(s: Show) -> None:
        if s.frames == 5:
            s.bus.post("osc", "scene", 1)
        if s.frames == 30:
            seen["one"] = s._generator_now
            s.bus.post("osc", "scene", 2)
        if s.frames == 60:
            seen["two"] = s._generator_now

    s.on_frame.append(watch)
    s.run()
    assert seen["one"] == ("tests.gens:Solid", {"model": "m", "steps": 2}), "the model stays, the scene's steps win"
    assert seen["two"] == ("decay", {}), "another generator does not take the model options"


def test_a_scene_lays_its_mapping_over_the_show_s(tmp_path):
    write(
        tmp_path,
        "01.toml",
        'name = "Mapped"\n[[mapping.osc.route]]\naddress = "/knob"\ntarget = "rotate"\nrange = [-1.0, 1.0]\n',
    )
    osc = OscServer("127.0.0.1", 0, parse_mapping({}, "base"))
    osc.bind()
    s = show(tmp_path, frames=20, mapping=parse_mapping({}, "base"))
    s.add_source(osc)
    s.on_frame.append(lambda s: s.bus.post("keys", "scene", 1) if s.frames == 5 else None)
    s.run()
    assert osc.router.route("/knob", [1.0]) == [("rotate", 1.0, "set")]


def test_an_unknown_start_scene_is_a_config_error(tmp_path):
    scenes_with_motion(tmp_path)
    with pytest.raises(ConfigError, match="--scene: no scene 9"):
        show(tmp_path, scene=9)


@pytest.mark.skipif(not shutil.which("oscsend"), reason="needs liblo-tools (.ci/run installs it)")
def test_oscsend_switches_the_reports_scene(tmp_path):
    proc = start("run", "--headless", "--seconds", "6", "--dreams", str(tmp_path / "d"), "--report", "-")
    for _ in range(5):
        time.sleep(0.5)
        subprocess.run(["oscsend", "127.0.0.1", "9000", "/vj/scene", "i", "2"], check=True, timeout=10)
    report, err = finish(proc)
    assert report["scene"] == load_scenes(SCENES_DIR)[1].name, err
    assert report["scene_number"] == 2


def test_parse_scene_takes_parsed_toml():
    scene = parse_scene({"name": "X", "prompts": ["a", "b"], "blend": 0.25, "params": {"zoom": 2.0}}, "x.toml")
    assert scene.blend == 0.25 and scene.params["zoom"] == 1.0, "values are clamped like any other"

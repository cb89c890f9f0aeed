"""Hostile files: whatever a scene or mapping file holds, vj says what is wrong in one line and exits 2 (or, on a
live reload, keeps the old scene) — never a traceback, a hang or a crashed HUD."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.child import vj
from vj.control.mapping import load_mapping
from vj.errors import ConfigError
from vj.scenes import load_scene

DEEP = "a = " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_TABLES = "x = " + "{ y = " * 3000 + "1" + " }" * 3000 + "\n"

SCENES = {
    "nul in the name": ('name = "Neon\\u0000rain"\n', "control character"),
    "escape in a prompt": ('name = "A"\nprompt = "x\\u001b[31m"\n', "control character"),
    "nul in a key": ('name = "A"\n[params]\n"zo\\u0000om" = 1.0\n', "control character"),
    "arrays 5000 deep": (DEEP, "nested"),
    "tables 3000 deep": (DEEP_TABLES, "nested"),
}


@pytest.mark.parametrize("name", list(SCENES))
def test_a_hostile_scene_is_a_config_error_with_file_and_fix(tmp_path, name):
    text, why = SCENES[name]
    path = tmp_path / "01-bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=why) as e:
        load_scene(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("name", ["nul in the name", "arrays 5000 deep"])
def test_vj_scenes_check_says_it_in_one_line(tmp_path, name):
    (tmp_path / "01-bad.toml").write_text(SCENES[name][0])
    out = vj("scenes", "check", "--scenes", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "01-bad.toml" in out.stderr


def test_vj_run_with_a_deep_scene_folder_exits_2(tmp_path):
    (tmp_path / "01-bad.toml").write_text(DEEP)
    out = vj("run", "--headless", "--frames", "5", "--scenes", str(tmp_path), "--no-osc")
    assert out.returncode == 2 and "Traceback" not in out.stderr and "nested" in out.stderr


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (DEEP, "nested"),
        ('[[osc.route]]\naddress = "/x/quit"\ntarget = "quit"\n', "cannot be reached from a controller"),
        ('[[midi.note]]\nchannel = 1\nnote = 36\ntarget = "quit"\n', "cannot be reached from a controller"),
        ('[[osc.route]]\naddress = "/x\\u0000"\ntarget = "zoom"\n', "control character"),
    ],
)
def test_a_hostile_mapping_is_refused_at_load(tmp_path, text, why):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=why):
        load_mapping(path)
    out = vj("mapping", "check", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr and "bad.toml" in out.stderr


def test_files_too_big_or_not_text_are_refused(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text('name = "A"\n' + "# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="too big"):
        load_scene(big)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'name = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_scene(binary)


def test_a_hostile_edit_during_the_show_keeps_the_old_scene(tmp_path):
    from vj.engine.director import Director
    from vj.scenes import load_scenes

    path = tmp_path / "01-a.toml"
    path.write_text('name = "A"\nprompt = "a calm sea"\n')
    director = Director(load_scenes(tmp_path), tmp_path)

    class Stage:
        def apply_scene(self, scene, reload):
            self.scene = scene

        def next_prompt(self, prompt, transition):
            pass

    stage = Stage()
    director.switch(1, stage, 0.0)
    path.write_text(DEEP)
    import os

    os.utime(path, (1, 1))  # a new mtime whatever the clock's resolution
    director.reload(stage, 1.0)
    assert director.active is not None and director.active.name == "A"
    assert "nested" in next(iter(director.errors.values()))
    assert Path(director.active.file) == path


def _junk(rng, depth=0):
    """A random TOML value: every type TOML has, odd numbers, nesting."""
    kinds = ["int", "float", "str", "bool", "list", "table"] if depth < 3 else ["int", "float", "str", "bool"]
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, 1, -1, 7, 14, 16, 17, 127, 128, 10**12])
    if kind == "float":
        return rng.choice([0.0, 0.5, -2.0, 1e300, float("nan"), float("inf")])
    if kind == "str":
        return rng.choice(["", "zoom", "scene", "/a", "x y", "#ff0000", "video", "toggle", "lcm"])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "list":
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["channel", "target", "kind", "x"]): _junk(rng, depth + 1) for _ in range(rng.randrange(3))}


def _tables(rng, keys):
    return {k: _junk(rng) for k in rng.sample(keys, rng.randrange(1, len(keys)))}


def test_random_tables_give_a_config_error_or_a_mapping_never_anything_else():
    import random

    from vj.control.mapping import parse_mapping

    rng = random.Random(11)
    cc_keys = ["channel", "control", "target", "range", "mode", "bits", "step", "takeover", "value", "led", "x"]
    errors = 0
    for _ in range(1500):
        entry = _tables(rng, cc_keys)
        entry.setdefault("channel", rng.choice([1, 16, 0]))
        data = {"midi": {"cc": [entry], "takeover": rng.choice(["jump", "grab"])}} if rng.random() < 0.7 else entry
        try:
            parse_mapping(data, "m.toml")
        except ConfigError as e:
            errors += 1
            assert str(e).startswith("m.toml") and "\n" not in str(e)
    assert errors > 1000, "most random tables are wrong, and each one says so"


def test_random_tables_give_a_config_error_or_a_scene_never_anything_else():
    import random

    from vj.scenes import parse_scene

    rng = random.Random(12)
    keys = ["name", "kind", "prompt", "prompts", "cycle", "blend", "transition", "params", "layers", "replay", "zz"]
    for _ in range(1500):
        try:
            parse_scene(_tables(rng, keys), "s.toml")
        except ConfigError as e:
            assert str(e).startswith("s.toml") and "\n" not in str(e)

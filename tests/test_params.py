import itertools
import math

import pytest

from vj.errors import ParamError, UnknownParam
from vj.params import PARAMS, ParamSpec, ParamStore


def test_table_has_the_parameters_the_engine_needs():
    names = {p.name for p in PARAMS}
    assert {"zoom", "pan_x", "pan_y", "rotate", "strength", "prompt", "seed"} <= names
    for name in ("zoom", "pan_x", "pan_y", "rotate"):
        spec = next(p for p in PARAMS if p.name == name)
        assert (spec.kind, spec.lo, spec.hi) == ("float", -1.0, 1.0)
    for spec in PARAMS:
        assert spec.check(spec.default) == spec.default, f"{spec.name}'s default must be valid"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, float("nan")])
def test_non_finite_numbers_are_refused_and_change_nothing(bad):
    store = ParamStore()
    before = store["zoom"]
    with pytest.raises(ParamError, match="finite"):
        store.set("zoom", bad)
    assert store["zoom"] == before == store.target("zoom")


@pytest.mark.parametrize("bad", ["0.5", None, [0.5], {"v": 1}, b"1", True])
def test_wrong_types_are_refused(bad):
    store = ParamStore()
    with pytest.raises(ParamError, match="zoom needs a number"):
        store.set("zoom", bad)
    assert store.target("zoom") == 0.15


@pytest.mark.parametrize(("value", "clamped"), [(5, 1.0), (-7.5, -1.0), (1e308, 1.0), (0.25, 0.25)])
def test_out_of_range_values_are_clamped(value, clamped):
    store = ParamStore()
    assert store.set("pan_x", value) == clamped
    assert store.target("pan_x") == clamped


def test_int_params_round_and_clamp():
    store = ParamStore()
    assert store.set("seed", 41.6) == 42
    assert store.set("seed", -3) == 0
    assert store.set("seed", 2**40) == 2**31 - 1
    assert isinstance(store["seed"], int)


def test_bool_params_accept_words_and_numbers():
    store = ParamStore()
    assert store.set("freeze", "on") is True
    assert store.set("freeze", 0) is False
    assert store.set("freeze", 0.7) is True
    with pytest.raises(ParamError, match="on/off"):
        store.set("freeze", "maybe")


def test_strings_are_cleaned_and_bounded():
    store = ParamStore()
    assert store.set("prompt", "  a neon\ncity\x00 in   the rain ") == "a neon city in the rain"
    assert len(store.set("prompt", "x" * 5000)) == 300
    with pytest.raises(ParamError, match="empty"):
        store.set("prompt", " \t ")
    with pytest.raises(ParamError, match="needs text"):
        store.set("prompt", 3)
    assert store["prompt"] == "x" * 300


def test_unknown_names_suggest_the_nearest():
    store = ParamStore()
    with pytest.raises(UnknownParam, match="did you mean 'zoom'"):
        store.set("zom", 1)
    with pytest.raises(UnknownParam):
        store["nothing_like_it"]


def test_smoothed_floats_glide_and_arrive():
    store = ParamStore()
    store.set("zoom", 1.0)
    assert store["zoom"] == 0.15, "a smoothed parameter does not jump"
    seen = []
    for _ in range(120):
        store.step(1 / 60)
        seen.append(store["zoom"])
    assert all(b >= a for a, b in itertools.pairwise(seen)), "the glide is monotonic"
    assert 0.15 < seen[5] < 1.0
    assert seen[-1] == 1.0, "the glide snaps onto the target"


def test_unsmoothed_values_jump_and_jump_skips_the_glide():
    store = ParamStore()
    store.set("seed", 7)
    assert store["seed"] == 7
    store.jump("zoom", -0.5)
    assert store["zoom"] == -0.5


def test_nudges_move_by_steps_and_stay_in_range():
    store = ParamStore()
    store.nudge("zoom", 1)
    assert store.target("zoom") == pytest.approx(0.25)
    for _ in range(50):
        store.nudge("zoom", 1)
    assert store.target("zoom") == 1.0
    store.nudge("blackout")
    assert store.target("blackout") is True
    with pytest.raises(ParamError, match="cannot be nudged"):
        store.nudge("prompt")


def test_add_moves_in_units():
    store = ParamStore()
    store.add("strength", -0.2)
    assert store.target("strength") == pytest.approx(0.25)
    with pytest.raises(ParamError, match="finite"):
        store.add("strength", math.nan)


def test_triggers_fire_and_are_taken_once():
    store = ParamStore([*PARAMS, ParamSpec("flash", "trigger")])
    store.fire("flash")
    store.set("flash", None)
    assert store.take_fired() == ["flash", "flash"]
    assert store.take_fired() == []
    with pytest.raises(ParamError, match="trigger"):
        store["flash"]
    with pytest.raises(ParamError, match="not a trigger"):
        store.fire("zoom")


def test_changed_lists_targets_that_moved_once_each():
    store = ParamStore()
    store.set("zoom", 0.5)
    store.set("zoom", 0.6)
    store.set("prompt", "fire")
    store.set("seed", 1)  # unchanged: not listed
    assert store.take_changed() == ["zoom", "prompt"]
    assert store.take_changed() == []


def test_values_is_a_snapshot():
    store = ParamStore()
    snap = store.values()
    store.jump("zoom", 0.9)
    assert snap["zoom"] == 0.15


def test_a_timed_glide_arrives_exactly_on_time_eased():
    store = ParamStore()
    store.set("zoom", 0.95, glide=1.0)
    seen = []
    for _ in range(60):
        store.step(1 / 60)
        seen.append(store["zoom"])
    assert seen == sorted(seen) and seen[-1] == 0.95, "there after exactly one second"
    assert seen[0] - 0.15 < (seen[30] - seen[29]) / 2, "eased: slow at the start, faster in the middle"
    assert abs(seen[29] - 0.55) < 0.05, "half way at half time"
    store.set("zoom", 0.0)
    store.step(1 / 60)
    assert 0.0 < store["zoom"] < 0.95, "a plain set afterwards uses the usual smoothing again"

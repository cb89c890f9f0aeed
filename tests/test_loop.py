import itertools
import json
import math
import threading

import numpy as np
import pytest

from tests import gens
from vj.engine.loop import Show, ShowConfig
from vj.gen import base


def show(generator="sketch", **kw) -> Show:
    cfg = ShowConfig(size=(320, 180), gen_size=(96, 96), headless=True, generator=generator, **kw)
    return Show(cfg)


def at_frame(n: int, action):
    def callback(s: Show) -> None:
        if s.frames == n:
            action(s)

    return callback


def test_report_has_everything_the_contract_names():
    s = show(frames=30)
    report = s.run()
    json.dumps(report)  # serialisable as is
    for key in (
        "frames",
        "generated",
        "frame_ms",
        "params",
        "events",
        "rejected",
        "sparks",
        "scene",
        "dreams_saved",
        "generator",
    ):
        assert key in report, key
    assert report["frames"] == 30
    assert report["generated"] >= 1
    assert set(report["frame_ms"]) == {"p50", "p99", "max"}
    assert report["frame_ms"]["p50"] <= report["frame_ms"]["p99"] <= report["frame_ms"]["max"]
    assert report["params"]["prompt"] == "a luminous dream of drifting nebulae"
    assert {"osc", "midi", "voice", "keys"} <= set(report["events"]) and {"osc", "midi"} <= set(report["rejected"])
    assert set(report["generator"]) >= {"name", "errors", "restarts"}


def test_a_slow_generator_does_not_slow_the_display():
    s = show("tests.gens:Slow", seconds=1.5)
    report = s.run()
    assert report["generated"] >= 3
    assert report["frames"] >= 4 * report["generated"], "the display ran on between generated frames"


def test_motion_continues_between_generated_frames():
    s = show("tests.gens:Slow", frames=40, params={"zoom": 0.0, "rotate": 1.0})
    shots: list = []

    def grab(s: Show) -> None:
        if s.shown:
            shots.append((s.shown, s.window.screenshot().astype(np.int16)))

    s.on_frame.append(grab)
    s.run()
    same_source = [(a, b) for (na, a), (nb, b) in itertools.pairwise(shots) if na == nb]
    assert len(same_source) >= 5
    moving = [np.abs(a - b).mean() > 0 for a, b in same_source]
    assert sum(moving) >= 0.8 * len(moving)


def test_a_failing_generator_leaves_the_show_running_and_is_counted():
    s = show("tests.gens:Flaky", frames=90)
    report = s.run()
    assert report["frames"] == 90
    gen = report["generator"]
    assert gen["errors"] >= 1 and gen["restarts"] >= 1
    assert "flaky generator failed on purpose" in gen["last_error"]


def test_a_generator_that_never_loads_falls_back_to_sketch():
    s = show("tests.gens:Broken", frames=120)
    report = s.run()
    assert report["generator"]["fallback"] == "sketch"
    assert report["generated"] >= 1


def test_the_hud_says_a_model_is_loading_and_what_dreams_meanwhile():
    s = show("tests.gens:SlowLoad", seconds=2.5)
    lines: dict[str, list[str]] = {}
    s.on_frame.append(at_frame(20, lambda s: lines.setdefault("loading", s._hud_lines(0.0))))
    s.on_frame.append(lambda s: s.frames > 20 and s.worker.stats.stand_in is None and lines.setdefault(
        "loaded", s._hud_lines(0.0)))  # fmt: skip
    report = s.run()
    assert "tests.gens:SlowLoad loading, sketch" in lines["loading"][0]
    assert "tests.gens:SlowLoad" in lines["loaded"][0] and "loading" not in lines["loaded"][0]
    g = report["generator"]
    assert g["state"] == "running" and g["generated_by"]["sketch"] >= 1
    assert g["generated_by"]["tests.gens:SlowLoad"] >= 1


def test_a_model_that_cannot_load_is_named_on_the_hud():
    s = show("tests.gens:NoModel", seconds=1.5)
    lines: list[str] = []
    s.on_frame.append(lambda s: s.worker.stats.fallback and not lines and lines.extend(s._hud_lines(0.0)))
    s.run()
    failed = [line for line in lines if "TESTS.GENS:NOMODEL FAILED, showing sketch: " in line]
    assert failed and "not on this machine" in failed[0]


def test_events_from_other_threads_reach_the_params():
    s = show(frames=20)
    s.on_frame.append(at_frame(3, lambda s: threading.Thread(target=s.bus.post, args=("osc", "zoom", 0.5)).start()))
    s.on_frame.append(at_frame(4, lambda s: s.bus.post("midi", "pan_x", -2.0)))
    report = s.run()
    assert report["params"]["zoom"] == 0.5
    assert report["params"]["pan_x"] == -1.0, "clamped into range"
    assert report["events"]["osc"] == 1 and report["events"]["midi"] == 1


def test_bad_events_are_rejected_counted_and_change_nothing():
    s = show(frames=10)
    s.bus.post("osc", "zoom", math.nan)
    s.bus.post("osc", "zzoom", 1.0)
    s.bus.post("midi", "prompt", 12)
    s.bus.post("voice", "prompt", "fire", "toggle")
    report = s.run()
    assert report["rejected"]["osc"] == 2 and report["rejected"]["midi"] == 1 and report["rejected"]["voice"] == 1
    assert report["params"]["zoom"] == 0.15 and report["params"]["prompt"] != 12


def test_quit_ends_the_show():
    s = show(frames=10_000)
    s.on_frame.append(at_frame(5, lambda s: s.bus.post("keys", "quit", op="fire")))
    assert s.run()["frames"] == 6


def test_stop_zeroes_all_motion():
    s = show(frames=10, params={"pan_x": 0.4, "rotate": -0.3})
    s.bus.post("voice", "stop", op="fire")
    params = s.run()["params"]
    assert (params["zoom"], params["pan_x"], params["pan_y"], params["rotate"]) == (0, 0, 0, 0)


def test_freeze_holds_the_camera_and_the_generator():
    s = show(frames=30, params={"freeze": True, "zoom": 1.0})
    report = s.run()
    assert np.array_equal(s.camera, np.zeros(4))
    assert report["generated"] <= 1


def test_bad_starting_values_are_config_errors():
    from vj.errors import ConfigError

    with pytest.raises(ConfigError, match="zoom needs a number"):
        show(params={"zoom": "fast"})


def test_generators_are_built_by_name():
    assert base.find("tests.gens:Solid") is gens.Solid


# -- trust on stage: nothing a source posts can end the show ----------------------------------------------------------
@pytest.mark.parametrize("value", ["²", "٣", "1e999", None, b"\xff", [1, [2]], float("nan"), 10**400])
def test_no_scene_value_from_a_sender_can_end_the_show(value):
    s = show(frames=20)
    s.on_frame.append(at_frame(3, lambda s: s.bus.post("osc", "scene", value)))
    report = s.run()
    assert report["frames"] == 20, "the show ran to its end"
    assert report["rejected"]["osc"] == 1


def test_an_action_that_raises_anything_is_rejected_not_fatal():
    s = show(frames=15)

    def boom(e):
        raise RuntimeError("broken handler")

    s._actions["stop"] = boom
    s.on_frame.append(at_frame(2, lambda s: s.bus.post("midi", "stop", op="fire")))
    report = s.run()
    assert report["frames"] == 15 and report["rejected"]["midi"] == 1


# -- the clock is passed in --------------------------------------------------------------------------------------------
def test_a_stepped_clock_makes_every_frame_exactly_on_time_however_busy_the_machine():
    from vj.engine.clock import SteppedClock
    from vj.frame import motion

    clock = SteppedClock(start=100.0)
    s = Show(
        ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, frames=120, params={"zoom": 1.0}), clock=clock
    )
    report = s.run()
    assert s.elapsed == pytest.approx(119 / 60), "frame k starts at exactly k / 60 s"
    assert report["late_frames"] == 0 and report["interval_ms"]["max"] == pytest.approx(1000 / 60, abs=0.01)
    expected = motion.new_camera()
    for _ in range(119):  # the first frame has dt 0
        expected = motion.advance(expected, s.params.values(), 1 / 60)
    assert s.camera == pytest.approx(expected)


# -- scenes are a source like any other -----------------------------------------------------------------------------
def test_a_scene_posts_its_values_to_the_bus(tmp_path):
    from vj.scenes import load_scenes

    (tmp_path / "01-a.toml").write_text('name = "A"\nprompt = "a blue lagoon"\n[params]\nzoom = 0.4\n')
    posted = []

    s = Show(
        ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, frames=10, scenes=load_scenes(tmp_path), scene=1)
    )
    original = s.bus.post
    s.bus.post = lambda source, target, *a, **k: (posted.append((source, target)), original(source, target, *a, **k))[
        -1
    ]
    report = s.run()
    assert ("scene", "zoom") in posted and ("scene", "prompt") in posted
    assert report["params"]["zoom"] == 0.4 and report["params"]["prompt"] == "a blue lagoon"
    assert report["events"]["scene"] >= 2


def test_sources_are_told_through_their_mailbox_not_called():
    from vj.control.source import Source

    class Listener(Source):
        name = "listener"
        listens = frozenset({"changed"})

        def __init__(self):
            super().__init__()
            self.threads_seen = set()
            self.values = {}

        def start(self, bus):
            self.spawn(self._run, "listener")

        def _run(self):
            while not self.stopping:
                self.wait_mail(0.05)
                self.deliver()

        def on_changed(self, values):
            self.threads_seen.add(threading.current_thread().name)
            self.values.update(values)

    src = Listener()
    s = show(frames=400)
    s.add_source(src)
    s.on_frame.append(at_frame(5, lambda s: s.bus.post("osc", "zoom", 0.33)))
    s.on_frame.append(lambda s: s.stop() if src.values.get("zoom") == 0.33 else None)
    report = s.run()
    assert src.values["zoom"] == 0.33 and report["frames"] < 400
    assert src.threads_seen == {"listener"}, "hooks ran on the source's own thread"
    assert report["sources"]["listener"] == {"alive": True, "restarts": 0, "error": None}


def test_a_source_thread_that_dies_is_restarted_and_shown():
    from vj.control.source import Source

    class Fragile(Source):
        name = "fragile"

        def __init__(self):
            super().__init__()
            self.runs = 0
            self.bus = None

        def start(self, bus):
            self.bus = bus
            self.spawn(self._run, "fragile")

        def _run(self):
            self.runs += 1
            if self.runs < 3:
                raise RecursionError("maximum recursion depth exceeded")
            while not self.stopping:
                self.bus.post("fragile", "zoom", 0.25)
                self._stopping.wait(0.05)

    src = Fragile()
    s = show(frames=2000)
    s.add_source(src)
    lines = []
    s.on_frame.append(lambda s: lines.append("\n".join(s._hud_lines(0.0))) if s.frames % 10 == 0 else None)
    s.on_frame.append(lambda s: s.stop() if s.params.target("zoom") == 0.25 else None)
    report = s.run()
    assert report["params"]["zoom"] == 0.25, "the source came back and posts again"
    assert report["sources"]["fragile"]["restarts"] == 2
    assert "RecursionError" in report["sources"]["fragile"]["error"]
    assert any("fragile restarted 2x" in text for text in lines)


def test_the_top_dreams_scene_on_an_empty_store_keeps_dreaming_live(tmp_path):
    from vj.scenes import load_scenes

    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "01-top.toml").write_text('name = "Top"\nkind = "replay"\n')
    config = ShowConfig(
        size=(160, 90),
        gen_size=(64, 64),
        headless=True,
        frames=5000,
        scenes=load_scenes(tmp_path / "scenes"),
        scene=1,
        dreams=tmp_path / "empty",
    )
    s = Show(config)
    levels = []
    s.on_frame.append(lambda s: levels.append(float(s.presented[..., :3].mean())) if s.presented is not None else None)
    s.on_frame.append(lambda s: s.stop() if s.shown >= 30 else None)
    report = s.run()
    assert report["shown"] >= 30 and report["frames"] < 5000, "frames kept coming"
    assert report["generator"]["fallback"] == "sketch"
    assert min(levels[-20:]) > 10, "not black"

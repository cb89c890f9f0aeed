"""pause_gpu: the model is closed to free the GPU, the CPU stand-in dreams on, and the model loads again on resume.

Every wait here is on an event or a count of frames (display frames, generated frames), never a fixed sleep.
"""

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pythonosc.udp_client import SimpleUDPClient

from tests.gens import GpuModel, is_green
from tests.test_worker import job
from vj.control.bus import ControlBus
from vj.control.mapping import parse_mapping
from vj.control.midi import MidiRouter
from vj.control.osc import OscRouter, OscServer
from vj.control.voice.grammar import Heard
from vj.control.voice.source import VoiceOptions, VoiceSource
from vj.engine import report
from vj.engine.loop import Show, ShowConfig
from vj.engine.worker import Frame, GeneratorWorker
from vj.gen import base

SIZE = (64, 64)
MODEL = "tests.gens:GpuModel"


# -- the worker ---------------------------------------------------------------------------------------------------
class Feeder:
    """Feeds a running worker jobs as the loop does and collects its frames, waiting on its outbox."""

    def __init__(self, worker: GeneratorWorker) -> None:
        self.w = worker
        self.frames: list[Frame] = []

    def until(self, done: Callable[[list[Frame]], bool], timeout: float = 60.0, **params: Any) -> list[Frame]:
        """Frames made from now until ``done(those frames)``; fails after ``timeout`` (a stuck worker)."""
        start = len(self.frames)
        end = time.monotonic() + timeout
        while not done(self.frames[start:]):
            assert time.monotonic() < end, f"timed out; worker: {self.w.stats}"
            self.w.submit(job(**params))
            self.w.check()
            self.w.outbox.latest(timeout=0.05)  # wakes as soon as a frame is there
            frame = self.w.poll()
            if frame is not None:
                self.frames.append(frame)
        return self.frames[start:]


def model_worker() -> GeneratorWorker:
    GpuModel.reset()
    build = base.factory(MODEL, SIZE)
    return GeneratorWorker(build, SIZE, name="gpu-model", fallback=base.factory("sketch", SIZE))


def made(w: GeneratorWorker, name: str) -> int:
    return w.stats.generated_by.get(name, 0)


def test_pause_closes_the_model_the_stand_in_dreams_and_resume_loads_it_again():
    w = model_worker()
    w.start()
    try:
        feed = Feeder(w)
        feed.until(lambda fs: sum(is_green(f.image) for f in fs) >= 2)
        assert GpuModel.loaded == 1 and w.stats.state == "running" and not w.stats.gpu_paused

        feed.until(lambda fs: GpuModel.closed_once.is_set(), pause_gpu=True)
        model_frames, sketch_frames = made(w, "gpu-model"), made(w, "sketch")
        during = feed.until(lambda fs: len(fs) >= 6, pause_gpu=True)
        assert not any(is_green(f.image) for f in during[1:]), "the stand-in's frames, not the model's"
        assert made(w, "gpu-model") == model_frames and made(w, "sketch") >= sketch_frames + 5
        s = w.stats
        assert (s.gpu_paused, s.state, s.stand_in) == (True, "paused", "sketch")
        assert s.describe().startswith("GPU paused: gpu-model closed, sketch")
        assert GpuModel.loaded == 1 and GpuModel.closed == 1, "closed once, nothing loaded while paused"

        back = feed.until(lambda fs: made(w, "gpu-model") >= model_frames + 2)
        assert is_green(back[-1].image)
        assert GpuModel.loaded == 2 and (s.gpu_paused, s.state, s.stand_in) == (False, "running", None)
        assert s.errors == 0 and s.restarts == 0 and s.fallback is None and s.load_s is not None
    finally:
        w.stop()


def test_pausing_while_the_model_loads_drops_the_load_and_resuming_starts_another():
    w = model_worker()
    GpuModel.gate.clear()  # the load waits here until the test lets it go
    w.start()
    try:
        feed = Feeder(w)
        feed.until(lambda fs: GpuModel.loading.is_set() and len(fs) >= 2)
        assert w.stats.state == "loading" and w.stats.stand_in == "sketch"
        feed.until(lambda fs: w.stats.gpu_paused and len(fs) >= 2, pause_gpu=True)
        GpuModel.loading.clear()
        GpuModel.gate.set()  # the load finishes now, for nobody: it is closed on its own thread
        feed.until(lambda fs: GpuModel.closed_once.is_set() and len(fs) >= 3, pause_gpu=True)
        assert GpuModel.loaded == 1 and made(w, "gpu-model") == 0, "a model loaded while paused never dreams"
        assert w.stats.state == "paused" and w.stats.errors == 0
        feed.until(lambda fs: made(w, "gpu-model") >= 2)
        assert GpuModel.loaded == 2 and w.stats.state == "running"
    finally:
        w.stop()


def test_pause_and_resume_work_while_frozen_too():
    w = model_worker()
    w.start()
    try:
        feed = Feeder(w)
        feed.until(lambda fs: made(w, "gpu-model") >= 1)
        feed.until(lambda fs: GpuModel.closed_once.is_set(), freeze=True, pause_gpu=True)
        assert w.stats.gpu_paused and w.stats.describe().startswith("GPU paused: gpu-model closed, sketch")
        feed.until(lambda fs: len(fs) >= 3 and not is_green(fs[-1].image), pause_gpu=True)  # thawed: the stand-in
        assert made(w, "sketch") >= 3 and GpuModel.loaded == 1
        feed.until(lambda fs: GpuModel.loaded == 2, freeze=True)  # resumed while frozen: the model loads meanwhile
        assert w.stats.state == "loading" and not w.stats.gpu_paused
        before = made(w, "gpu-model")  # (the model may have made several frames before the pause took hold)
        feed.until(lambda fs: made(w, "gpu-model") >= before + 2)  # the model loaded again makes frames
        assert w.stats.state == "running" and w.stats.errors == 0
    finally:
        w.stop()


def test_a_cpu_generator_ignores_pause_with_one_log_line(caplog):
    w = GeneratorWorker(
        base.factory("tests.gens:Solid", SIZE), SIZE, name="solid", fallback=base.factory("sketch", SIZE)
    )
    w.start()
    try:
        feed = Feeder(w)
        with caplog.at_level(logging.INFO, logger="vj.engine.worker"):
            feed.until(lambda fs: len(fs) >= 2)
            frames = feed.until(lambda fs: len(fs) >= 5, pause_gpu=True)
            feed.until(lambda fs: len(fs) >= 2)
    finally:
        w.stop()
    lines = [r.getMessage() for r in caplog.records if "pause_gpu" in r.getMessage()]
    assert len(lines) == 1 and "nothing to free" in lines[0] and "solid" in lines[0]
    assert not w.stats.gpu_paused and w.stats.state == "running" and set(w.stats.generated_by) == {"solid"}
    assert all(f.image[..., 0].mean() == 200 for f in frames), "the generator itself kept dreaming"


# -- a show, driven through the real control paths -----------------------------------------------------------------
class Script:
    """Steps run from the show's on_frame, each once its condition holds; the show stops after the last one."""

    def __init__(self, *steps: tuple[Callable[[Show], bool], Callable[[Show], None]]) -> None:
        self.steps = list(steps)
        self.marks: dict[str, Any] = {}

    def __call__(self, s: Show) -> None:
        if not self.steps:
            s.stop()
            return
        ready, action = self.steps[0]
        if ready(s):
            self.steps.pop(0)
            action(s)


def model_show(script: Script, **params: Any) -> Show:
    GpuModel.reset()
    cfg = ShowConfig(size=(160, 90), gen_size=SIZE, headless=True, generator=MODEL, seconds=120, params=params)
    show = Show(cfg)
    show.on_frame.append(script)
    return show


def stats(s: Show) -> Any:
    assert s.worker is not None
    return s.worker.stats


def mark(script: Script, **values: Any) -> Callable[[Show], None]:
    def action(s: Show) -> None:
        script.marks.update({k: v(s) for k, v in values.items()})

    return action


def model_made(s: Show) -> int:
    return stats(s).generated_by.get(MODEL, 0)


def stand_in_made(s: Show) -> int:
    return stats(s).generated_by.get("sketch", 0)


def paused(s: Show) -> bool:
    return GpuModel.closed_once.is_set() and stats(s).gpu_paused


def pause_and_resume(pause: Callable[[Show], None], resume: Callable[[Show], None], *extra: Any) -> tuple[Script, Show]:
    """A show on the test model: once the model dreams, ``pause``; once the stand-in made 5 frames and the display
    showed 10 more, ``resume`` (after ``extra`` steps); stop when the model made 2 frames more."""
    script = Script()
    script.steps = [
        (lambda s: model_made(s) >= 2, pause),
        (
            paused,  # the model's last frame is made: it counts from here
            mark(
                script, model=model_made, frames=lambda s: s.frames, sketch=stand_in_made, hud=lambda s: s._hud_lines(0)
            ),
        ),
        (
            lambda s: stand_in_made(s) >= script.marks["sketch"] + 5 and s.frames >= script.marks["frames"] + 10,
            mark(script, during=lambda s: (GpuModel.loaded, GpuModel.closed, model_made(s), s.report().as_dict())),
        ),
        *extra,
        (lambda s: True, resume),
        (lambda s: model_made(s) >= script.marks["model"] + 2, lambda s: s.stop()),
    ]
    return script, model_show(script)


def check_paused_then_resumed(script: Script, report: dict[str, Any]) -> None:
    assert not script.steps, f"the show ran out of time at step {script.steps[0]}"
    loaded, closed, model_frames, during = script.marks["during"]
    assert (loaded, closed) == (1, 1), "the model was closed once, and nothing loaded while paused"
    assert model_frames == script.marks["model"], "no model frame while paused"
    assert any("GPU paused" in line for line in script.marks["hud"])
    g = during["generator"]
    assert g["gpu_paused"] is True and g["state"] == "paused" and g["stand_in"] == "sketch"
    assert "vram_mb" in g and during["params"]["pause_gpu"] is True
    assert GpuModel.loaded == 2
    g = report["generator"]
    assert g["gpu_paused"] is False and g["state"] == "running" and g["errors"] == 0 and g["restarts"] == 0
    assert report["params"]["pause_gpu"] is False
    assert g["generated_by"]["sketch"] >= 5 and g["generated_by"][MODEL] >= script.marks["model"] + 2


def test_osc_pauses_and_resumes_over_real_udp():
    osc = OscServer("127.0.0.1", 0)
    osc.bind()
    client = SimpleUDPClient("127.0.0.1", osc.port)
    once: dict[str, Any] = {}

    def again(s: Show) -> None:  # pausing twice does nothing (",T" after ",i 1" would be skipped as a repeat)
        client.send_message("/vj/pause-gpu", "on")
        once["frame"] = s.frames

    def sent_twice(s: Show) -> bool:
        if s.bus.counts()["osc"] >= 2 and "applied" not in once:
            once["applied"] = s.frames  # drained at the next frame, after this one
        return "applied" in once and s.frames >= once["applied"] + 3

    script, show = pause_and_resume(
        lambda s: client.send_message("/vj/pause-gpu", 1),
        lambda s: client.send_message("/vj/pause-gpu", 0),
        (lambda s: True, again),
        (sent_twice, lambda s: once.update(after_twice=(GpuModel.loaded, GpuModel.closed, stats(s).gpu_paused))),
    )
    show.add_source(osc)
    report = show.run()
    check_paused_then_resumed(script, report)
    assert once["after_twice"] == (1, 1, True)
    assert report["events"]["osc"] == 3 and report["rejected"]["osc"] == 0


def test_the_g_key_pauses_and_resumes():
    def press(s: Show) -> None:
        pg = s.window.pg
        pg.event.post(pg.event.Event(pg.KEYDOWN, key=pg.K_g, unicode="g", mod=0))

    script, show = pause_and_resume(press, press)
    report = show.run()
    check_paused_then_resumed(script, report)
    assert report["events"]["keys"] == 2


class Said:
    """Stands in for the recogniser: hears whatever the test says."""

    def __init__(self) -> None:
        self.text = ""

    def hear(self, audio: np.ndarray, second_look: Any = None) -> Heard:
        return Heard(self.text, 0.02, -0.2)


def test_go_to_sleep_and_wake_up_by_voice():
    voice = VoiceSource(VoiceOptions(mode="vad"))
    said = Said()
    voice.recognizer = said  # type: ignore[assignment]
    heard: list[Any] = []

    def say(*texts: str) -> Callable[[Show], None]:
        def action(s: Show) -> None:
            voice._bus = s.bus
            for text in texts:
                said.text = text
                command = voice.handle(np.zeros(1600, np.float32), time.monotonic())
                heard.append((text, command.canonical if command else None))

        return action

    near = ("I could sleep through this set", "sleepy", "don't go to sleep", "woke up", "Sleep?")
    script, show = pause_and_resume(say(*near, "go to sleep"), say("wake up"))
    report = show.run()
    check_paused_then_resumed(script, report)
    assert heard == [*((t, None) for t in near), ("go to sleep", "sleep"), ("wake up", "wake up")]
    assert report["events"]["voice"] == 2


def test_a_show_started_paused_never_loads_the_model_and_reports_it():
    script = Script((lambda s: stand_in_made(s) >= 5 and s.frames >= 10, lambda s: s.stop()))
    show = model_show(script, pause_gpu=True)
    report = show.run()
    assert not script.steps
    g = report["generator"]
    assert GpuModel.loaded == 0 and g["generated_by"] == {"sketch": g["generated_by"]["sketch"]}
    assert g["gpu_paused"] is True and g["state"] == "paused" and g["stand_in"] == "sketch"
    assert "GPU paused" in " ".join(show._hud_lines(0.0))


def test_a_scene_that_sets_pause_gpu_loads_no_model(tmp_path):
    from vj.scenes import parse_scene

    scene = parse_scene({"name": "Rehearsal", "params": {"pause_gpu": True}}, "rehearsal.toml")
    script = Script((lambda s: stand_in_made(s) >= 5, lambda s: s.stop()))
    GpuModel.reset()
    cfg = ShowConfig(
        size=(160, 90), gen_size=SIZE, headless=True, generator=MODEL, seconds=120, scenes=[scene], scene=1
    )
    show = Show(cfg)
    show.on_frame.append(script)
    report = show.run()
    assert not script.steps and GpuModel.loaded == 0 and report["generator"]["gpu_paused"] is True


def test_resuming_when_not_paused_does_nothing():
    script = Script(
        (lambda s: model_made(s) >= 2, lambda s: s.bus.post("osc", "pause_gpu", False)),
        (lambda s: model_made(s) >= 6, lambda s: s.stop()),
    )
    report = model_show(script).run()
    assert not script.steps and GpuModel.loaded == 1 and report["generator"]["gpu_paused"] is False


# -- the routes into it -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "op"),
    [
        ([], ("pause_gpu", None, "toggle")),
        ([None], ("pause_gpu", None, "toggle")),
        ([1], ("pause_gpu", True, "set")),
        ([True], ("pause_gpu", True, "set")),
        ([0], ("pause_gpu", False, "set")),
        ([False], ("pause_gpu", False, "set")),
        (["on"], ("pause_gpu", "on", "set")),
    ],
)
def test_osc_forms_of_pause_gpu(args, op):
    assert OscRouter().route("/vj/pause-gpu", args) == [op]
    assert OscRouter().route("/vj/pause_gpu", args) == [op], "the parameter's own name works too"


def test_a_midi_button_can_toggle_it():
    import mido

    mapping = parse_mapping(
        {"midi": {"note": [{"channel": 1, "note": 40, "target": "pause_gpu", "mode": "toggle"}]}}, "x"
    )
    router = MidiRouter(mapping)
    assert router.handle(mido.Message("note_on", note=40, velocity=100)) == [("pause_gpu", None, "toggle")]
    assert router.handle(mido.Message("note_off", note=40)) == []


def test_the_bus_applies_a_toggle_to_the_parameter():
    show = Show(ShowConfig(headless=True), bus=ControlBus())
    show.apply([*_events("pause_gpu", None, "toggle")])
    assert show.params.target("pause_gpu") is True
    show.apply([*_events("pause_gpu", None, "toggle")])
    assert show.params.target("pause_gpu") is False


def _events(target: str, value: Any, op: str) -> list[Any]:
    bus = ControlBus()
    bus.post("midi", target, value, op)  # type: ignore[arg-type]
    return bus.drain()


# -- VRAM in the report ---------------------------------------------------------------------------------------------
class FakeCuda:
    def __init__(self, available: bool, initialized: bool) -> None:
        self.available, self.initialized = available, initialized

    def is_available(self) -> bool:
        return self.available

    def is_initialized(self) -> bool:
        return self.initialized

    def device_count(self) -> int:
        return 2

    def memory_allocated(self, device: int) -> int:
        assert self.initialized, "reading memory must not start CUDA"
        return (3 + device) * 2**20


class FakeTorch:
    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda


def test_vram_is_read_from_torch_only_when_it_is_loaded(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert report.vram_mb() is None
    monkeypatch.setitem(sys.modules, "torch", FakeTorch(FakeCuda(available=False, initialized=False)))
    assert report.vram_mb() is None
    monkeypatch.setitem(sys.modules, "torch", FakeTorch(FakeCuda(available=True, initialized=False)))
    assert report.vram_mb() == 0.0
    monkeypatch.setitem(sys.modules, "torch", FakeTorch(FakeCuda(available=True, initialized=True)))
    assert report.vram_mb() == 7.0, "every device's tensors, in MB"


def test_reading_vram_never_imports_torch():
    code = "import sys; from vj.engine.report import vram_mb; print(vram_mb(), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["None", "False"]


# -- the lcm generator, a tiny random model on the CPU ----------------------------------------------------------------
@pytest.mark.slow
def test_the_lcm_model_is_closed_and_loaded_again_over_osc(tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    import threading

    from tests.tiny import tiny_lcm
    from vj.gen.lcm import LcmGenerator

    folder = tiny_lcm(tmp_path / "tiny")
    closed = threading.Event()
    close = LcmGenerator.close

    def closing(self: LcmGenerator) -> None:
        held = self.parts is not None
        close(self)
        if held:
            closed.set()

    monkeypatch.setattr(LcmGenerator, "close", closing)
    osc = OscServer("127.0.0.1", 0)
    osc.bind()
    client = SimpleUDPClient("127.0.0.1", osc.port)
    marks: dict[str, Any] = {}

    def lcm_made(s: Show) -> int:
        return stats(s).generated_by.get("lcm", 0)

    script = Script(
        (lambda s: lcm_made(s) >= 2, lambda s: client.send_message("/vj/pause-gpu", None)),  # no argument: toggles
        (
            lambda s: closed.is_set() and stats(s).gpu_paused,
            lambda s: marks.update(lcm=lcm_made(s), sketch=stand_in_made(s)),
        ),
        (lambda s: stand_in_made(s) >= marks["sketch"] + 3, lambda s: marks.update(during=lcm_made(s))),
        (lambda s: True, lambda s: client.send_message("/vj/pause-gpu", None)),
        (lambda s: lcm_made(s) >= marks["lcm"] + 2, lambda s: s.stop()),
    )
    cfg = ShowConfig(
        size=(160, 90), gen_size=SIZE, headless=True, generator="lcm", generator_options={"model": str(folder)},
        seconds=300,
    )  # fmt: skip
    show = Show(cfg)
    show.add_source(osc)
    show.on_frame.append(script)
    report = show.run()
    assert show.worker is not None and show.worker._thread is not None
    show.worker._thread.join(120)  # a frame still in torch when the interpreter exits would abort it
    assert not script.steps, f"the show ran out of time at step {script.steps[0]}"
    assert marks["during"] == marks["lcm"], "no model frame while paused"
    g = report["generator"]
    assert g["gpu_paused"] is False and g["state"] == "running" and g["errors"] == 0 and g["fallback"] is None
    assert g["generated_by"]["lcm"] >= marks["lcm"] + 2 and g["load_s"] is not None
    assert g["vram_mb"] is None or isinstance(g["vram_mb"], float), "a number only where CUDA is"
    assert report["events"]["osc"] == 2 and report["params"]["pause_gpu"] is False

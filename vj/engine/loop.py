"""The show: one loop on one thread owns all engine state.

Each display frame:

    keys -> bus        read the window's events (SDL delivers them on this thread)
    bus -> params      apply what every source posted since the last frame (newest wins per target)
    director           prompt cycles, scene files edited meanwhile (a scene switch itself is an event)
    params.step        glide smoothed parameters
    tempo              the beat moves on at bpm; a quantised scene switch lands, LFOs and beat sparks follow it
    camera             integrate the motion rates (unless frozen)
    sparks             a spark asked for by hand (the trigger fired) starts if the cooldown allows
    worker.submit      hand the generator a snapshot (params, camera, spark, loop layers): latest wins, never waits
    worker.poll        take a finished frame if there is one; its vitals may call for an automatic spark
    blend              timewarp + crossfade the last two generated frames to this instant
    mixer, level       layers on top, a scene change's crossfade, then the master fader
    window.present     scale into the window, HUD on top
    dreams             offer the frame to the dream keeper (a thread: scoring and writing never wait here)
    pace               sleep until the next frame is due

Other threads (OSC server, MIDI callbacks, the voice worker) only ever ``bus.post()``; sources are
``vj.control.source.Source`` objects added with ``Show.add_source``. The loop never calls into a source's state: it
posts ``changed`` (every parameter whose target changed, and all of them once at the start: OSC out, controller
LEDs, pick-up) and ``remap`` (a scene's mapping) into the source's mailbox, and reads ``status()``, ``report()`` and
``health()`` (a source thread that died or restarted shows in the HUD and the report).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vj.control.actions import ACTION_NAMES
from vj.control.bus import ControlBus, Event
from vj.control.mapping import Mapping, merge
from vj.control.source import Source, health_line
from vj.engine.blend import FrameBlender, OutputLevel, SceneFade
from vj.engine.clock import Clock, RealClock
from vj.engine.director import Director
from vj.engine.mixer import Mixer
from vj.engine.report import GeneratorSection, Report, SceneSection, SparkSection, WindowSection, vram_mb
from vj.engine.spark import Sparks
from vj.engine.worker import GeneratorWorker, Job
from vj.errors import ConfigError, ParamError
from vj.frame import motion
from vj.gen import base
from vj.gen.models import DECODER_OPTIONS
from vj.layers.spec import LayerSpec
from vj.output.record import Recorder, next_path
from vj.output.stats import Timings
from vj.params import ParamStore, unknown
from vj.scenes import Lfo, ReplayOptions, Scene
from vj.tempo import Tempo, TempoSync, bars_crossed, wave
from vj.threads import limit_malloc_arenas

log = logging.getLogger(__name__)

MAX_DT = 0.25  # a stall (a dragged window, a suspended laptop) must not fling the camera across the dream
LFO_FADE_S = 0.5  # a scene's LFOs ease in and out: a wave starting mid-cycle must not jerk the picture


@dataclass
class ShowConfig:
    size: tuple[int, int] = (1280, 720)
    gen_size: tuple[int, int] = (512, 512)
    fps: float = 60.0
    fullscreen: bool = False
    display: int = 0
    headless: bool = False
    fit: str = "contain"
    seconds: float | None = None
    frames: int | None = None
    generator: str = "dream"
    generator_options: dict[str, Any] = field(default_factory=dict)
    hud: bool = True
    cap_generator: bool = True  # no faster than the display: a frame nobody sees is wasted power
    layers: list[LayerSpec] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # starting values, e.g. {"prompt": "..."}
    mapping: Mapping | None = None  # what scenes' mapping overrides are laid over
    scenes: list[Scene] = field(default_factory=list)
    scenes_dir: Path | None = None  # watched for edits
    scene: Any = None  # the scene to start with: number, name
    dreams: Path | None = None  # the dream store's folder; None keeps no dreams
    dreams_keep: int = 24  # the best K dreams of the session
    clip: Any = None  # a vj.dreams.clip.ClipScorer for the dream score
    record: Path | None = None  # record the program output from the start; also the name when `record` is set later


class Show:
    def __init__(
        self,
        config: ShowConfig,
        *,
        bus: ControlBus | None = None,
        params: ParamStore | None = None,
        build: base.GeneratorFactory | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or RealClock()
        self.bus = bus or ControlBus()
        self.params = params or ParamStore()
        self.mixer = Mixer(config.layers, config.gen_size)
        for layer, spec in zip(self.mixer.layers, config.layers, strict=True):
            self.params.jump(layer.param, spec.opacity)  # a layer's own opacity, unless a starting value says else
        for name, value in config.params.items():
            try:
                self.params.jump(name, value)
            except ParamError as e:
                raise ConfigError(str(e), key=name) from None
        if config.record is not None:
            self.params.jump("record", True)
        self._build = build or base.factory(config.generator, config.gen_size, **config.generator_options)
        self.camera = motion.new_camera()
        self.frames = 0
        self.shown = 0
        self.frame_ms = Timings()
        self.interval_ms = Timings()
        self.late_frames = 0
        self.last_event: Event | None = None
        self.last_event_at = 0.0
        self.elapsed = 0.0
        self.sources: list[Source] = []
        self._stopping = threading.Event()  # set once: a stop asked for before run() still counts
        self._actions: dict[str, Callable[[Event], None]] = {
            "quit": lambda e: self.stop(),
            "stop": self._stop_motion,
            "hud": lambda e: self.hud.toggle() if self.hud else None,
            "fullscreen": lambda e: self.window.toggle_fullscreen() if self.window else None,
            "scene": self._switch_scene,
            "replay": self._replay,
        }
        assert set(self._actions) == ACTION_NAMES, "every action in the table needs a handler"
        self.window: Any = None
        self._window_state = (list(config.size), config.fullscreen)
        self.hud: Any = None
        self.keyboard: Any = None
        self.worker: GeneratorWorker | None = None
        self.blender = FrameBlender(config.gen_size)
        self.output = OutputLevel()
        self.sparks = Sparks()
        self.tempo = Tempo(float(self.params["bpm"]))
        self._clock_bpm: dict[str, float] = {}  # each clock source's last tempo
        self._quantize = config.mapping.quantize if config.mapping is not None else None
        self._pending_scene: tuple[Scene, float] | None = None  # the scene a switch waits to put on, and the beat
        self.last_quantized: dict[str, Any] | None = None  # the last switch that waited for the beat
        self._lfos: dict[str, tuple[Lfo, float]] = {}  # param -> the LFO on it and its level 0..1
        self.values: dict[str, Any] = self.params.values()
        self.director = Director(config.scenes, config.scenes_dir)
        self.keeper: Any = None
        if config.dreams is not None:
            from vj.dreams.keeper import DreamKeeper

            self.keeper = DreamKeeper(config.dreams, keep=config.dreams_keep, clip=config.clip)
        self._generator_now: tuple[str, dict[str, Any]] = (config.generator, dict(config.generator_options))
        if config.scene is not None:
            try:
                self.director.resolve(config.scene)
            except ParamError as e:
                raise ConfigError(str(e), key="--scene") from None
        self._fade: SceneFade | None = None
        self._last_picture: Any = None
        self._latest: Any = None  # the newest generated frame (for saving)
        self.presented: Any = None  # the picture last presented, BGRA at the generator's size; None = black
        self._prompt_commit: str | None = None
        self._replay_feed: tuple[ReplayOptions, float, int] | None = None  # options, next bloom time, index
        self._spark_image: Any = None  # what the current spark number blooms: None = a fresh image
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._layers_wanted: Mixer | None = None
        self._viewers: list[Source] = []  # sources that show the picture somewhere (the web view)
        self.recorder: Recorder | None = None  # the recording under way
        self.recordings: list[Recorder] = []
        self.on_frame: list[Callable[[Show], None]] = []  # called after each presented frame (tests, recorders)
        self._vram_at_end: tuple[float | None] | None = None  # GPU memory as the show ended, before the model closed

    def add_source(self, source: Source) -> None:
        self.sources.append(source)
        if source.wants_frames:
            self._viewers.append(source)

    def stop(self) -> None:
        """End the show after the current frame (or before the first). Safe from any thread, and from a signal."""
        self._stopping.set()

    # -- applying control events -----------------------------------------------------------------------------
    def apply(self, events: list[Event]) -> None:
        for event in events:
            try:
                self._apply_one(event)
            except ParamError as e:
                self.bus.reject(event.source, str(e), key=event.target)
                continue
            except Exception as e:
                log.debug("event %s failed", event.describe(), exc_info=True)
                self.bus.reject(event.source, f"{event.describe()}: {type(e).__name__}: {e}", key=event.target)
                continue
            self.last_event, self.last_event_at = event, self.clock.now()

    def _apply_one(self, e: Event) -> None:
        if e.target == "tempo_sync":  # from a clock source (MIDI clock in, Link): not a parameter anyone sets
            self._tempo_sync(e.value)
            return
        if e.target in ("bpm", "tap"):
            self._tempo_by_hand(e)
            if e.target == "tap":
                return
        if e.target in self._actions:
            self._actions[e.target](e)
            return
        if e.target not in self.params:
            raise unknown(e.target, list(self.params.specs) + list(self._actions), "parameter or action")
        if e.op == "set":
            self.params.set(e.target, e.value, glide=e.glide)
        elif e.op == "jump":
            self.params.jump(e.target, e.value)
        elif e.op == "add":
            self.params.add(e.target, e.value)
        elif e.op == "nudge":
            self.params.nudge(e.target, e.value)
        elif e.op == "scale":
            self.params.scale(e.target, e.value)
        elif e.op == "toggle":
            spec = self.params.spec(e.target)
            if spec.kind != "bool":
                raise ParamError(f"{e.target} is {spec.describe()}: it cannot be toggled")
            self.params.set(e.target, not self.params.target(e.target))
        elif e.op == "fire":
            self.params.fire(e.target)

    def _tempo_by_hand(self, e: Event) -> None:
        """A tap or a tempo set by a person: refused while MIDI clock leads, a tap's tempo once the taps agree."""
        leader = self.tempo.leader(self.clock.now())
        if leader == "midi-clock":
            raise ParamError("the tempo follows MIDI clock (--clock-in); stop the clock to set it by hand")
        if e.target == "tap":
            try:
                bpm = self.tempo.tap(e.posted)
            except ValueError as why:
                raise ParamError(str(why)) from None
            if bpm is not None:
                self.params.set("bpm", bpm)
        elif e.op != "fire":
            self.tempo.source = e.source

    def _tempo_sync(self, sync: Any) -> None:
        if not isinstance(sync, TempoSync):
            raise ParamError(f"tempo_sync needs a TempoSync, got {type(sync).__name__}")
        self.tempo.sync(sync, self.clock.now(), time.perf_counter())
        # Only a change of the clock's own tempo is taken: a Link session echoing its tempo 20 times a second
        # must not undo a tempo set by hand in the same frame (the Link source passes that one on).
        last = self._clock_bpm.get(sync.source)
        self._clock_bpm[sync.source] = sync.bpm
        if sync.running and (last is None or abs(sync.bpm - last) > 1e-3):
            self.params.set("bpm", sync.bpm)

    def _tell_sources(self, names: list[str]) -> None:
        if not names or not self.sources:
            return
        values = {n: self.params.target(n) for n in names if self.params.spec(n).kind != "trigger"}
        for source in self.sources:
            source.tell("changed", values)

    def _pointer(self, event: Any) -> None:
        """The mouse paints with the brush layer, if there is one."""
        brush, pg = self.mixer.brush, self.window.pg
        if brush is None or event.type not in (pg.MOUSEBUTTONDOWN, pg.MOUSEMOTION, pg.MOUSEBUTTONUP):
            return
        if event.type == pg.MOUSEBUTTONUP:
            brush.lift()
            return
        if event.type == pg.MOUSEMOTION and not event.buttons[0]:
            return
        point = self.window.to_picture(event.pos, self.config.gen_size)
        if point is None:
            brush.lift()
        else:
            brush.paint(point[0], point[1], drag=event.type == pg.MOUSEMOTION)

    # -- scenes (the Director calls these; see vj.engine.director.Stage) ----------------------------------------
    def apply_scene(self, scene: Scene, reload: bool) -> None:
        now = self.clock.now()
        fade = scene.transition if self.frames else 0.0  # the scene a show starts with is there from the first frame
        if not reload and fade > 0 and self._last_picture is not None:
            self._fade = SceneFade(self._last_picture, self.camera, now, fade)
        # A scene is a source like any other: its values go through the bus and land with the next frame's drain.
        post = self.bus.post

        def look(name: str, value: Any) -> None:
            if fade > 0:
                post("scene", name, value, "set", glide=fade)
            else:
                post("scene", name, value, "jump")

        for name, spec in self.params.specs.items():
            if name in scene.params:
                look(name, scene.params[name])
            elif spec.look:
                look(name, spec.default)  # a scene sets the whole look
        self._prompt_commit = None
        if scene.prompts:
            post("scene", "prompt", scene.prompts[0])
            if scene.blend is not None:
                post("scene", "prompt_b", scene.prompts[1])
                look("prompt_blend", scene.blend)
        name, options = scene.generator or self.config.generator, dict(scene.generator_options)
        if name == self.config.generator:
            options = {**self.config.generator_options, **options}  # the command line's model, refined by the scene
        self._replay_feed = None
        if scene.kind == "replay":
            replay = scene.replay or ReplayOptions()
            if replay.feed:
                self._replay_feed = (replay, now, 0)
                if self.keeper is not None:
                    self.keeper.fetch(replay.count, self.config.gen_size)
            else:
                now_name, now_options = self._generator_now
                if now_name != "lcm":
                    now_name, now_options = self.config.generator, self.config.generator_options
                model = {k: v for k, v in now_options.items() if k in DECODER_OPTIONS}
                name = "replay"
                options = {
                    "folder": self.config.dreams,
                    "count": replay.count,
                    "seconds": replay.seconds,
                    "morph": replay.morph,
                }
                if now_name == "lcm":  # a show on a model morphs its dreams' latents through the model's autoencoder
                    options.update(latents=True, **model)
        if (name, options) != self._generator_now and self.worker is not None:
            self.worker.switch(base.factory(name, self.config.gen_size, **options), name)
            self._generator_now = (name, options)
        if scene.layers is not None:
            self._set_layers(list(scene.layers), fade)
        if self.config.mapping is not None:
            mapping = merge(self.config.mapping, scene.mapping) if scene.mapping else self.config.mapping
            self._quantize = mapping.quantize
            for source in self.sources:
                source.tell("remap", mapping)
        log.info("scene %s: %s", self.director.number, scene.name)

    def next_prompt(self, prompt: str, transition: float) -> None:
        """Fade toward ``prompt`` through the prompt fader, then make it the prompt (see ``_step_prompt``)."""
        self._step_prompt(force=True)
        self.params.set("prompt_b", prompt)
        self.params.jump("prompt_blend", 0.0)
        self.params.set("prompt_blend", 1.0, glide=transition)
        self._prompt_commit = prompt

    def _step_prompt(self, force: bool = False) -> None:
        if self._prompt_commit is not None and (force or self.params["prompt_blend"] >= 1.0):
            # Fully faded: the same look with prompt = the new one and the fader back at 0. No visible change.
            self.params.set("prompt", self._prompt_commit)
            self.params.set("prompt_b", "")
            self.params.jump("prompt_blend", 0.0)
            self._prompt_commit = None

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop thread at the start of the next frame. Safe from any thread: how helper threads
        hand results to the one owner of the show's state."""
        self._inbox.put(fn)

    def _run_inbox(self) -> None:
        while True:
            try:
                fn = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            except Exception:
                log.exception("a message to the loop failed")

    def _set_layers(self, specs: list[LayerSpec], fade: float) -> None:
        """Start the scene's layers off the loop thread (decoding files takes time); the loop swaps them in only
        when they say they are ready, so it never draws a layer whose start-up has not run."""
        new = Mixer(specs, self.config.gen_size)
        self._layers_wanted = new

        def ready() -> None:
            if self._layers_wanted is not new:  # a newer scene asked for other layers meanwhile
                threading.Thread(target=new.stop, name="vj-layers-stop", daemon=True).start()
                return
            old, self.mixer = self.mixer, new
            for layer, spec in zip(new.layers, specs, strict=True):
                self.params.jump(layer.param, 0.0)
                self.params.set(layer.param, spec.opacity, glide=fade)
            threading.Thread(target=old.stop, name="vj-layers-stop", daemon=True).start()

        def start() -> None:
            try:
                new.start()
            except Exception:
                log.exception("starting the scene's layers failed; the old ones stay")
                return
            self.call_soon(ready)

        threading.Thread(target=start, name="vj-layers", daemon=True).start()

    def _switch_scene(self, e: Event) -> None:
        self._request_scene(self.director.resolve(e.value))

    def _request_scene(self, scene: Scene) -> None:
        """Switch now, or on the next beat or bar when the scene (or the mapping) says so; the newest request wins."""
        quantize = scene.quantize or self._quantize or "none"
        if quantize != "none" and self.tempo.running and self.frames:
            self._pending_scene = (scene, self.tempo.next_boundary(quantize))
            return
        self._pending_scene = None
        self.director.switch(self.director.scenes.index(scene) + 1, self, self.clock.now())

    def _follow_beat(self, before: float, now: float) -> None:
        """What waits for the beat: a quantised scene switch, a scene's sparks on the downbeat."""
        beat = self.tempo.beat
        if self._pending_scene is not None and (beat >= self._pending_scene[1] or not self.tempo.running):
            wanted, due = self._pending_scene
            self._pending_scene = None
            # The folder may have changed meanwhile: the same file, reloaded, is the same scene; a removed one is gone.
            scene = next((s for s in self.director.scenes if s.file == wanted.file), None)
            if scene is None:
                log.warning("scene %s was removed before its switch came", wanted.name)
            else:
                number = self.director.scenes.index(scene) + 1
                self.director.switch(number, self, now)
                self.last_quantized = {"scene": number, "due": due, "beat": round(beat, 4)}
        scene = self.director.active
        bars = scene.spark_bars if scene is not None else 0
        if bars and bars_crossed(before, beat, bars) and self.sparks.request("beat", now, 0.0):
            self._spark_image = None

    def _modulate(self, values: dict[str, Any], dt: float) -> dict[str, Any]:
        """The active scene's LFOs on top of the parameters' values (the values themselves stay as set)."""
        scene = self.director.active
        active = {lfo.param: lfo for lfo in scene.lfos} if scene is not None else {}
        ease = min(1.0, dt / LFO_FADE_S)
        for name in set(active) | set(self._lfos):
            lfo, level = self._lfos.get(name, (active.get(name), 0.0))
            lfo = active.get(name, lfo)
            assert lfo is not None
            level = min(1.0, level + ease) if name in active else max(0.0, level - ease)  # a straight ramp
            if name not in active and level == 0.0:
                del self._lfos[name]
                continue
            self._lfos[name] = (lfo, level)
            swing = level * lfo.depth * wave(lfo.shape, self.tempo.beat / lfo.beats, seed=zlib.crc32(name.encode()))
            values[name] = self.params.spec(name).check(values[name] + swing)
        return values

    def _replay(self, e: Event) -> None:
        scene = next((s for s in self.director.scenes if s.kind == "replay"), None)
        if scene is None:
            raise ParamError('there is no replay scene (add one with kind = "replay" to scenes/)')
        self._request_scene(scene)

    def _feed_replay(self, now: float) -> Any:
        """A replay scene with feed = true: every few seconds, the next stored dream blooms into the live loop."""
        if self._replay_feed is None or self.keeper is None:
            return None
        options, due, index = self._replay_feed
        images = self.keeper.fetched
        if now < due or not images:
            return None
        self._replay_feed = (options, now + options.seconds, index + 1)
        self.sparks.request("replay", now, 0.0)
        return images[index % len(images)]

    def _scene_name(self) -> str | None:
        return self.director.active.name if self.director.active else None

    def _save(self) -> None:
        frame, worker = self._latest, self.worker
        if self.keeper is None:
            log.warning("save: no dream store (run with --dreams DIR, or without --no-dreams)")
            return
        if frame is None or worker is None:
            return
        base_score = frame.aesthetics.mean if frame.aesthetics is not None else 0.0
        self.keeper.save(
            frame.image,
            frame.params,
            base_score,
            scene=self._scene_name(),
            generator=worker.stats.producing,
            latent=frame.latent,
        )

    def _stop_motion(self, e: Event) -> None:
        for name in ("zoom", "pan_x", "pan_y", "rotate"):
            self.params.set(name, 0.0)

    # -- the loop ------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        import cv2

        from vj.control.keys import Keyboard
        from vj.output.hud import Hud
        from vj.output.window import Window

        # Two threads share the cores: OpenCV's own thread pool on top would only make them fight.
        cv2.setNumThreads(1)
        limit_malloc_arenas()
        cfg = self.config
        self.window = Window(
            cfg.size,
            fullscreen=cfg.fullscreen,
            display=cfg.display,
            headless=cfg.headless,
            fit=cfg.fit,  # type: ignore[arg-type]
        )
        self.hud = Hud(self.window.pg)
        self.hud.visible = cfg.hud
        self.keyboard = Keyboard(self.window.pg, self.bus)
        fallback = base.factory("sketch", cfg.gen_size)  # always: a scene's generator (replay) may fail on sketch too
        self.worker = GeneratorWorker(self._build, cfg.gen_size, name=cfg.generator, fallback=fallback, max_fps=cfg.fps)
        self.mixer.start()
        if self.keeper is not None:
            self.keeper.start()
        if cfg.scene is not None:
            self.director.switch(cfg.scene, self, self.clock.now())  # before the worker builds a generator
        self.worker.start()
        for source in self.sources:
            source.start(self.bus)
        self.params.take_changed()
        self._tell_sources(list(self.params.specs))
        try:
            self._loop()
            self.apply(self.bus.drain())  # what was posted before the stop counts: the report shows it
        except KeyboardInterrupt:
            log.info("interrupted")
        finally:
            self._stopping.set()
            self._vram_at_end = (vram_mb(),)
            for source in reversed(self.sources):
                try:
                    source.stop()
                except Exception:
                    log.exception("stopping %s failed", source)
            self._record(False)
            self.worker.stop()
            self.mixer.stop()
            if self.keeper is not None:
                self.keeper.stop()
            self._window_state = (list(self.window.size), bool(self.window.fullscreen))
            self.window.close()
        return self.report().as_dict()

    def _loop(self) -> None:
        cfg, clock = self.config, self.clock
        period = 1.0 / cfg.fps
        start = last = next_due = clock.now()
        while not self._stopping.is_set():
            now = clock.now()
            if self.frames:
                interval = now - last
                self.interval_ms.add(interval * 1000)
                if interval > 1.5 * period:
                    self.late_frames += 1
            dt = min(MAX_DT, now - last)
            last = now
            self.step(now, dt)
            if self.frames == 1:
                log.info("first frame on screen")
            self.frame_ms.add((clock.now() - now) * 1000)
            for callback in self.on_frame:
                callback(self)
            self.elapsed = clock.now() - start
            if (cfg.seconds is not None and self.elapsed >= cfg.seconds) or (
                cfg.frames is not None and self.frames >= cfg.frames
            ):
                break
            next_due += period
            delay = next_due - clock.now()
            if delay > 0:
                clock.sleep(delay)
            elif delay < -period:
                next_due = clock.now()  # fell behind: do not rush to catch up, just carry on from now
        self.elapsed = clock.now() - start

    def step(self, now: float, dt: float) -> None:
        """One display frame at time ``now``, ``dt`` seconds after the last one."""
        worker, window = self.worker, self.window
        assert worker is not None
        for event in window.events():
            self.keyboard.handle(event)
            self._pointer(event)
        self._run_inbox()
        self.apply(self.bus.drain())
        self.director.step(self, now)
        self._step_prompt()
        self._tell_sources(self.params.take_changed())
        self.params.step(dt)
        values = self.params.values()
        before = self.tempo.advance(dt, float(values["bpm"]))
        self._follow_beat(before, now)
        values = self._modulate(values, dt)
        self.values = values  # what this frame used: the parameters with the scene's LFOs on top
        for name in self.params.take_fired():
            if name == "spark" and self.sparks.request("manual", now, float(values["spark_cooldown"])):
                self._spark_image = None
            elif name == "save":
                self._save()
        if not values["freeze"]:
            self.camera = motion.advance(self.camera, values, dt)
            self.mixer.step(dt)
        replayed = self._feed_replay(now)
        if replayed is not None:
            self._spark_image = replayed
        worker.submit(Job(values, self.camera, self.sparks.seq, self.mixer.loop_inputs(values), self._spark_image))
        worker.check()
        frame = worker.poll()
        if frame is not None:
            self.blender.push(frame, now)
            self.shown += 1
            self._latest = frame
            if frame.vitals is not None and self.sparks.observe(frame.vitals, values, now, frame.bloom is not None):
                self._spark_image = None
            if self.keeper is not None and frame.aesthetics is not None:
                self.keeper.offer(
                    frame.image,
                    frame.params,
                    frame.aesthetics.mean,
                    scene=self._scene_name(),
                    generator=worker.stats.producing,
                    now=now,
                    latent=frame.latent,
                )
        picture = self.blender.compose(self.camera, now)
        if picture is not None:
            picture = self.mixer.compose_top(picture, values)
            if self._fade is not None:
                picture = self._fade.apply(picture, self.camera, now)
                if self._fade.done(now):
                    self._fade = None
            self._last_picture = picture
            level = 0.0 if values["blackout"] else float(values["brightness"])
            picture = self.output.apply(picture, level, dt)
        if self.hud.due(now):
            self.hud.update(self._hud_lines(now), now)
        window.present(picture, self.hud.surface())
        self.presented = picture  # what the projector shows (no HUD), for recorders and checks
        if bool(values["record"]) != (self.recorder is not None):  # started or stopped by any source
            self._record(bool(values["record"]))
        if self.recorder is not None:
            self.recorder.offer(picture, now)
        for source in self._viewers:
            source.offer(picture, now)
        self.frames += 1

    def _record_report(self) -> dict[str, Any]:
        """The latest recording's figures, and every file this show wrote."""
        latest = self.recordings[-1].report()
        latest["files"] = [str(r.path) for r in self.recordings]
        return latest

    def _record(self, on: bool) -> None:
        """Start a new recording (a new file each time) or finish the one under way."""
        if not on:
            if self.recorder is not None:
                self.recorder.stop()
                self.recorder = None
            return
        import time as wall

        path = self.config.record or Path("recordings") / wall.strftime("vj-%Y%m%d-%H%M%S.mp4")
        self.recorder = Recorder(next_path(path), self.config.fps)
        self.recorder.start()
        self.recordings.append(self.recorder)
        log.info("recording to %s", self.recorder.path)

    # -- what the performer and the report see ----------------------------------------------------------
    def _hud_lines(self, now: float) -> list[str]:
        from vj.control.keys import HELP

        p, w = self.params, self.worker
        assert w is not None
        recent = self.interval_ms.recent_percentile(50)
        fps = 1000 / recent if recent else 0.0
        stats = w.stats
        gen = stats.describe()
        vram = vram_mb()
        if vram is not None:
            gen += f"  VRAM {vram:.0f} MB"
        lines = [
            f"vj {fps:.0f} fps  frame {self.frame_ms.recent_percentile(50):.1f} ms"
            f" (p99 {self.frame_ms.recent_percentile(99):.1f})   {gen}   errors {stats.errors}"
            f"  restarts {stats.restarts}",
            f"zoom {p['zoom']:+.2f}  pan {p['pan_x']:+.2f} {p['pan_y']:+.2f}  rotate {p['rotate']:+.2f}"
            f"  speed {p['speed']:.2f}  strength {p['strength']:.2f}  chaos {p['chaos']:.2f}"
            + ("  FROZEN" if p["freeze"] else "")
            + ("  BLACKOUT" if p["blackout"] else "")
            + (f"  REC {self.recorder.seconds:.0f} s" if self.recorder is not None else ""),
            f"prompt: {p['prompt'][:90]}",
        ]
        d = self.director
        if d.active is not None:
            lines.append(f"scene {d.number}/{len(d.scenes)}: {d.active.name}")
        lines.append(self._tempo_line())
        for error in list(d.errors.values())[:2]:
            lines.append(f"SCENE NOT RELOADED: {error}"[:140])
        if self.keeper is not None and (line := self.keeper.status()):
            lines.append(line[:160])
        node = stats.node
        if node is not None and not node["connected"]:
            lines.append(f"NODE {node['address']} LOST: a local stand-in dreams, reconnecting")
        elif node is not None:
            lines.append(f"node {node['address']}  round trip {node['rtt_ms']} ms  {node['bytes_per_frame']} B/frame")
        if stats.fallback and stats.last_error:
            lines.append(f"{stats.name.upper()} FAILED, showing {stats.fallback}: {stats.last_error}"[:160])
        sp = self.sparks
        spark = f"sparks {sp.total} (auto {sp.auto})"
        if sp.blooming:
            spark += "  BLOOMING"
        lines.append(spark + (f"   layers {len(self.mixer.layers)}" if self.mixer.layers else ""))
        if self.last_event is not None:
            lines.append(f"last: {self.last_event.describe()}  ({now - self.last_event_at:.0f} s ago)")
        status = [line for line in (s.status() for s in self.sources) if line]
        if status:
            lines.append("   ".join(status))
        trouble = health_line(self.sources)
        if trouble:
            lines.append(trouble)
        if self.keyboard is not None and self.keyboard.typing is not None:
            lines.append(f"prompt> {self.keyboard.typing}_")
        lines.extend(HELP)
        return lines

    def _tempo_line(self) -> str:
        t = self.tempo
        beats = "".join("#" if i == int(t.phase) else "." for i in range(4)) if t.running else "...."
        line = f"tempo {t.bpm:.1f} BPM  [{beats}]  bar {t.bar + 1}  ({t.source}"
        line += f", {t.peers} peer{'s' if t.peers != 1 else ''})" if t.source == "link" else ")"
        if t.taps.recent(time.monotonic()) and (t.source != "tap" or t.taps.count < 3):
            line += f"  tap {t.taps.count}"
        if self._pending_scene is not None:
            line += f"  {self._pending_scene[0].name} on beat {self._pending_scene[1]:.0f}"
        return line

    def report(self) -> Report:
        stats = self.worker.stats if self.worker else None
        elapsed = max(self.elapsed, 1e-9)
        gen = GeneratorSection(name=self.config.generator, size=list(self.config.gen_size))
        if stats is not None:
            gen.fps = round(stats.fps, 2)
            gen.stand_in, gen.stand_in_fps = stats.stand_in or None, round(stats.stand_in_fps, 2)
            gen.errors, gen.restarts, gen.hangs = stats.errors, stats.restarts, stats.hangs
            gen.fallback, gen.state, gen.last_error = stats.fallback, stats.state, stats.last_error
            gen.generated_by = dict(stats.generated_by)
            gen.load_s = round(stats.load_s, 2) if stats.load_s is not None else None
            gen.node, gen.engine = stats.node, stats.engine
            gen.gpu_paused = stats.gpu_paused
        gen.vram_mb = self._vram_at_end[0] if self._vram_at_end is not None else vram_mb()
        return Report(
            seconds=round(self.elapsed, 3),
            frames=self.frames,
            fps=round(self.frames / elapsed, 2),
            generated=stats.generated if stats else 0,
            shown=self.shown,
            frame_ms=self.frame_ms.summary(),
            interval_ms=self.interval_ms.summary(),
            late_frames=self.late_frames,
            params={n: self.params.target(n) for n, s in self.params.specs.items() if s.kind != "trigger"},
            events=self.bus.counts(),
            rejected=self.bus.rejected_counts(),
            sparks=SparkSection(**self.sparks.report()),
            scenes=SceneSection(**self.director.report()),
            dreams_saved=self.keeper.rows if self.keeper is not None else 0,
            dreams=self.keeper.report() if self.keeper is not None else None,
            generator=gen,
            window=WindowSection(self._window_state[0], self._window_state[1], self.config.headless),
            layers=self.mixer.describe(),
            sources={s.name: s.health() for s in self.sources},
            sections={
                **{s.name: section for s in self.sources if (section := s.report()) is not None},
                **({"record": self._record_report()} if self.recordings else {}),
            },
            tempo={**self.tempo.report(), "quantized": self.last_quantized},
        )

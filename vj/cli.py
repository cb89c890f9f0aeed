"""The ``vj`` command.

Heavy libraries (pygame, OpenCV, torch, faster-whisper) are imported inside the commands that use them, so
``vj --help`` answers at once on any machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

from vj import __version__
from vj.errors import ConfigError, VjError

log = logging.getLogger("vj")


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size; write WIDTHxHEIGHT, e.g. 1920x1080")
    w, h = int(m[1]), int(m[2])
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise argparse.ArgumentTypeError(f"{w}x{h} is out of range: each side 16..16384")
    return w, h


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} must be above 0")
        return value

    return parse


def _add_run(sub: Any) -> None:
    from vj.gen import GENERATORS

    gens = "; ".join(f"{k}: {v[1]}" for k, v in GENERATORS.items())
    p = sub.add_parser(
        "run",
        help="run the show",
        description="Open the window and dream. Keys:" + _keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("picture")
    g.add_argument(
        "--generator", metavar="NAME", help=f"{gens}; or package.module:Class (default: sketch, or lcm with --model)"
    )
    g.add_argument("--prompt", help="what to dream of (default: the prompt in the parameter table)")
    g.add_argument("--seed", type=int, help="random seed of the dream")
    g.add_argument("--gen-size", type=_size, default=(512, 512), metavar="WxH", help="generator resolution (512x512)")
    (
        g.add_argument(
            "--layer",
            action="append",
            default=[],
            metavar="SPEC",
            help="an overlay layer, up to 4: KIND=SOURCE[,mode=M][,into=top|loop][,opacity=X]; KIND is "
            "image, video, camera, solid, gradient or brush; M is normal, add, screen, multiply or "
            "difference. E.g. video=clip.mp4,mode=screen,into=loop  or  brush,mode=add",
        ),
    )
    _add_model_options(p.add_argument_group("model (the lcm generator)"))
    w = p.add_argument_group("window")
    w.add_argument("--fullscreen", action="store_true", help="full screen (F toggles)")
    w.add_argument("--display", type=int, default=0, metavar="N", help="which display/projector, from 0")
    w.add_argument("--size", type=_size, default=(1280, 720), metavar="WxH", help="window size (1280x720)")
    w.add_argument(
        "--fit",
        choices=("contain", "cover"),
        default="contain",
        help="contain: whole picture, black bars; cover: fill the screen, crop the rest",
    )
    w.add_argument("--fps", type=_positive(float), default=60.0, help="display frame rate (60)")
    w.add_argument("--no-hud", action="store_true", help="start with the HUD hidden (Tab shows it)")
    w.add_argument("--headless", action="store_true", help="no window (SDL's dummy video driver), same loop")
    sc = p.add_argument_group("scenes and dreams")
    sc.add_argument("--scenes", metavar="DIR", help="folder of scene files, watched for edits (default: scenes/)")
    sc.add_argument("--scene", metavar="N|NAME|FILE", help="start with this scene (a number from 1, a name, a file)")
    sc.add_argument(
        "--dreams",
        metavar="DIR",
        help="dream store folder (default: $XDG_DATA_HOME/vj/dreams, usually ~/.local/share/vj/dreams)",
    )
    sc.add_argument("--no-dreams", action="store_true", help="keep no dreams this time")
    sc.add_argument("--keep", type=_positive(int), default=24, metavar="K", help="best dreams kept per session (24)")
    sc.add_argument("--clip", metavar="MODEL", help="score dreams with a CLIP model too (Hugging Face id or folder)")
    v = p.add_argument_group("voice")
    v.add_argument(
        "--voice",
        nargs="?",
        const="ptt",
        choices=("off", "ptt", "vad"),
        help="voice commands: ptt = push-to-talk (hold V, a mapped pad, or /vj/ptt 1|0; the default when "
        "--voice is given alone), vad = always listening (off unless given)",
    )
    v.add_argument("--voice-file", metavar="AUDIO", help="play an audio file through the voice pipeline, in real time")
    v.add_argument("--voice-device", metavar="NAME|N", help="microphone: a name, part of one, or a number")
    v.add_argument("--voice-model", metavar="NAME|DIR", help="faster-whisper model (default: the offline tiny.en)")
    v.add_argument("--voice-beam", type=_positive(int), default=5, metavar="N", help="beam size (5)")
    c = p.add_argument_group("control (OSC, MIDI)")
    c.add_argument(
        "--mapping", metavar="FILE", help="mapping file or name in mappings/ (default: mappings/default.toml)"
    )
    c.add_argument("--osc-host", default="127.0.0.1", help="address to listen on for OSC (0.0.0.0: every network)")
    c.add_argument("--osc-port", type=int, metavar="PORT", help="OSC port (default 9000; 0 picks a free one)")
    c.add_argument("--no-osc", action="store_true", help="do not listen for OSC")
    c.add_argument("--osc-out", type=_host_port, metavar="HOST:PORT", help="send every parameter change here")
    c.add_argument("--midi-in", metavar="NAME", help="MIDI input port, or a part of its name")
    c.add_argument("--midi-out", metavar="NAME", help="MIDI output for controller LEDs and motor faders")
    c.add_argument(
        "--midi-backend",
        metavar="MODULE",
        help="mido backend, e.g. mido.backends.rtmidi/UNIX_JACK (default: $MIDO_BACKEND or ALSA)",
    )
    s = p.add_argument_group("run time and report")
    stop = s.add_mutually_exclusive_group()
    stop.add_argument("--seconds", type=_positive(float), metavar="S", help="stop after S seconds")
    stop.add_argument("--frames", type=_positive(int), metavar="N", help="stop after N display frames")
    s.add_argument("--report", metavar="FILE|-", help="write a JSON report at exit (- for standard output)")
    p.set_defaults(func=cmd_run)


def _add_model_options(m: Any) -> None:
    m.add_argument(
        "--model",
        metavar="ID|DIR|FILE",
        help="a Hugging Face id already downloaded (vj model fetch), a diffusers folder, or one SD 1.x .safetensors "
        "checkpoint (default: SimianLuo/LCM_Dreamshaper_v7)",
    )
    m.add_argument("--model-config", metavar="ID|DIR", help="where a single .safetensors file takes its configs from")
    m.add_argument("--steps", type=int, choices=range(1, 9), metavar="1..8", help="denoising steps a frame (4)")
    m.add_argument("--guidance", type=float, metavar="W", help="LCM guidance scale (8)")
    m.add_argument("--device", metavar="auto|cuda|mps|cpu", help="where the model runs (auto: the GPU if any)")
    m.add_argument("--dtype", choices=("auto", "float16", "bfloat16", "float32"), help="auto: float16 on a GPU")
    m.add_argument(
        "--tiny-vae",
        nargs="?",
        const="madebyollin/taesd",
        metavar="ID|DIR",
        help="a tiny autoencoder for much cheaper encode/decode (default when given alone: madebyollin/taesd)",
    )
    m.add_argument("--compile", action="store_true", help="torch.compile the UNet (slow start, faster frames)")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"'{text}' is not HOST:PORT, e.g. 127.0.0.1:9001")
    return host, int(port)


def _keys_help() -> str:
    from vj.control.keys import HELP

    return "\n  ".join(("", *HELP))


class _Interrupts:
    """SIGINT and SIGTERM end the show cleanly, with its report, at any moment: during start-up (the show then
    ends before its first frame), while it runs, and when pressed again while it closes. Five presses leave at
    once, for a show stuck in native code."""

    FORCE = 5

    def __init__(self) -> None:
        self.show: Any = None
        self.count = 0

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count >= self.FORCE:
            os.write(2, b"vj: interrupted again and again; leaving now without a report\n")
            os._exit(130)
        if self.count == 1:
            os.write(2, b"vj: stopping...\n")
        if self.show is not None:
            self.show.stop()

    @property
    def pending(self) -> bool:
        return self.count > 0


interrupted = _Interrupts()


def cmd_run(args: argparse.Namespace) -> int:
    from vj.engine.loop import Show, ShowConfig

    interrupted.install()
    log.info("starting the show (Ctrl+C or SIGTERM end it cleanly, with its report)")

    params: dict[str, Any] = {}
    if args.prompt is not None:
        params["prompt"] = args.prompt
    if args.seed is not None:
        params["seed"] = args.seed
    from vj.control.mapping import default_mapping, load_mapping
    from vj.layers.spec import parse_layer_option

    layers = [parse_layer_option(text) for text in args.layer]
    mapping = load_mapping(args.mapping) if args.mapping else default_mapping()
    scenes, scenes_dir, start = _scenes(args)
    generator, generator_options = _generator(args)
    config = ShowConfig(
        size=args.size,
        gen_size=args.gen_size,
        fps=args.fps,
        fullscreen=args.fullscreen,
        display=args.display,
        headless=args.headless,
        fit=args.fit,
        seconds=args.seconds,
        frames=args.frames,
        generator=generator,
        generator_options=generator_options,
        hud=not args.no_hud,
        params=params,
        layers=layers,
        mapping=mapping,
        scenes=scenes,
        scenes_dir=scenes_dir,
        scene=start,
        dreams=None if args.no_dreams else _dreams_folder(args.dreams),
        dreams_keep=args.keep,
        clip=_clip(args.clip),
    )
    show = Show(config)
    voice = _voice_source(args, tuple(s.name for s in scenes))
    if voice is not None:
        show.add_source(voice)
    for source in _control_sources(args, mapping):
        show.add_source(source)
    interrupted.show = show
    if interrupted.pending:  # Ctrl+C during start-up: no frames, but the report all the same
        show.stop()
    report = show.run()
    _write_report(report, args.report)
    return 0


_MODEL_OPTIONS = ("model", "model_config", "steps", "guidance", "device", "dtype", "tiny_vae", "compile")


def _generator(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The generator's name and options: the model options belong to lcm (and give it, if no other is named)."""
    options = {key: getattr(args, key) for key in _MODEL_OPTIONS if getattr(args, key) not in (None, False)}
    name = args.generator or ("lcm" if options else "sketch")
    if options and name != "lcm":
        flags = ", ".join("--" + k.replace("_", "-") for k in options)
        raise ConfigError(f"{flags}: model options are for the lcm generator, not '{name}'", fix="--generator lcm")
    return name, options


def _scenes(args: argparse.Namespace) -> tuple[list[Any], Any, Any]:
    """The scene list, the folder to watch, and the scene to start with."""
    from pathlib import Path

    from vj.scenes import SCENES_DIR, load_scene, load_scenes

    folder = Path(args.scenes) if args.scenes else (SCENES_DIR if SCENES_DIR.is_dir() else None)
    scenes = load_scenes(folder) if folder is not None else []
    start: Any = args.scene
    if start is not None and start.endswith(".toml"):
        path = Path(start)
        scene = next((s for s in scenes if Path(s.file).resolve() == path.resolve()), None)
        if scene is None:
            scene = load_scene(path)  # a scene from elsewhere joins the list at its end
            scenes.append(scene)
        start = scenes.index(scene) + 1
    return scenes, folder, start


def _voice_source(args: argparse.Namespace, scenes: tuple[str, ...]) -> Any:
    mode = args.voice or ("vad" if args.voice_file else "off")
    if mode == "off":
        return None
    try:
        from vj.control.voice.recognize import RecognizerOptions
        from vj.control.voice.source import VoiceOptions, VoiceSource
    except ImportError as e:
        raise ConfigError(
            f"voice needs its extra packages ({e.name} is missing)", fix='pip install -e ".[voice]"'
        ) from None
    options = VoiceOptions(
        mode="vad" if mode == "vad" else "ptt",
        device=args.voice_device,
        file=args.voice_file,
        recognizer=RecognizerOptions(model=args.voice_model, beam_size=args.voice_beam),
    )
    source = VoiceSource(options, scenes)
    source.open()  # a missing microphone or file is known before the show starts
    return source


def _dreams_folder(arg: str | None) -> Any:
    from pathlib import Path

    from vj.dreams.store import default_folder

    return Path(arg) if arg else default_folder()


def _clip(arg: str | None) -> Any:
    if not arg:
        return None
    from vj.dreams.clip import ClipScorer

    return ClipScorer(arg)


def _control_sources(args: argparse.Namespace, mapping: Any) -> list[Any]:
    sources: list[Any] = []
    if not args.no_osc:
        from vj.control.osc import OscServer

        osc = OscServer(args.osc_host, 9000 if args.osc_port is None else args.osc_port, mapping)
        if args.osc_port is not None:
            osc.bind()  # a port asked for by name must work, or the show does not start
        sources.append(osc)
    if args.osc_out:
        from vj.control.osc import OscFeedback

        sources.append(OscFeedback(*args.osc_out))
    if args.midi_in or args.midi_out or (args.mapping and mapping.device):
        from vj.control.midi import MidiInput

        sources.append(MidiInput(args.midi_in, mapping, out_query=args.midi_out, backend=args.midi_backend))
    return sources


def cmd_osc_list(args: argparse.Namespace) -> int:
    from vj.control.osc import address_table

    rows = address_table()
    width = max(len(r[0]) for r in rows)
    kinds = max(len(r[1]) for r in rows)
    for address, kind, doc in rows:
        print(f"{address:<{width}}  {kind:<{kinds}}  {doc}")
    print('\nrelative (Resolume): /vj/<param> "+"|"-" <amount>.  bundles: applied at once.')
    return 0


def cmd_midi_list(args: argparse.Namespace) -> int:
    from vj.control.midi import port_names, use_backend

    backend = use_backend(args.midi_backend)
    print(f"backend: {backend}")
    for kind in ("input", "output"):
        names = port_names(kind)
        print(f"{kind}s:" + ("" if names else " none"))
        for n in names:
            print(f"  {n}")
    return 0


def cmd_midi_learn(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vj.control.learn import learn
    from vj.control.midi import use_backend

    use_backend(args.midi_backend)
    learn(args.midi_in, Path(args.out))
    return 0


def cmd_mapping_check(args: argparse.Namespace) -> int:
    from vj.control.mapping import load_mapping

    for name in args.files:
        m = load_mapping(name)
        counts = ", ".join(f"{v} {k}" for k, v in m.summary.items() if v)
        print(f"{m.file}: ok ({counts or 'empty'}{f', device {m.device!r}' if m.device else ''})")
    return 0


def _add_control_commands(sub: Any) -> None:
    osc = sub.add_parser("osc", help="OSC: list the addresses vj answers").add_subparsers(dest="what", required=True)
    osc.add_parser("list", help="every OSC address with its type and range").set_defaults(func=cmd_osc_list)

    midi = sub.add_parser("midi", help="MIDI: list ports, learn a mapping").add_subparsers(dest="what", required=True)
    ls = midi.add_parser("list", help="MIDI input and output ports")
    ls.add_argument("--midi-backend", metavar="MODULE", help="mido backend (default: $MIDO_BACKEND or ALSA)")
    ls.set_defaults(func=cmd_midi_list)
    lr = midi.add_parser(
        "learn",
        help="move a control, pick a target: writes a mapping file",
        description="Move a control on the controller, type the parameter or action it should "
        "drive, repeat. Each entry is saved at once. Ctrl-C or Ctrl-D ends.",
    )
    lr.add_argument("--midi-in", metavar="NAME", help="input port or part of its name (default: the first)")
    lr.add_argument("--out", default="mappings/learned.toml", help="mapping file to write (mappings/learned.toml)")
    lr.add_argument("--midi-backend", metavar="MODULE", help="mido backend (default: $MIDO_BACKEND or ALSA)")
    lr.set_defaults(func=cmd_midi_learn)

    mp = sub.add_parser("mapping", help="check mapping files").add_subparsers(dest="what", required=True)
    ck = mp.add_parser("check", help="load and check mapping files; errors name file, key and fix")
    ck.add_argument("files", nargs="+", metavar="FILE")
    ck.set_defaults(func=cmd_mapping_check)


def cmd_scenes_list(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vj.scenes import SCENES_DIR, load_scenes

    for scene in load_scenes(Path(args.scenes) if args.scenes else SCENES_DIR):
        print(scene.name)
    return 0


def cmd_scenes_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vj.scenes import SCENES_DIR, load_scenes

    scenes = load_scenes(Path(args.scenes) if args.scenes else SCENES_DIR)
    for n, scene in enumerate(scenes, 1):
        what = scene.kind if scene.kind != "dream" else (scene.prompts[0] if scene.prompts else "")
        print(f"{n:2d}  {scene.name:<20}  {Path(scene.file).name:<24}  {what}")
    print(f"{len(scenes)} scenes ok")
    return 0


def _store(args: argparse.Namespace) -> Any:
    from vj.dreams.store import DreamStore

    return DreamStore(_dreams_folder(args.dreams), create=False)


def cmd_dreams_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        dreams = store.top(args.top, session=args.session, saved=True if args.saved else None)
        print(f"{store.count()} dreams in {store.folder}")
        for d in dreams:
            print(d.line())
    finally:
        store.close()
    return 0


def cmd_dreams_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    store = _store(args)
    try:
        dreams = store.top(args.top, session=args.session, saved=True if args.saved else None)
        files = store.export(dreams, Path(args.out))
    finally:
        store.close()
    print(f"exported {len(files)} dreams to {args.out} (with dreams.json)")
    return 0


def cmd_dreams_prune(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        removed, files = store.prune(args.keep)
        print(
            f"kept the best {args.keep} and every saved dream: removed {removed} dreams, {files} stray files; "
            f"{store.count()} left (integrity: {store.integrity()})"
        )
    finally:
        store.close()
    return 0


def cmd_dream(args: argparse.Namespace) -> int:
    from vj.dreams.explore import explore

    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    folder = _dreams_folder(args.dreams)
    generator, options = _generator(args)
    print(
        f"dreaming '{args.prompt}' for {seconds:g} s with {generator} at {args.gen_size[0]}x{args.gen_size[1]},"
        f" strategy {args.strategy}; keeping the best {args.keep} in {folder}"
    )
    result = explore(
        args.prompt,
        seconds,
        args.strategy,
        folder,
        generator=generator,
        generator_options=options,
        size=args.gen_size,
        frames=args.frames,
        keep=args.keep,
        seed=args.seed,
        clip=_clip(args.clip),
    )
    print(
        f"{result.dreams} dreams in {result.seconds:.1f} s: {result.rate:.2f} dreams/s; best score "
        f"{result.best:.3f}; {result.kept} kept (session {result.session})"
    )
    return 0


def cmd_voice_transcribe(args: argparse.Namespace) -> int:
    from vj.control.voice.grammar import parse
    from vj.control.voice.recognize import Recognizer, RecognizerOptions, read_audio

    scenes = _scene_names(args.scenes)
    recognizer = Recognizer(RecognizerOptions(model=args.voice_model, beam_size=args.voice_beam))

    def second_look(heard: Any) -> bool:
        command = parse(heard, scenes=scenes)
        return bool(heard.text) and (command is None or command.verb == "prompt")

    for path in args.files:
        heard = recognizer.hear(read_audio(path), second_look=second_look)
        command = parse(heard, scenes=scenes) if heard.text else None
        print(f"{path}\t{command.canonical if command else ''}", flush=True)
        if args.verbose_text:
            print(
                f"  heard {heard.text!r} (no speech {heard.no_speech:.2f}, log p {heard.logprob:.2f})", file=sys.stderr
            )
    return 0


def cmd_voice_listen(args: argparse.Namespace) -> int:
    import time as _time

    from vj.control.bus import ControlBus
    from vj.control.voice.recognize import RecognizerOptions
    from vj.control.voice.source import VoiceOptions, VoiceSource

    options = VoiceOptions(
        mode="vad",
        device=args.voice_device,
        file=args.voice_file,
        recognizer=RecognizerOptions(model=args.voice_model, beam_size=args.voice_beam),
    )
    source = VoiceSource(options, _scene_names(args.scenes))
    source.open()
    bus = ControlBus()
    source.start(bus)
    print(f"listening ({source.capture.describe()}); speak a command, Ctrl-C to stop", flush=True)
    seen = 0
    try:
        while not (args.voice_file and source.capture.finished.is_set() and source._utterances.empty()):
            _time.sleep(0.1)
            if source.utterances > seen:
                seen = source.utterances
                print(f"heard {source.last_heard!r} -> {source.last_command or 'no command'}", flush=True)
                source.last_command = ""
    except KeyboardInterrupt:
        pass
    finally:
        _time.sleep(0.5)
        source.stop()
    return 0


def _scene_names(folder: str | None) -> tuple[str, ...]:
    from pathlib import Path

    from vj.scenes import SCENES_DIR, load_scenes

    path = Path(folder) if folder else SCENES_DIR
    return tuple(s.name for s in load_scenes(path)) if path.is_dir() else ()


def _add_voice_commands(sub: Any) -> None:
    vo = sub.add_parser("voice", help="voice commands: transcribe files, listen live").add_subparsers(
        dest="what", required=True
    )
    tr = vo.add_parser("transcribe", help="one line per file: FILE<TAB>command (empty when it holds none)")
    tr.add_argument("files", nargs="+", metavar="FILE")
    tr.add_argument("--verbose-text", action="store_true", help="also print what was heard (to standard error)")
    li = vo.add_parser("listen", help="listen (always on, VAD) and print what is heard and the commands")
    li.add_argument("--voice-device", metavar="NAME|N", help="microphone: a name, part of one, or a number")
    li.add_argument("--voice-file", metavar="AUDIO", help="an audio file instead of the microphone")
    for q in (tr, li):
        q.add_argument("--voice-model", metavar="NAME|DIR", help="faster-whisper model (default: offline tiny.en)")
        q.add_argument("--voice-beam", type=_positive(int), default=5, metavar="N", help="beam size (5)")
        q.add_argument("--scenes", metavar="DIR", help="scene folder, for 'scene <name>' (default: scenes/)")
    tr.set_defaults(func=cmd_voice_transcribe)
    li.set_defaults(func=cmd_voice_listen)


def _add_scene_and_dream_commands(sub: Any) -> None:
    from vj.dreams import STRATEGIES

    dm = sub.add_parser(
        "dream",
        help="explore seeds and prompt variations, keep the best dreams",
        description="Render many short dreams at low resolution, score them and keep the best in the "
        "dream store (the replay scene shows them).",
    )
    dm.add_argument("--prompt", required=True)
    span = dm.add_mutually_exclusive_group()
    span.add_argument("--minutes", type=_positive(float), default=5.0, help="how long to explore (5)")
    span.add_argument("--seconds", type=_positive(float), help="or in seconds")
    dm.add_argument("--strategy", choices=STRATEGIES, default="evolve", help="how to choose the next dream (evolve)")
    dm.add_argument("--generator", metavar="NAME", help="generator to dream with (sketch, or lcm with --model)")
    dm.add_argument("--gen-size", type=_size, default=(256, 256), metavar="WxH", help="resolution (256x256)")
    dm.add_argument("--frames", type=_positive(int), default=24, help="feedback frames per dream (24)")
    dm.add_argument("--keep", type=_positive(int), default=50, metavar="K", help="best dreams kept (50)")
    dm.add_argument("--seed", type=int, help="random seed of the exploration, for a repeatable session")
    dm.add_argument("--dreams", metavar="DIR", help="dream store folder (default: ~/.local/share/vj/dreams)")
    dm.add_argument("--clip", metavar="MODEL", help="score with a CLIP model too (Hugging Face id or folder)")
    _add_model_options(dm.add_argument_group("model (the lcm generator; as for vj run)"))
    dm.set_defaults(func=cmd_dream)

    sc = sub.add_parser("scenes", help="list and check scenes").add_subparsers(dest="what", required=True)
    for name, func, text in (
        ("list", cmd_scenes_list, "scene names, one per line, scene 1 first"),
        ("check", cmd_scenes_check, "load every scene file; errors name file, key and fix"),
    ):
        q = sc.add_parser(name, help=text)
        q.add_argument("--scenes", metavar="DIR", help="scene folder (default: scenes/)")
        q.set_defaults(func=func)
    dr = sub.add_parser("dreams", help="the dream store: list, export, prune").add_subparsers(
        dest="what", required=True
    )
    ls = dr.add_parser("list", help="the best dreams kept (* = saved by hand)")
    ex = dr.add_parser("export", help="copy the best dreams' images to a folder, with dreams.json")
    ex.add_argument("--out", required=True, metavar="DIR")
    for q in (ls, ex):
        q.add_argument("--top", type=_positive(int), default=20, metavar="N")
        q.add_argument("--session", help="only this session")
        q.add_argument("--saved", action="store_true", help="only dreams saved by hand")
    ls.set_defaults(func=cmd_dreams_list)
    ex.set_defaults(func=cmd_dreams_export)
    pr = dr.add_parser("prune", help="keep the best N of all sessions (and every saved one), remove the rest")
    pr.add_argument("--keep", type=_positive(int), required=True, metavar="N")
    pr.set_defaults(func=cmd_dreams_prune)
    for q in (ls, ex, pr):
        q.add_argument("--dreams", metavar="DIR", help="dream store folder (default: ~/.local/share/vj/dreams)")


def _add_model_commands(sub: Any) -> None:
    from vj.gen.models import DEFAULT_MODEL, TINY_VAE
    from vj.gen.random_models import ARCHS

    mo = sub.add_parser("model", help="models for the lcm generator: fetch one, or build a random one").add_subparsers(
        dest="what", required=True
    )
    fe = mo.add_parser(
        "fetch",
        help="download a model into the Hugging Face cache (once, while online)",
        description="Download a diffusers model (and optionally the tiny autoencoder) into the Hugging Face cache "
        "($HF_HOME, usually ~/.cache/huggingface). The show itself never downloads: --model ID finds it there.",
    )
    fe.add_argument("model", nargs="?", default=DEFAULT_MODEL, metavar="ID", help=f"Hugging Face id ({DEFAULT_MODEL})")
    fe.add_argument(
        "--tiny-vae", nargs="?", const=TINY_VAE, metavar="ID", help=f"also the tiny autoencoder ({TINY_VAE})"
    )
    fe.set_defaults(func=cmd_model_fetch)
    ra = mo.add_parser(
        "random",
        help="save an LCM model with random weights (real architecture, noise pictures): for timing, no download",
    )
    ra.add_argument("--arch", choices=ARCHS, default="sd15", help="sd15: Stable Diffusion 1.5 sizes (default)")
    ra.add_argument("--out", required=True, metavar="DIR", help="where to save the diffusers folder")
    ra.add_argument("--seed", type=int, default=0)
    ra.set_defaults(func=cmd_model_random)


def cmd_model_fetch(args: argparse.Namespace) -> int:
    from vj.gen.models import fetch

    for model in [args.model] + ([args.tiny_vae] if args.tiny_vae else []):
        print(f"fetching {model} ...", file=sys.stderr)
        print(f"{model}\t{fetch(model)}")
    print(
        f"ready: vj run --model {args.model}" + (f" --tiny-vae {args.tiny_vae}" if args.tiny_vae else ""),
        file=sys.stderr,
    )
    return 0


def cmd_model_random(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vj.gen.models import require_packages
    from vj.gen.random_models import save_random

    require_packages()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError("the folder is not empty", file=str(out), fix="name a new folder")
    print(save_random(args.arch, out, args.seed))
    return 0


def _write_report(report: dict[str, Any], target: str | None) -> None:
    if not target:
        return
    text = json.dumps(report, indent=2)
    if target == "-":
        print(text)
        return
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as e:
        raise ConfigError(f"cannot write the report ({e.strerror})", file=target) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vj",
        description="A live AI VJ engine: an endless img2img dream you steer by voice, MIDI, OSC and keys.",
    )
    parser.add_argument("--version", action="version", version=f"vj {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_run(sub)
    _add_control_commands(sub)
    _add_scene_and_dream_commands(sub)
    _add_voice_commands(sub)
    _add_model_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, leave: bool = True) -> int:
    """The ``vj`` command. ``leave=False`` returns from ``vj run`` instead of ending the process (for embedding)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(2, args.verbose)]
    logging.basicConfig(level=level, format="vj: %(message)s" if level > logging.DEBUG else "%(name)s: %(message)s")
    try:
        code = int(args.func(args) or 0)
    except VjError as e:
        print(f"vj: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vj: interrupted", file=sys.stderr)
        return 130
    if args.command == "run" and leave:
        # The show is over and its report written. Leave without the interpreter's teardown: native thread pools
        # (torch's, a generator thread abandoned in native code, PortAudio's) can abort the process while C++
        # static destructors run under them ("terminate called without an active exception", rc 134).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())

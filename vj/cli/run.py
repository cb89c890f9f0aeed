"""``vj run``: the show, its options and the sources it starts."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
from pathlib import Path
from typing import Any

from vj.cli.common import _clip, _dreams_folder, _host_port, _port, _positive, _size, _write_report
from vj.errors import ConfigError

log = logging.getLogger("vj")


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
        "--generator", metavar="NAME", help=f"{gens}; or package.module:Class (default: dream, or lcm with --model)"
    )
    g.add_argument("--prompt", help="what to dream of (default: the prompt in the parameter table)")
    g.add_argument("--seed", type=int, help="random seed of the dream")
    g.add_argument(
        "--gen-size",
        type=_size,
        metavar="WxH",
        help="generator resolution (default: lcm 512x512; the CPU generators as many pixels in the window's shape, "
        "680x384 for 16:9, so the picture fills the screen)",
    )
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
    nd = p.add_argument_group("generator node (--generator remote; see vj node)")
    nd.add_argument("--node", metavar="HOST:PORT", help="the node that makes the frames (gives --generator remote)")
    nd.add_argument("--node-token", metavar="SECRET", help="the node's shared secret (or $VJ_NODE_TOKEN)")
    nd.add_argument(
        "--node-codec",
        choices=("jpeg", "webp", "raw"),
        help="how pictures travel: jpeg (default), webp (smaller, slower), raw (no loss, for a fast LAN)",
    )
    nd.add_argument(
        "--node-timeout",
        type=_positive(float),
        metavar="S",
        help="seconds to wait for a frame before the node counts as lost and a local stand-in dreams (1)",
    )
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
    (
        w.add_argument(
            "--record",
            metavar="FILE.mp4",
            help="record the program output (no HUD) from the start; Ctrl+R, /vj/record 1|0 or a mapped button "
            "start and stop it later (each start a new file; without --record they go to recordings/)",
        ),
    )
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
    c = p.add_argument_group("control (OSC, MIDI, tempo)")
    c.add_argument(
        "--mapping", metavar="FILE", help="mapping file or name in mappings/ (default: mappings/default.toml)"
    )
    c.add_argument("--osc-host", default="127.0.0.1", help="address to listen on for OSC (0.0.0.0: every network)")
    c.add_argument("--osc-port", type=_port, metavar="PORT", help="OSC port (default 9000; 0 picks a free one)")
    c.add_argument("--no-osc", action="store_true", help="do not listen for OSC")
    c.add_argument("--osc-out", type=_host_port, metavar="HOST:PORT", help="send every parameter change here")
    c.add_argument("--midi-in", metavar="NAME", help="MIDI input port, or a part of its name")
    c.add_argument("--midi-out", metavar="NAME", help="MIDI output for controller LEDs and motor faders")
    c.add_argument(
        "--midi-backend",
        metavar="MODULE",
        help="mido backend, e.g. mido.backends.rtmidi/UNIX_JACK (default: $MIDO_BACKEND or ALSA)",
    )
    c.add_argument(
        "--clock-in",
        metavar="NAME",
        help="follow MIDI clock from this input port (or a part of its name): its tempo, beat, start and stop "
        "lead vj's tempo while it runs",
    )
    c.add_argument(
        "--clock-out",
        metavar="NAME",
        help="send MIDI clock at vj's tempo (start, 24 ticks a beat, stop) on a new virtual port NAME, or to an "
        "existing output whose name holds NAME",
    )
    c.add_argument(
        "--link",
        action="store_true",
        help="join the Ableton Link session on the network: follow its tempo and bar, and set its tempo when "
        "vj's is set (tap, /vj/bpm); needs vj[link]",
    )
    web = p.add_argument_group("browser view and remote")
    web.add_argument(
        "--web",
        type=_port,
        metavar="PORT",
        help="serve the live picture and a control panel at http://127.0.0.1:PORT/ (0 picks a free port)",
    )
    web.add_argument(
        "--web-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address to serve on (0.0.0.0: every network; the page then wants the token vj prints)",
    )
    feeds = p.add_argument_group("feeds to other programs")
    feeds.add_argument("--ndi", metavar="NAME", help="send the picture over NDI as NAME (needs vj[ndi])")
    feeds.add_argument(
        "--virtual-cam", action="store_true", help="send the picture to a virtual webcam (needs vj[virtualcam])"
    )
    feeds.add_argument(
        "--output",
        choices=("spout", "syphon"),
        action="append",
        default=[],
        help="share the picture with Spout (Windows) or Syphon (macOS) as 'vj'",
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
    m.add_argument(
        "--compile",
        nargs="?",
        const="inductor",
        choices=("inductor", "tensorrt"),
        help="torch.compile the UNet (slow start, faster frames): inductor with CUDA graphs (the default when given "
        "alone), or tensorrt (needs pip install torch-tensorrt and an NVIDIA GPU)",
    )
    m.add_argument(
        "--family",
        choices=("auto", "lcm", "turbo", "lightning"),
        help="how the model was distilled (auto: from its config and name): its default steps and schedule",
    )
    m.add_argument(
        "--lora",
        metavar="FILE|ID|DIR",
        help="LoRA weights fused into the model once at load (e.g. latent-consistency/lcm-lora-sdv1-5 onto any SD 1.5)",
    )
    m.add_argument(
        "--stream-batch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="denoise the steps of several frames in one batched UNet call (default: on with 2+ steps on a GPU)",
    )
    m.add_argument("--controlnet", metavar="ID|DIR", help="a depth ControlNet: keeps forms coherent while zooming")
    m.add_argument(
        "--depth-model",
        metavar="ID|DIR",
        help="the depth estimator the ControlNet follows (default: depth-anything/Depth-Anything-V2-Small-hf)",
    )


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
        gen_size=args.gen_size or gen_size_for(generator, args.size),
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
        record=_record_path(args.record),
    )
    show = Show(config)
    voice = _voice_source(args, tuple(s.name for s in scenes))
    if voice is not None:
        show.add_source(voice)
    for source in _control_sources(args, mapping, tuple(s.name for s in scenes)):
        show.add_source(source)
    interrupted.show = show
    if interrupted.pending:  # Ctrl+C during start-up: no frames, but the report all the same
        show.stop()
    report = show.run()
    _write_report(report, args.report)
    return 0


_MODEL_OPTIONS = (
    "model",
    "model_config",
    "steps",
    "guidance",
    "device",
    "dtype",
    "tiny_vae",
    "compile",
    "family",
    "lora",
    "stream_batch",
    "controlnet",
    "depth_model",
)


def _record_path(text: str | None) -> Path | None:
    if text is None:
        return None
    path = Path(text)
    if path.suffix.lower() != ".mp4":
        raise ConfigError(f"{text}: recordings are MP4 files", key="--record", fix=f"e.g. --record {path.stem}.mp4")
    if path.is_dir():
        raise ConfigError(f"{text} is a folder", key="--record", fix="give a file name, e.g. --record set.mp4")
    return path


def gen_size_for(generator: str, window: tuple[int, int]) -> tuple[int, int]:
    """The default generator size: 512x512 for models (what they were trained at); for the CPU generators the
    same number of pixels in the window's shape (multiples of 8), so a 16:9 projector has no bars."""
    if generator == "lcm":
        return 512, 512
    aspect = min(4.0, max(0.25, window[0] / window[1]))
    w = max(64, round(math.sqrt(512 * 512 * aspect) / 8) * 8)
    h = max(64, round(w / aspect / 8) * 8)
    return w, h


def _generator(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The generator's name and options: the model options belong to lcm (and give it, if no other is named)."""
    options = {key: getattr(args, key) for key in _MODEL_OPTIONS if getattr(args, key) is not None}
    node = getattr(args, "node", None)
    name = args.generator or ("lcm" if options else "remote" if node else "dream")
    if "depth_model" in options and "controlnet" not in options:
        raise ConfigError("--depth-model is the depth estimator a ControlNet follows", fix="add --controlnet ID|DIR")
    if options and name != "lcm":
        flags = ", ".join("--" + k.replace("_", "-") for k in options)
        raise ConfigError(f"{flags}: model options are for the lcm generator, not '{name}'", fix="--generator lcm")
    if name == "remote":
        if not node:
            raise ConfigError("the remote generator needs a node", key="--generator", fix="add --node HOST:PORT")
        from vj.gen.remote import check_address

        token = args.node_token or os.environ.get("VJ_NODE_TOKEN")
        remote = {"node": check_address(node), "token": token, "codec": args.node_codec, "timeout": args.node_timeout}
        return name, {k: v for k, v in remote.items() if v is not None}
    if node:
        raise ConfigError(f"--node is for the remote generator, not '{name}'", fix="--generator remote")
    return name, options


def _scenes(args: argparse.Namespace) -> tuple[list[Any], Any, Any]:
    """The scene list, the folder to watch, and the scene to start with."""
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


def _control_sources(args: argparse.Namespace, mapping: Any, scene_names: tuple[str, ...] = ()) -> list[Any]:
    sources: list[Any] = []
    if args.web is not None:
        from vj.output.web import WebView

        sources.append(WebView(args.web, args.web_host, scenes=scene_names))
    from vj.output import feeds

    if args.ndi:
        sources.append(feeds.NdiFeed(args.ndi, args.fps))
    if args.virtual_cam:
        sources.append(feeds.VirtualCam(min(args.fps, 30.0)))
    for kind in args.output:
        sources.append(feeds.SpoutFeed() if kind == "spout" else feeds.SyphonFeed())
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
    if args.clock_in:
        from vj.control.clock import MidiClockIn

        sources.append(MidiClockIn(args.clock_in, backend=args.midi_backend))
    if args.clock_out:
        from vj.control.clock import MidiClockOut

        sources.append(MidiClockOut(args.clock_out, backend=args.midi_backend))
    if args.link:
        from vj.control.link import LinkSource

        sources.append(LinkSource())
    return sources

"""``vj voice``: transcribe files, listen live."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from vj.cli.common import _positive

log = logging.getLogger("vj")


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

"""The voice as a control source: microphone or file -> utterances -> text -> command -> bus.

Two threads, so neither the display nor the audio ever waits for the recogniser:

    capture thread    32 ms pieces -> SpeechGate (vad) or PushToTalk (ptt) -> utterance queue
    recogniser thread utterance -> faster-whisper -> grammar -> bus.post("voice", ...)

Push-to-talk follows the ``ptt`` parameter, so a held key, a MIDI pad in hold mode or ``/vj/ptt 1|0`` all work.
Commands move parameters decisively: "zoom in" while zooming out turns round to zooming in, "pan left" adds
leftward drift, "faster" goes half as fast again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from vj.control.bus import ControlBus
from vj.control.source import Source
from vj.control.voice.grammar import Command, GrammarOptions, parse
from vj.control.voice.listen import PushToTalk, SpeechGate, Utterance
from vj.control.voice.recognize import Recognizer, RecognizerOptions
from vj.threads import lower_priority

log = logging.getLogger(__name__)

Mode = Literal["ptt", "vad"]
STEP = 0.2  # how far one spoken command moves a rate (zoom, pan, rotate, chaos)
RECOGNISER_NICE = 5  # below the display, above the generator


@dataclass(frozen=True)
class VoiceOptions:
    mode: Mode = "ptt"
    device: str | int | None = None
    file: str | None = None  # play this file through the pipeline instead of listening
    recognizer: RecognizerOptions = field(default_factory=RecognizerOptions)
    grammar: GrammarOptions = field(default_factory=GrammarOptions)


def _towards(current: float, sign: int, lo: float = -1.0, hi: float = 1.0) -> float:
    """One step further in direction ``sign``; from the other direction, straight to one step this way."""
    value = current + sign * STEP
    value = max(value, STEP) if sign > 0 else min(value, -STEP)
    return min(hi, max(lo, value))


def operations(command: Command, targets: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """What a command does, as bus operations (target, value, op), given the current parameter targets."""
    c, arg = command.canonical, command.argument

    def now(name: str, default: float = 0.0) -> float:
        value = targets.get(name, default)
        return float(value) if isinstance(value, (int, float)) else default

    motion = {
        "zoom in": ("zoom", 1),
        "zoom out": ("zoom", -1),
        "pan left": ("pan_x", -1),
        "pan right": ("pan_x", 1),
        "pan up": ("pan_y", 1),
        "pan down": ("pan_y", -1),
        "rotate left": ("rotate", -1),
        "rotate right": ("rotate", 1),
    }
    if c in motion:
        name, sign = motion[c]
        return [(name, _towards(now(name), sign), "set")]
    if c.startswith("prompt "):
        return [("prompt", arg, "set")]
    if c.startswith("scene "):
        return [("scene", int(arg) if arg.isdigit() else arg, "set")]
    table: dict[str, list[tuple[str, Any, str]]] = {
        "faster": [("speed", min(4.0, max(0.25, now("speed", 1.0) * 1.5)), "set")],
        "slower": [("speed", now("speed", 1.0) / 1.5, "set")],
        "stop": [("stop", None, "fire")],
        "spark": [("spark", None, "fire")],
        "freeze": [("freeze", True, "set")],
        "resume": [("freeze", False, "set"), ("blackout", False, "set")],
        "chaos up": [("chaos", min(1.0, now("chaos") + STEP), "set")],
        "chaos down": [("chaos", max(0.0, now("chaos") - STEP), "set")],
        "save": [("save", None, "fire")],
        "replay": [("replay", None, "fire")],
        "blackout": [("blackout", True, "set")],
        "record": [("record", True, "set")],
        "stop recording": [("record", False, "set")],
        "sleep": [("pause_gpu", True, "set")],
        "wake up": [("pause_gpu", False, "set")],
    }
    return table.get(c, [])


class VoiceSource(Source):
    name = "voice"
    listens = frozenset({"changed"})  # current values (relative commands start from them) and the ptt button

    def __init__(self, options: VoiceOptions, scenes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.options = options
        self.scenes = scenes
        self.recognizer = Recognizer(options.recognizer)
        self.capture: Any = None
        self.targets: dict[str, Any] = {}
        self._bus: ControlBus | None = None
        self._utterances: queue.Queue[tuple[Utterance, float] | None] = queue.Queue(maxsize=8)
        self._ptt = PushToTalk()
        self._ptt_lock = threading.Lock()
        self.utterances = 0
        self.commands = 0
        self.ignored = 0
        self.dropped = 0
        self.errors = 0
        self.latencies: list[float] = []  # end of speech -> command posted, seconds
        self.last_heard = ""
        self.last_command = ""
        self.last_at = 0.0
        self.error: str | None = None

    # -- source ------------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Open the audio now (so a missing microphone is known before the show starts)."""
        from vj.control.voice.capture import FileCapture, MicCapture

        o = self.options
        self.capture = FileCapture(o.file) if o.file else MicCapture(o.device)

    def start(self, bus: ControlBus) -> None:
        self._bus = bus
        if self.capture is None:
            self.open()
        self.spawn(self._recognise, "vj-voice-asr")
        self.spawn(self._listen, "vj-voice-audio")
        self.spawn(self._read_mail, "vj-voice-mail")

    def stop(self) -> None:
        self._stopping.set()
        self._utterances.put(None)
        self.join(5)

    def _read_mail(self) -> None:
        while not self.stopping:
            self.wait_mail(0.2)
            self.deliver()

    def on_changed(self, values: dict[str, Any]) -> None:
        self.targets = {**self.targets, **values}  # replaced whole: the recogniser thread reads it
        if "ptt" in values and self.options.mode == "ptt":
            with self._ptt_lock:
                utterance = self._ptt.press(bool(values["ptt"]))
            if utterance is not None:
                self._queue(utterance, time.monotonic())

    # -- threads -----------------------------------------------------------------------------------------------
    def _listen(self) -> None:
        gate = SpeechGate() if self.options.mode == "vad" else None
        try:
            for piece in self.capture.pieces(self._stopping):
                if gate is not None:
                    for u in gate.feed(piece):
                        # When, on the wall clock, the speech ended: now, less the silence fed since.
                        self._queue(u, time.monotonic() - (gate.fed / 16000 - u.speech_end))
                else:
                    with self._ptt_lock:
                        self._ptt.feed(piece)
        except Exception as e:  # noqa: BLE001 - a vanished microphone must not take the show down
            self.errors += 1
            self.error = f"audio stopped: {e}"
            log.error("voice: %s", self.error)

    def _queue(self, u: Utterance, speech_end_wall: float) -> None:
        try:
            self._utterances.put_nowait((u, speech_end_wall))
        except queue.Full:
            self.dropped += 1  # talking faster than the recogniser: the oldest words matter least

    def _recognise(self) -> None:
        lower_priority(RECOGNISER_NICE)  # before loading: the model's own threads inherit it
        try:
            self.recognizer.load()
        except Exception as e:  # noqa: BLE001
            self.errors += 1
            self.error = str(e)
            log.error("voice off: %s", e)
            return
        while True:
            item = self._utterances.get()
            if item is None:
                return
            utterance, speech_end = item
            try:
                self.handle(utterance.audio, speech_end)
            except Exception as e:
                self.errors += 1
                self.error = f"{type(e).__name__}: {e}"
                log.exception("voice: recognising failed")

    def handle(self, audio: np.ndarray, speech_end: float) -> Command | None:
        """Recognise one utterance and post its command; returns the command (or None)."""
        self.utterances += 1
        heard = self.recognizer.hear(audio, second_look=self.needs_second_look)
        command = parse(heard, scenes=self.scenes, options=self.options.grammar) if heard.text else None
        self.last_heard, self.last_at = heard.text, time.monotonic()
        if command is None:
            self.ignored += 1
            if heard.text:
                log.info("voice: heard %r: no command", heard.text)
            return None
        bus = self._bus
        for target, value, op in operations(command, self.targets):
            if bus is not None:
                bus.post("voice", target, value, op)  # type: ignore[arg-type]
        self.commands += 1
        self.last_command = command.canonical
        self.latencies.append(time.monotonic() - speech_end)
        log.info("voice: %r -> %s", heard.text, command.canonical)
        return command

    def needs_second_look(self, heard: Any) -> bool:
        """A prompt (its words matter) or nothing recognisable: worth decoding again with the full window."""
        command = parse(heard, scenes=self.scenes, options=self.options.grammar) if heard.text else None
        return bool(heard.text) and (command is None or command.verb == "prompt")

    # -- HUD, report -------------------------------------------------------------------------------------------
    def status(self) -> str:
        mode = self.options.mode
        if self.error:
            return f"voice {mode}: {self.error}"[:120]
        listening = " (listening)" if mode == "ptt" and self._ptt.held else ""
        if not self.last_heard:
            return f"voice {mode}{listening}: {self.capture.describe() if self.capture else ''}"
        did = self.last_command or "no command"
        return f'voice {mode}{listening}: heard "{self.last_heard[:50]}" -> {did}'

    def report(self) -> dict[str, Any]:
        lat = np.array(self.latencies) * 1000 if self.latencies else np.zeros(0)
        return {
            "mode": self.options.mode,
            "source": self.capture.describe() if self.capture else None,
            "utterances": self.utterances,
            "commands": self.commands,
            "no_command": self.ignored,
            "dropped": self.dropped,
            "errors": self.errors,
            "last_heard": self.last_heard,
            "last_command": self.last_command,
            "latency_ms": {
                "p50": round(float(np.percentile(lat, 50)), 1),
                "p90": round(float(np.percentile(lat, 90)), 1),
            }
            if len(lat)
            else None,
        }

import csv
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.child import start, vj
from vj.control.bus import ControlBus
from vj.control.voice.grammar import Command, Heard, first_thought, normalise, parse
from vj.control.voice.listen import PushToTalk, SpeechGate
from vj.control.voice.recognize import RATE, Recognizer, read_audio, speech_span
from vj.control.voice.source import VoiceOptions, VoiceSource, operations
from vj.engine.loop import Show, ShowConfig
from vj.errors import ConfigError, DeviceError

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "tests" / "data" / "voice"


def expected() -> dict[str, str]:
    with open(CLIPS / "expected.tsv", newline="") as f:
        return dict(list(csv.reader(f, delimiter="\t"))[1:])


def canonical(text: str, **kw) -> str | None:
    command = parse(Heard(text, 0.02, -0.2), **kw)
    return command.canonical if command else None


# -- the grammar --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("said", "command"),
    [
        ("Zoom in.", "zoom in"),
        ("zoom out please", "zoom out"),
        ("Pan left.", "pan left"),
        ("go right", "pan right"),
        ("move up", "pan up"),
        ("pan down", "pan down"),
        ("rotate left", "rotate left"),
        ("turn right", "rotate right"),
        ("a bit faster", "faster"),
        ("slow down", "slower"),
        ("stop moving", "stop"),
        ("spark", "spark"),
        ("ignite", "spark"),
        ("new seed", "spark"),
        ("freeze", "freeze"),
        ("hold it", "freeze"),
        ("resume", "resume"),
        ("go on", "resume"),
        ("more chaos", "chaos up"),
        ("less chaos", "chaos down"),
        ("save this dream", "save"),
        ("keep this one", "save"),
        ("replay the best dreams", "replay"),
        ("blackout", "blackout"),
        ("start recording", "record"),
        ("stop the recording", "stop recording"),
        ("stop", "stop"),
        ("scene three", "scene 3"),
        ("go to scene one", "scene 1"),
        ("next scene", "scene next"),
        ("previous scene", "scene previous"),
        ("sleep", "sleep"),
        ("Go to sleep.", "sleep"),
        ("wake up", "wake up"),
    ],
)
def test_the_design_table_phrasings(said, command):
    assert canonical(said) == command


@pytest.mark.parametrize(
    ("heard", "command"),
    [
        ("10 left", "pan left"),
        ("Then write.", "pan right"),
        ("on left", "pan left"),
        ("pent up", "pan up"),
        ("scene to", "scene 2"),
        ("Scene two. Scene two", "scene 2"),
        ("seen three", "scene 3"),
        ("same this scene", "save"),
        ("Stop moving. Stop moving, stop moving.", "stop"),
        ("Amidst faster.", "faster"),
        ("Rotate scene three.", "scene 3"),
        ("Dawn left.", "rotate left"),
    ],
)
def test_recognition_errors_are_forgiven(heard, command):
    assert canonical(heard) == command


@pytest.mark.parametrize(
    ("said", "command"),
    [
        ("Prompt a neon city in the rain.", "prompt a neon city in the rain"),
        ("dream of a forest made of glass", "prompt a forest made of glass"),
        ("show me golden clouds over the ocean", "prompt golden clouds over the ocean"),
        ("change the prompt to a burning desert", "prompt a burning desert"),
        ("Prompt. Golden clouds over the sea.", "prompt golden clouds over the sea"),
        ("from a dark castle at night", "prompt a dark castle at night"),
        ("Prompt a field on sunflowers.", "prompt a field of sunflowers"),
        ("prompt three red moons", "prompt three red moons"),
    ],
)
def test_prompts_keep_the_users_words(said, command):
    assert canonical(said) == command


@pytest.mark.parametrize(
    "talk",
    [
        "what a lovely evening",
        "could you pass me the salt",
        "the band was great tonight",
        "don't stop believing",
        "from the start again",
        "I think it's time to go home",
        "good night",
        "thank you",
        "",
        "Sound.",
        "so",
        "right behind you with the drinks and the coats and everything else",
    ],
)
def test_talk_is_not_a_command(talk):
    assert canonical(talk) is None


@pytest.mark.parametrize(
    ("said", "command"),
    [
        ("Sleep.", "sleep"),
        ("Okay, go to sleep.", "sleep"),
        ("go to sleep please", "sleep"),
        ("VJ, go to sleep now.", "sleep"),
        ("Sleep. Sleep.", "sleep"),  # recognisers repeat a short clip
        ("Wake up!", "wake up"),
        ("Wake-up.", "wake up"),
        ("Wakeup.", "wake up"),
        ("please wake up", "wake up"),
        ("Wake up. Wake up!", "wake up"),
    ],
)
def test_sleep_and_wake_up_said_whole(said, command):
    assert canonical(said) == command


@pytest.mark.parametrize(
    "near",
    [
        "I could sleep through this set",
        "I can't sleep through this set.",
        "I could sleep",
        "don't sleep",
        "don't go to sleep",
        "Don't go to sleep on me.",
        "go to sleep already",
        "time to sleep",
        "sleep well",
        "sleepy",
        "sleeping",
        "asleep",
        "slip",
        "sheep",
        "go sleep",
        "the city never sleeps",
        "Sleep?",
        "Go to sleep?",
        "wake me up",
        "woke up",
        "I woke up late",
        "make up",
        "wait up",
        "wake up call",
        "wake",
        "stay awake",
        "Wake up?",
    ],
)
def test_near_misses_of_sleep_and_wake_up_give_nothing(near):
    assert canonical(near) is None, "a near miss of a strict command is no command at all"


def test_sleep_and_wake_up_need_a_sure_recogniser():
    assert parse(Heard("go to sleep", 0.02, -0.5)) is not None
    assert parse(Heard("go to sleep", 0.02, -0.9)) is None, "a doubtful reading must not close the model"
    assert parse(Heard("wake up", 0.02, -0.9)) is None


def test_every_other_phrasing_still_means_its_own_command():
    from vj.control.voice.grammar import PHRASES

    wrong = {p: canonical(p) for c, ps in PHRASES.items() for p in ps if canonical(p) != c}
    assert not wrong, "the strict commands' guard took these"


def test_a_doubtful_recogniser_gives_no_command():
    assert parse(Heard("zoom in", no_speech=0.9, logprob=-0.2)) is None
    assert parse(Heard("zoom in", no_speech=0.1, logprob=-2.0)) is None
    assert parse(Heard("zoom in", no_speech=0.1, logprob=-0.2)) is not None
    assert parse(Heard("zoo min", no_speech=0.1, logprob=-0.95)) is None, "a weak match needs a sure recogniser"


def test_scene_names_match_loosely():
    scenes = ("Nebula drift", "Neon rain", "Coral dreams")
    assert canonical("scene neon rain", scenes=scenes) == "scene neon rain"
    assert canonical("scene coral dream", scenes=scenes) == "scene coral dreams"
    assert canonical("scene banana", scenes=scenes) is None


def test_normalising_and_first_thoughts():
    assert normalise("Um, could you zoom in, please?") == "zoom in"
    assert normalise("Scene Three!") == "scene 3"
    assert first_thought("Replay the best dreams. Freeze. Replay.") == "Replay the best dreams."
    assert first_thought("Prompt. A glass cathedral.") == "Prompt. A glass cathedral."


# -- what a command does -------------------------------------------------------------------------------------------
def ops(text: str, **targets):
    return operations(Command(text, 100, text), targets)


def test_motion_commands_turn_round_or_go_further():
    assert ops("zoom in", zoom=-0.5) == [("zoom", 0.2, "set")], "zooming out: turn round"
    assert ops("zoom in", zoom=0.3) == [("zoom", pytest.approx(0.5), "set")], "zooming in: further"
    assert ops("pan left", pan_x=0.0) == [("pan_x", -0.2, "set")]
    assert ops("rotate right", rotate=0.95) == [("rotate", 1.0, "set")], "stays in range"


def test_other_commands():
    assert ops("faster", speed=1.0) == [("speed", 1.5, "set")]
    assert ops("prompt a castle in the clouds") == [("prompt", "a castle in the clouds", "set")]
    assert ops("scene 3") == [("scene", 3, "set")] and ops("scene next") == [("scene", "next", "set")]
    assert ops("resume") == [("freeze", False, "set"), ("blackout", False, "set")]
    assert ops("save") == [("save", None, "fire")]
    assert ops("sleep") == [("pause_gpu", True, "set")] and ops("wake up") == [("pause_gpu", False, "set")]


# -- listening -----------------------------------------------------------------------------------------------------
def test_the_speech_gate_cuts_an_utterance_soon_after_the_speech_ends():
    speech = read_audio(CLIPS / "c008.wav")
    quiet = np.zeros(RATE, np.float32)
    gate = SpeechGate()
    utterances = []
    stream = np.concatenate([quiet, speech, quiet, quiet])
    for i in range(0, len(stream), 512):
        utterances += gate.feed(stream[i : i + 512])
    assert len(utterances) == 1
    u = utterances[0]
    span = speech_span(speech, pad_ms=0)  # where the offline VAD, reading the whole clip, puts the words
    assert span is not None
    assert abs(u.speech_end - (1.0 + span[1] / RATE)) < 0.15
    assert 0.15 <= u.ended - u.speech_end <= 0.4, "end-pointed 0.2-0.3 s after the speech"
    assert 0.6 < len(u.audio) / RATE < len(speech) / RATE + 0.5


def test_the_speech_gate_ignores_noise_and_silence():
    gate = SpeechGate()
    noise = read_audio(CLIPS / "n001.wav")
    assert gate.feed(np.concatenate([np.zeros(RATE, np.float32), noise, np.zeros(RATE, np.float32)])) == []


def test_push_to_talk_keeps_what_is_said_while_held():
    ptt = PushToTalk()
    ptt.feed(np.ones(1000, np.float32))
    assert ptt.press(True) is None
    ptt.feed(np.full(1600, 0.5, np.float32))
    u = ptt.press(False)
    assert u is not None and len(u.audio) == 1600 and u.audio[0] == 0.5
    assert ptt.press(False) is None


# -- the real recogniser -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recognizer():
    r = Recognizer()
    r.load()
    return r


def test_spoken_clips_through_the_real_model(recognizer):
    clips = expected()
    got = {}
    for name in clips:
        heard = recognizer.hear(read_audio(CLIPS / name), second_look=lambda h: parse(h) is None)
        command = parse(heard)
        got[name] = command.canonical if command else ""
    commands = [n for n, e in clips.items() if e]
    right = sum(got[n] == clips[n] for n in commands)
    # 15 of these 18 with faster-whisper 1.2.1's Silero VAD v6 and tiny.en (16 before, with v5): the gate guards
    # against a broken pipeline; accuracy itself is measured by scripts/bench_voice.py on larger sets.
    assert right >= 0.8 * len(commands), {n: (clips[n], got[n]) for n in commands if got[n] != clips[n]}
    assert not [n for n in commands if got[n] and got[n].split()[0] != clips[n].split()[0]], "no wrong commands"
    assert all(got[n] == "" for n, e in clips.items() if not e), "silence, noise, music and chatter: nothing"


def test_a_missing_model_is_a_clear_error(tmp_path):
    from vj.control.voice.recognize import RecognizerOptions

    with pytest.raises(ConfigError, match="cannot load the speech model"):
        Recognizer(RecognizerOptions(model=str(tmp_path))).load()


def test_vj_voice_transcribe_prints_file_tab_command():
    files = [str(CLIPS / "c008.wav"), str(CLIPS / "n000.wav")]
    out = vj("voice", "transcribe", *files, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{files[0]}\tpan left", f"{files[1]}\t"]


def test_an_unreadable_audio_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "not.wav"
    bad.write_text("not audio")
    out = vj("voice", "transcribe", str(bad), timeout=60)
    assert out.returncode == 2 and "cannot read it as audio" in out.stderr


# -- into the engine -------------------------------------------------------------------------------------------------
def test_a_voice_file_changes_parameters_in_the_report(tmp_path):
    clip = tmp_path / "two.wav"
    a, b = read_audio(CLIPS / "c008.wav"), read_audio(CLIPS / "c006.wav")  # pan left, less chaos
    write_wav(clip, np.concatenate([a, b]))
    # Ends the show once both commands were heard (the log says so), however long recognition takes on a busy box.
    proc = start(
        "-v", "run", "--headless", "--seconds", "600", "--no-osc", "--no-dreams", "--voice-file", str(clip),
        "--report", "-",
    )  # fmt: skip
    heard = []
    for line in proc.stderr:
        if "voice: " in line and " -> " in line:
            heard.append(line)
            if len(heard) == 2:
                break
    proc.send_signal(signal.SIGTERM)
    stdout, rest = proc.communicate(timeout=120)
    report = json.loads(stdout)
    assert report["events"]["voice"] >= 2, rest
    assert report["params"]["pan_x"] == -0.2 and report["params"]["chaos"] == pytest.approx(0.1)
    # latency is measured (its size is the benchmark's business: a busy machine makes it anything)
    assert report["voice"]["commands"] == 2 and report["voice"]["latency_ms"]["p50"] > 0


def test_push_to_talk_from_osc_or_a_pad(tmp_path):
    source = VoiceSource(VoiceOptions(mode="ptt", file=str(CLIPS / "c002.wav")))  # blackout
    source.open()
    show = Show(ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, seconds=8, params={"zoom": 0.0}))
    show.add_source(source)
    show.on_frame.append(lambda s: s.bus.post("osc", "ptt", True) if s.frames == 2 else None)
    show.on_frame.append(lambda s: s.bus.post("midi", "ptt", False) if source.capture.finished.is_set() else None)
    show.on_frame.append(lambda s: s.stop() if source.commands else None)
    report = show.run()
    assert report["params"]["blackout"] is True
    assert report["voice"]["mode"] == "ptt" and report["voice"]["commands"] == 1


def test_nothing_is_heard_while_push_to_talk_is_up():
    source = VoiceSource(VoiceOptions(mode="ptt", file=str(CLIPS / "c002.wav")))
    source.open()
    show = Show(ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, seconds=5))
    show.add_source(source)
    report = show.run()
    assert report["voice"]["utterances"] == 0 and report["params"]["blackout"] is False


def test_the_voice_source_reports_what_it_heard():
    source = VoiceSource(VoiceOptions(mode="vad"))
    bus = ControlBus()
    source._bus = bus
    command = source.handle(read_audio(CLIPS / "c016.wav"), time.monotonic())
    assert command is not None and command.canonical == "freeze"
    assert [(e.target, e.value) for e in bus.drain()] == [("freeze", True)]
    assert "freeze" in source.status() and source.report()["commands"] == 1


# -- the microphone path, on a JACK server with the dummy driver ----------------------------------------------------
def test_a_microphone_is_opened_by_name_and_resampled_to_16_khz(jack):
    from vj.control.voice.capture import MicCapture

    mic = MicCapture("JACK")
    stop = threading.Event()
    got = 0
    for piece in mic.pieces(stop):
        assert piece.dtype == np.float32 and piece.ndim == 1
        got += len(piece)
        if got >= RATE // 2:
            stop.set()
    assert got >= RATE // 2
    with pytest.raises(DeviceError, match="no audio input matching 'nonexistent'"):
        MicCapture("nonexistent")


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox")
def test_the_clip_maker_makes_clips_the_pipeline_understands(tmp_path, recognizer):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_voice_clips.py"), str(tmp_path), "--count", "4", "--seed", "99"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    with open(tmp_path / "expected.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    assert len(rows) == 7 and all((tmp_path / name).is_file() for name, _ in rows)
    heard = [parse(recognizer.hear(read_audio(tmp_path / name))) for name, exp in rows if exp]
    assert sum(1 for h in heard if h is not None) >= 3


def write_wav(path: Path, audio: np.ndarray) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())

"""Make spoken-command test clips with espeak-ng and sox: several voices and speeds, some over music or noise.

    python scripts/make_voice_clips.py OUT_DIR [--count N] [--seed S]

Writes 16 kHz mono WAVs and ``expected.tsv`` (file, expected command; empty for clips that hold none: silence,
noise, music, chatter). The test suite keeps a small set made this way in ``tests/data/voice`` so tests need no
espeak; a bigger set (``--count 120``) is a held-out check for ``scripts/bench_voice.py``.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-x-rp+m3", "en-029", "en-us+m5", "en-gb-scotland+f2"]

# (what is said, the canonical command)
SPOKEN = [
    ("zoom in", "zoom in"),
    ("zoom in a bit", "zoom in"),
    ("zoom out", "zoom out"),
    ("pull back", "zoom out"),
    ("pan left", "pan left"),
    ("go left", "pan left"),
    ("pan right", "pan right"),
    ("move right", "pan right"),
    ("pan up", "pan up"),
    ("move up", "pan up"),
    ("pan down", "pan down"),
    ("go down please", "pan down"),
    ("rotate left", "rotate left"),
    ("turn left", "rotate left"),
    ("rotate right", "rotate right"),
    ("turn right", "rotate right"),
    ("faster", "faster"),
    ("a bit faster", "faster"),
    ("slower", "slower"),
    ("slow down", "slower"),
    ("stop", "stop"),
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
    ("go to sleep", "sleep"),
    ("wake up", "wake up"),
    ("scene one", "scene 1"),
    ("scene four", "scene 4"),
    ("go to scene three", "scene 3"),
    ("next scene", "scene next"),
    ("previous scene", "scene previous"),
    ("prompt a castle in the clouds", "prompt a castle in the clouds"),
    ("prompt a field of sunflowers", "prompt a field of sunflowers"),
    ("dream of a city under the sea", "prompt a city under the sea"),
    ("show me a desert at night", "prompt a desert at night"),
    ("prompt a storm over the mountains", "prompt a storm over the mountains"),
    ("change the prompt to a burning forest", "prompt a burning forest"),
]
CHATTER = [
    "what a lovely evening",
    "could you pass me the salt",
    "I think the drummer was late",
    "where did you park",
    "this song is amazing",
    "see you tomorrow then",
    "the lights were beautiful tonight",
    "I need another drink",
    "have you seen my jacket",
    "the bass is too loud",
    "let's get some food after this",
    "I love this part",
    "turn around and look at that",
    "she said she would be here by nine",
    "is this the last song",
    "my phone is almost dead",
    "we should go to the front",
    "that was incredible",
    "how long have they been playing",
    "can you hear me",
    "the train leaves at midnight",
    "I left my keys in the car",
    "do you want to dance",
    "it's getting cold outside",
    "the visuals are so trippy",
    "who is playing next",
    "one more round please",
    "I can't see anything from here",
    "stop talking and listen",
    "zoology was my favourite subject",
    "I could sleep through this set",
    "don't go to sleep on me",
]


CLIP_FORMAT = ("-r", "16000", "-c", "1", "-b", "16")  # 16 kHz mono 16-bit, like a microphone clip


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def speak(text: str, voice: str, speed: int, out: Path, tmp: Path) -> None:
    raw = tmp / "raw.wav"
    run("espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text)
    # Half a second of room either side.
    run("sox", str(raw), *CLIP_FORMAT, str(out), "pad", "0.4", "0.5")


def bed(kind: str, seconds: float, out: Path, volume: float) -> None:
    # pink noise, or music: a few plucked chords with a tremolo
    sound = ("pinknoise",) if kind == "noise" else ("pluck", "C3", "pluck", "E3", "pluck", "G3", "pluck", "B3")
    effects = ("tremolo", "3", "40") if kind != "noise" else ()
    run("sox", "-n", *CLIP_FORMAT, str(out), "synth", f"{seconds}", *sound, *effects, "vol", f"{volume}")


def mix(speech: Path, under: Path, out: Path) -> None:
    run("sox", "-m", str(speech), str(under), str(out), "trim", "0", str(_length(speech)))


def _length(path: Path) -> float:
    return float(subprocess.run(["soxi", "-D", str(path)], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=24, help="clips with a command (plus negatives, about a third)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    for tool in ("espeak-ng", "sox", "soxi"):
        if not shutil.which(tool):
            sys.exit(f"needs {tool} (Debian: apt-get install espeak-ng sox)")
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        spoken = rng.sample(SPOKEN, min(args.count, len(SPOKEN))) + rng.choices(
            SPOKEN, k=max(0, args.count - len(SPOKEN))
        )
        for i, (text, expected) in enumerate(spoken):
            name = f"c{i:03d}.wav"
            speech = tmp / "speech.wav"
            speak(text, rng.choice(VOICES), rng.randint(140, 185), speech, tmp)
            if i % 4 == 3:  # every fourth clip over a bed of music or noise
                kind = rng.choice(["music", "noise"])
                bed(kind, _length(speech), tmp / "bed.wav", 0.08 if kind == "noise" else 0.15)
                mix(speech, tmp / "bed.wav", args.out / name)
            else:
                shutil.copyfile(speech, args.out / name)
            rows.append((name, expected))
        negatives = max(3, args.count // 3)
        for i in range(negatives):
            name = f"n{i:03d}.wav"
            kind = ["silence", "noise", "music", "chatter", "chatter", "chatter"][i % 6]
            if kind == "silence":
                run("sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(args.out / name), "trim", "0", "2")
            elif kind == "chatter":
                speak(rng.choice(CHATTER), rng.choice(VOICES), rng.randint(150, 180), args.out / name, tmp)
            else:
                bed(kind, 2.5, args.out / name, 0.3)
            rows.append((name, ""))
    with open(args.out / "expected.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["file", "expected"])
        w.writerows(rows)
    print(f"{len(rows)} clips in {args.out}")


if __name__ == "__main__":
    main()

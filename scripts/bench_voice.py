"""Benchmark: voice commands from audio to the engine — accuracy, false triggers, latency.

    python scripts/bench_voice.py CLIPS_DIR [--no-show] [--mode vad]

CLIPS_DIR holds WAV clips and ``expected.tsv`` (file, expected canonical command; empty when a clip holds none).
The clips are joined into one stream with 1.5 s of quiet between them and played in real time through the whole
live pipeline (streaming VAD, recogniser, grammar, bus), inside a running headless show unless --no-show, so the
recogniser shares the two cores with the display and the generator as it would on stage. Latency runs from the
end of speech (where the VAD put it) to the command reaching the bus. Targets: >= 95% correct, no false
triggers, median latency <= 0.8 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import numpy as np

from vj.control.voice.recognize import RATE, read_audio
from vj.control.voice.source import VoiceOptions, VoiceSource
from vj.engine.loop import Show, ShowConfig
from vj.scenes import SCENES_DIR, load_scenes

GAP_S = 1.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", type=Path)
    ap.add_argument("--no-show", action="store_true", help="the voice pipeline alone, without a show beside it")
    args = ap.parse_args()

    with open(args.clips / "expected.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    pieces, spans, t = [], [], GAP_S
    gap = np.zeros(int(GAP_S * RATE), np.float32)
    pieces.append(gap)
    for name, _ in rows:
        audio = read_audio(args.clips / name)
        spans.append((t, t + len(audio) / RATE))
        pieces += [audio, gap]
        t += len(audio) / RATE + GAP_S
    stream = np.concatenate(pieces)
    scene_list = load_scenes(SCENES_DIR)
    scenes = tuple(s.name for s in scene_list)

    log: list[tuple[float, str, float]] = []  # (stream time of the end of speech, command, latency)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "stream.wav"
        _write_wav(wav, stream)
        source = VoiceSource(VoiceOptions(mode="vad", file=str(wav)), scenes)
        source.open()
        handle = source.handle

        def recorded(audio: np.ndarray, speech_end: float) -> object:
            command = handle(audio, speech_end)
            log.append(
                (
                    speech_end - source.capture.started,
                    command.canonical if command else "",
                    time.monotonic() - speech_end,
                )
            )
            return command

        source.handle = recorded  # type: ignore[method-assign]
        if args.no_show:
            from vj.control.bus import ControlBus

            source.start(ControlBus())
            source.capture.finished.wait()
            time.sleep(3)  # the last utterance's recognition
            source.stop()
            report = None
        else:
            show = Show(ShowConfig(size=(1280, 720), headless=True, seconds=len(stream) / RATE + 3, scenes=scene_list))
            show.add_source(source)
            report = show.run()

    got: dict[str, list[str]] = {name: [] for name, _ in rows}
    latencies = {name: [] for name, _ in rows}
    for when, command, latency in log:
        for (name, _), (a, b) in zip(rows, spans, strict=True):
            if a - 0.5 <= when <= b + GAP_S - 0.3 and command:
                got[name].append(command)
                latencies[name].append(latency)
                break
    correct = sum(1 for name, exp in rows if (got[name][:1] or [""])[0] == exp)
    false = sum(1 for name, exp in rows if not exp and got[name])
    extra = sum(max(0, len(got[name]) - 1) for name, _ in rows)
    lat = [latencies[name][0] for name, exp in rows if exp and got[name]]
    result = {
        "clips": len(rows),
        "correct": correct,
        "accuracy": round(correct / len(rows), 4),
        "false_triggers": false,
        "extra_commands": extra,
        "latency_s": {"median": round(float(np.median(lat)), 3), "p90": round(float(np.percentile(lat, 90)), 3)}
        if lat
        else None,
        "with_show": not args.no_show,
    }
    for name, exp in rows:
        first = (got[name][:1] or [""])[0]
        if first != exp:
            print(f"  {name}: expected {exp!r}, got {got[name]!r}")
    print(
        f"{correct}/{len(rows)} correct ({100 * correct / len(rows):.1f}%), {false} false triggers, "
        f"{extra} extra commands; latency end of speech -> command: median "
        f"{result['latency_s']['median'] if lat else '-'} s, p90 {result['latency_s']['p90'] if lat else '-'} s"
        + (f"; display {report['fps']} fps, frame p99 {report['frame_ms']['p99']} ms" if report else "")
    )
    print(json.dumps(result))


def _write_wav(path: Path, audio: np.ndarray) -> None:
    import wave

    data = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(data)


if __name__ == "__main__":
    main()

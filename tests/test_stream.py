"""Stream batch: one batched UNet call a frame, each frame denoised exactly as on its own, and one dream, not several.

The tiny random model runs the real engine on the CPU. For the feedback test the random autoencoder is swapped for
one that keeps what it can (8 x 8 means down, nearest up): a random autoencoder forgets the picture on every round
trip, so no loop through it has any memory, and a loop's structure (which frame feeds which) could not show.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from tests.child import ENV  # noqa: E402
from tests.tiny import count_unet_calls  # noqa: E402
from vj.gen.lcm import Feed, LcmGenerator, StreamFrame  # noqa: E402
from vj.gen.pipeline import Parts, parts_from  # noqa: E402
from vj.gen.random_models import random_pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STEPS = 4
SIZE = (64, 64)
PARAMS = {"prompt": "a neon city", "seed": 3, "strength": 0.4}


@pytest.fixture(scope="module")
def pipe() -> Any:
    return random_pipeline("tiny")


def engine(parts: Parts, stream: bool) -> LcmGenerator:
    gen = LcmGenerator(SIZE, model="tiny", parts=parts, steps=STEPS, stream_batch=stream)
    gen.load()
    gen._frame = 0  # both engines number their frames alike: the same noise for the same frame
    return gen


def count_unet(parts: Parts) -> dict[str, int]:
    return count_unet_calls(parts.unet)


def test_each_frame_a_stream_batch_gives_is_the_frame_the_sequential_engine_gives(pipe):
    cpu = torch.device("cpu")
    seq = engine(parts_from(pipe, cpu, torch.float32), stream=False)
    parts = parts_from(pipe, cpu, torch.float32)
    stream = engine(parts, stream=True)
    assert stream.streaming and not seq.streaming
    calls = count_unet(parts)
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(9)]
    # The camera moves between frames: what comes out entered steps-1 frames ago and is moved to the camera of now.
    deltas = [np.array([0.01 * k, 0.002, 0.003 * k, 0.0]) for k in range(len(inputs))]
    expected, latents = [], []
    for image in inputs:
        expected.append(seq.generate(image, PARAMS))
        latents.append(seq.latent(expected[-1]))
    out: Any = None
    for t, image in enumerate(inputs):
        if out is not None:
            stream.warp(out, deltas[t])  # the loop warps the last frame before each new one (here, unused)
        calls["n"] = 0
        out = stream.generate(image, PARAMS)
        assert isinstance(out, StreamFrame)
        # the first frame fills the pipeline (steps calls); from then on, one call for the whole batch
        assert (calls["n"], calls["batch"]) == ((STEPS, 1) if t == 0 else (1, STEPS))
        source = 0 if t < STEPS else t - STEPS + 1  # the first frame is held while the pipeline fills
        drift = sum((deltas[u] for u in range(source + 1, t + 1)), np.zeros(4))
        want = stream.warp(expected[source], drift)
        assert torch.allclose(out.shown, want, atol=2e-4), (t, float((out.shown - want).abs().max()))
        # the latent kept with a top dream is the one behind the frame shown
        assert torch.allclose(stream.latent(out), stream.warp(latents[source], drift), atol=1e-4)


class KeepingAutoencoder(torch.nn.Module):
    """An autoencoder that keeps what it can: 8 x 8 means down, nearest up (decode(encode(decode(z))) == decode(z))."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.zeros(1))

    @property
    def dtype(self) -> Any:
        return self.anchor.dtype

    @property
    def device(self) -> Any:
        return self.anchor.device

    def encode(self, image: Any) -> Any:
        z = torch.nn.functional.avg_pool2d(image, 8)
        return SimpleNamespace(latents=torch.cat([z, z.mean(1, keepdim=True)], 1))

    def decode(self, z: Any, return_dict: bool = False) -> Any:
        return (torch.nn.functional.interpolate(z[:, :3], scale_factor=8, mode="nearest"),)


def changes(gen: LcmGenerator, feed_pictures: bool, frames: int = 30, skip: int = 8) -> tuple[float, float]:
    """Mean change between consecutive frames, and between frames ``steps`` apart, of a zooming feedback loop."""
    delta = np.array([0.01, 0.0, 0.0, 0.0])
    out = gen.generate(None, PARAMS)
    shown = []
    for _ in range(frames):
        previous = gen.adopt(gen.to_display(out)) if feed_pictures else out
        out = gen.generate(gen.warp(previous, delta), PARAMS)
        shown.append(gen.to_display(out).astype(np.float32))
    shown = shown[skip:]

    def lag(k: int) -> float:
        return float(np.mean([np.abs(shown[i + k] - shown[i]).mean() for i in range(len(shown) - k)]))

    return lag(1), lag(STEPS)


def test_a_feedback_stream_is_one_dream_not_several_taking_turns(pipe):
    cpu = torch.device("cpu")

    def keeping(stream: bool) -> LcmGenerator:
        parts = parts_from(pipe, cpu, torch.float32)
        parts.vae, parts.tiny_vae, parts.scale = KeepingAutoencoder(), True, 1.0
        return engine(parts, stream)

    seq1, _ = changes(keeping(False), feed_pictures=False)
    one1, onen = changes(keeping(True), feed_pictures=False)  # what the show does: the newest estimate fed back
    naive1, naiven = changes(keeping(True), feed_pictures=True)  # the newest picture fed back
    # The measure sees interleaving: fed the newest picture, a stream splits into `steps` loops, each frame
    # unlike the one before it and like the one `steps` back.
    assert naive1 > 1.5 * seq1 and naive1 > naiven, (naive1, naiven, seq1)
    # The stream as built: consecutive frames at most 25% less alike than the sequential engine's, and the
    # change grows with distance, as in one loop.
    assert one1 <= 1.25 * seq1 and one1 < onen, (one1, onen, seq1)


def test_layers_and_sparks_mix_into_a_stream_frame(pipe):
    gen = engine(parts_from(pipe, torch.device("cpu"), torch.float32), stream=True)
    out = gen.generate(np.full((*SIZE, 3), 90, np.uint8), PARAMS)
    fed = gen.warp(out, np.array([0.02, 0.0, 0.0, 0.0]))
    assert isinstance(fed, Feed) and fed.latent.shape == (1, 4, 8, 8)
    layer = np.zeros((*SIZE, 3), np.uint8)
    mixed = gen.mix(fed, layer, 1.0)  # a full-opacity black layer: the input becomes that layer
    assert mixed.shape == (1, 3, *SIZE) and float(mixed.max()) == pytest.approx(-1.0)
    picture = gen.to_display(gen.generate(mixed, PARAMS))
    assert picture.shape == (*SIZE, 3) and picture.dtype == np.uint8
    assert gen.to_display(fed).shape == (*SIZE, 3)
    # a restarted generator adopts the last frame of the one before
    assert torch.equal(gen.adopt(out), out.shown)


def test_a_new_start_empties_the_stream(pipe):
    parts = parts_from(pipe, torch.device("cpu"), torch.float32)
    gen = engine(parts, stream=True)
    calls = count_unet(parts)
    image = np.full((*SIZE, 3), 120, np.uint8)
    gen.generate(image, PARAMS)
    gen.generate(image, PARAMS)
    assert len(gen._flight) == STEPS - 1
    gen.generate(None, PARAMS)  # the loop starts afresh (a new generator, a cleared frame)
    assert gen._flight == []
    calls["n"] = 0
    gen.generate(image, PARAMS)
    assert calls["n"] == STEPS, "the pipeline fills again rather than showing frames from before"


def test_stream_batch_is_off_on_a_cpu_unless_asked_and_with_one_step(pipe):
    cpu = torch.device("cpu")
    auto = LcmGenerator(SIZE, model="tiny", parts=parts_from(pipe, cpu, torch.float32), steps=STEPS)
    auto.load()
    assert not auto.streaming, "auto: on a GPU only"
    one = LcmGenerator(SIZE, model="tiny", parts=parts_from(pipe, cpu, torch.float32), steps=1, stream_batch=True)
    one.load()
    assert not one.streaming, "one step: nothing to batch"


def bench(*extra: str) -> dict[str, Any]:
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_gen.py"), "--arch", "tiny", "--size", "64", "--steps", "4"]
    cmd += ["--frames", "6", "--device", "cpu", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_benchmark_counts_one_batched_unet_call_a_frame_with_stream_batch(tmp_path):
    streamed, plain = bench("--stream-batch"), bench()
    assert (streamed["unet_calls_per_frame"], streamed["batch"], streamed["stream_batch"]) == (1, 4, True)
    assert (plain["unet_calls_per_frame"], plain["batch"], plain["stream_batch"]) == (4, 1, False)
    for result in (streamed, plain):
        assert result["naive_unet_calls_per_frame"] == 4 and result["device"] == "cpu"
        assert result["engine_fps"] > 0 and result["naive_fps"] > 0 and result["ratio"] > 0
        assert result["vram_mb"] is None
    lines = tmp_path / "bench.jsonl"
    lines.write_text(json.dumps(streamed) + "\n" + json.dumps(plain) + "\n")
    table = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_gen.py"), "--markdown", str(lines)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=ENV, check=False,
    ).stdout  # fmt: skip
    rows = [line for line in table.splitlines() if line.startswith("| random tiny")]
    assert len(rows) == 2 and "| True |" in rows[0] and "| 1.0 | 4 |" in rows[0], table


def test_the_gpu_table_script_writes_one_row_per_setting(tmp_path):
    # the GPU run's script, quick on the CPU: tiny architectures, no compiled rows
    env = {**ENV, "ARCH_LCM": "tiny", "ARCH_TURBO": "tiny-turbo", "COMPILE": "no", "PYTHON": sys.executable}
    out = tmp_path / "table.md"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "bench_gpu.sh"), str(out), "--size", "64", "--frames", "2", "--warmup", "1",
         "--device", "cpu"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "table.jsonl").read_text().splitlines()]
    settings = [(r["family"], r["steps"], r["stream_batch"], r["unet_calls_per_frame"], r["batch"]) for r in rows]
    assert settings == [
        ("lcm", 4, False, 4, 1),
        ("lcm", 4, True, 1, 4),
        ("lcm", 2, False, 2, 1),
        ("lcm", 2, True, 1, 2),
        ("turbo", 1, False, 1, 1),
    ]
    table = out.read_text()
    assert table.count("| random tiny") == 5 and "engine fps" in table

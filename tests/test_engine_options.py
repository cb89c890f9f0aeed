"""The lcm generator with the other model families, a fused LCM-LoRA and a depth ControlNet: the real loading and
frame code on tiny random models saved as folders, as ``vj run --model DIR`` finds them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from tests.child import start, stop_after_line, vj  # noqa: E402
from tests.tiny import count_unet_calls, tiny_lcm, tiny_lora, tiny_turbo, tiny_xl  # noqa: E402
from vj.errors import GeneratorUnusable  # noqa: E402
from vj.gen.lcm import LcmGenerator  # noqa: E402
from vj.gen.structure import save_random_structure  # noqa: E402

SIZE = (64, 64)
PARAMS = {"prompt": "a neon city", "seed": 5, "strength": 0.5}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("families")


def loaded(model: Path, **options: Any) -> LcmGenerator:
    gen = LcmGenerator(SIZE, model=str(model), **options)
    gen.load()
    return gen


def unet_calls(gen: LcmGenerator) -> dict[str, int]:
    assert gen.parts is not None
    return count_unet_calls(gen.parts.unet)


def frames(gen: LcmGenerator, n: int, **params: Any) -> list[np.ndarray]:
    picture = np.random.default_rng(1).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    out, shown = gen.adopt(picture), []
    for _ in range(n):
        out = gen.generate(gen.warp(out, np.array([0.02, 0.0, 0.0, 0.0])), {**PARAMS, **params})
        shown.append(gen.to_display(out))
    return shown


def test_a_turbo_model_takes_one_step_a_frame_on_trailing_timesteps(root):
    gen = loaded(tiny_turbo(root / "turbo"))
    assert gen.parts is not None and gen.parts.family.name == "turbo" and gen.steps == 1
    strength = gen.denoise_strength(PARAMS)
    timesteps, _, _ = gen.schedule(gen.steps, strength)
    # one step, from the noise level img2img asks for (schedules are kept per strength to 0.01)
    assert timesteps == [round(1000 * round(strength, 2)) - 1]
    calls = unet_calls(gen)
    shown = frames(gen, 3)
    assert calls["n"] == 3 and calls["batch"] == 1
    assert all(f.shape == (*SIZE, 3) for f in shown) and not np.array_equal(shown[0], shown[1])


def test_an_sdxl_lightning_model_runs_its_steps_in_a_stream_batch(root):
    gen = loaded(tiny_xl(root / "xl", family="lightning"), stream_batch=True)
    assert gen.parts is not None and gen.parts.family.xl and gen.parts.family.name == "lightning"
    assert gen.steps == 4 and gen.streaming
    assert gen.schedule(4, 1.0)[0] == [999, 749, 499, 249]
    calls = unet_calls(gen)
    shown = frames(gen, 6)
    assert calls["n"] == 4 + 5, "the first frame fills the pipeline, then one batched call a frame"
    assert calls["batch"] == 4 and shown[-1].shape == (*SIZE, 3)
    cond = gen.embedding("a neon city")
    assert cond.added is not None and cond.added["time_ids"].tolist() == [[64, 64, 0, 0, 64, 64]]


def test_an_lcm_lora_is_fused_once_at_load(root):
    model = tiny_lcm(root / "plain")
    lora = tiny_lora(root / "lora.safetensors")
    plain, fused = loaded(model), loaded(model, lora=str(lora))
    assert fused.parts is not None and plain.parts is not None
    assert not any(hasattr(m, "lora_A") for m in fused.parts.unet.modules()), "fused: no adapter left behind"
    differs = [
        name
        for (name, a), (_, b) in zip(
            plain.parts.unet.state_dict().items(), fused.parts.unet.state_dict().items(), strict=True
        )
        if not torch.equal(a, b)
    ]
    assert differs and all("attn" in name for name in differs), "the LoRA's layers, and only those, changed"
    plain._frame = fused._frame = 0
    assert not np.array_equal(frames(plain, 1)[0], frames(fused, 1)[0])


def test_a_missing_lora_is_a_clear_error(root, tmp_path):
    gen = LcmGenerator(SIZE, model=str(tiny_lcm(root / "plain2")), lora=str(tmp_path / "nowhere.safetensors"))
    with pytest.raises(GeneratorUnusable, match="nowhere"):
        gen.load()


@pytest.fixture(scope="module")
def controlled(root) -> tuple[Path, Path, Path]:
    model = tiny_lcm(root / "controlled")
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    control, depth = save_random_structure(root / "structure", unet)
    return model, control, depth


def test_the_depth_controlnet_guides_frames_only_when_its_fader_is_up(controlled):
    model, control, depth = controlled
    plain = loaded(model)
    guided = loaded(model, controlnet=str(control), depth_model=str(depth))
    assert guided.structure is not None
    calls = {"n": 0}
    guided.structure.controlnet.register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    plain._frame = guided._frame = 0
    off = frames(guided, 2, control_strength=0.0)
    assert calls["n"] == 0, "fader down: the ControlNet does not run"
    assert all(np.array_equal(a, b) for a, b in zip(off, frames(plain, 2, control_strength=0.0), strict=True))
    guided._frame = 0
    on = frames(guided, 2, control_strength=1.0)
    assert calls["n"] == 2 * guided.steps, "once with each UNet call"
    assert not np.array_equal(on[0], off[0])


def test_the_controlnet_in_a_stream_batch_weighs_each_frame_by_its_own_fader(controlled):
    model, control, depth = controlled
    options = {"controlnet": str(control), "depth_model": str(depth)}
    seq, stream = loaded(model, **options), loaded(model, stream_batch=True, **options)
    seq._frame = stream._frame = 0
    rng = np.random.default_rng(2)
    inputs = [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(7)]
    faders = [0.0, 1.0, 0.5, 0.0, 1.5, 1.0, 0.7]  # moving during the stream: each frame keeps the one it entered at
    expected = [seq.generate(x, {**PARAMS, "control_strength": f}) for x, f in zip(inputs, faders, strict=True)]
    for t, (x, f) in enumerate(zip(inputs, faders, strict=True)):
        out = stream.generate(x, {**PARAMS, "control_strength": f})
        source = 0 if t < stream.steps else t - stream.steps + 1
        assert torch.allclose(out.shown, expected[source], atol=2e-4), t


def test_vj_run_with_stream_batch_and_a_depth_controlnet_made_by_vj(tmp_path):
    made = vj(
        "model", "random", "--arch", "tiny", "--out", str(tmp_path / "m"), "--structure", str(tmp_path / "s"),
        timeout=180,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == [str(tmp_path / p) for p in ("m", "s/controlnet", "s/depth")]
    proc = start(
        "-v", "run", "--model", str(tmp_path / "m"), "--stream-batch", "--controlnet", str(tmp_path / "s/controlnet"),
        "--depth-model", str(tmp_path / "s/depth"), "--gen-size", "64x64", "--headless", "--seconds", "600",
        "--no-osc", "--no-dreams", "--report", "-",
    )  # fmt: skip
    report, log = stop_after_line(proc, "first frame from lcm")
    assert "lcm ready" in log and "stream batch" in log, log[-2000:]
    g = report["generator"]
    assert g["errors"] == 0 and g["fallback"] is None and g["generated_by"].get("lcm", 0) >= 1, g
    engine = g["engine"]
    assert engine["stream_batch"] is True and engine["steps"] == 4 and engine["family"] == "lcm"
    assert engine["controlnet"] == str(tmp_path / "s/controlnet")


def test_compiling_with_tensorrt_without_its_package_says_what_to_install(root):
    if importlib.util.find_spec("torch_tensorrt") is not None:
        pytest.skip("torch-tensorrt is installed here")
    gen = LcmGenerator(SIZE, model=str(tiny_lcm(root / "trt")), compile="tensorrt")
    with pytest.raises(GeneratorUnusable, match="pip install torch-tensorrt"):
        gen.load()


def test_a_controlnet_for_another_model_is_refused_at_load_with_the_reason(root, tmp_path):
    from diffusers import UNet2DConditionModel

    xl = tiny_xl(root / "xl-for-control")
    control, depth = save_random_structure(tmp_path / "xl", UNet2DConditionModel.from_pretrained(xl, subfolder="unet"))
    gen = LcmGenerator(SIZE, model=str(tiny_lcm(root / "sd-model")), controlnet=str(control), depth_model=str(depth))
    with pytest.raises(GeneratorUnusable, match="made for another kind of model") as refused:
        gen.load()
    assert refused.value.permanent, "not loaded again and again"


def test_a_missing_controlnet_is_said_before_the_weights_load(root, tmp_path, monkeypatch):
    from vj.gen import lcm

    def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("the weights were loaded first")

    monkeypatch.setattr(lcm, "load_pipeline", never)
    gen = LcmGenerator(SIZE, model=str(root), controlnet=str(tmp_path / "no-controlnet"))
    with pytest.raises(GeneratorUnusable, match="no-controlnet"):
        gen.load()


def test_depth_model_without_a_controlnet_is_a_clear_error(tmp_path):
    out = vj("run", "--model", str(tmp_path), "--depth-model", str(tmp_path), "--headless", "--frames", "1")
    assert out.returncode == 2 and "add --controlnet" in out.stderr

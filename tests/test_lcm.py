"""The lcm generator on a tiny random LCM pipeline (the real loading and inference code, on the CPU)."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("diffusers")

import torch

from tests.child import start, stop_after_line, vj
from tests.test_worker import drive
from tests.tiny import original_checkpoint, tiny_lcm
from vj.engine.worker import GeneratorWorker
from vj.frame import motion
from vj.frame.compose import BLEND_MODES, blend
from vj.gen import base
from vj.gen.lcm import LcmGenerator
from vj.gen.models import ModelMissing, locate
from vj.params import ParamStore

SIZE = (64, 64)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The same tiny model as a diffusers folder and as one original-layout .safetensors file."""
    root = tmp_path_factory.mktemp("lcm")
    folder = tiny_lcm(root / "tiny")
    return folder, original_checkpoint(folder, root / "tiny.safetensors")


@pytest.fixture(scope="module")
def gen(models):
    g = LcmGenerator(SIZE, model=str(models[0]))
    g.load()
    return g


def params(**kw):
    p = ParamStore().values()
    p.update({"seed": 3, **kw})
    return p


def picture(seed: int = 0) -> np.ndarray:
    """A smooth test picture (gradients and a disc), so warps can be compared pixel by pixel."""
    y, x = np.mgrid[0 : SIZE[1], 0 : SIZE[0]].astype(np.float32)
    disc = ((x - 40) ** 2 + (y - 24) ** 2 < 150).astype(np.float32)
    img = np.stack([x * 3 + seed, y * 3, 120 + 100 * disc], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_folder_and_single_file_load_the_same_model(models):
    folder, single = models
    a = LcmGenerator(SIZE, model=str(folder))
    b = LcmGenerator(SIZE, model=str(single), model_config=str(folder))
    a.load()
    b.load()
    for name in ("text_encoder", "vae", "unet"):
        sa, sb = getattr(a.parts, name).state_dict(), getattr(b.parts, name).state_dict()
        shared = set(sa) & set(sb)
        assert len(shared) >= len(sb) - 1 and shared, name
        assert all(torch.equal(sa[k], sb[k]) for k in shared), f"{name} weights differ between folder and file"
    # the file has no slot for LCM's guidance embedding: that model takes its guidance from the prompt alone
    assert a._w is not None and b._w is None
    for g in (a, b):
        out = g.generate(g.adopt(picture()), params(prompt="a red fox"))
        assert tuple(out.shape) == (1, 3, 64, 64) and out.dtype == torch.float32
        assert float(out.min()) >= -1 and float(out.max()) <= 1
        shown = g.to_display(out)
        assert shown.shape == (64, 64, 3) and shown.dtype == np.uint8
        assert tuple(g.fresh(params()).shape) == (1, 3, 64, 64)
        assert tuple(g.latent(out).shape) == (1, 4, 8, 8)


def test_frames_are_repeatable_and_follow_the_prompt(gen):
    x = gen.adopt(picture())
    calls = []
    hook = gen.parts.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        gen._frame = 0
        fox = gen.to_display(gen.generate(x, params(prompt="a fox in snow")))
        gen._frame = 0
        again = gen.to_display(gen.generate(x, params(prompt="a fox in snow")))
        gen._frame = 0
        sea = gen.to_display(gen.generate(x, params(prompt="a stormy sea")))
        for _ in range(5):
            gen.generate(x, params(prompt="a fox in snow"))
    finally:
        hook.remove()
    assert np.array_equal(fox, again), "the same prompt, seed and frame give the same picture"
    assert np.abs(fox.astype(int) - sea).mean() > 1, "a new prompt changes the very next frame"
    assert len(calls) == 2, "each prompt is encoded once, then comes from the cache"


def test_prompt_blend_interpolates_the_embeddings(gen):
    a, b = gen.embedding("molten gold").embeds, gen.embedding("deep blue ice").embeds
    assert not torch.equal(a, b)

    def blended(t: float):
        return gen.conditioning(params(prompt="molten gold", prompt_b="deep blue ice", prompt_blend=t)).embeds

    assert torch.allclose(blended(0.25), a + 0.25 * (b - a))
    assert torch.equal(blended(0.0), a)
    assert torch.allclose(blended(1.0), b)
    x = gen.adopt(picture())
    frames = {}
    for t in (0.0, 0.5, 1.0):
        gen._frame = 0
        frames[t] = gen.to_display(
            gen.generate(x, params(prompt="molten gold", prompt_b="deep blue ice", prompt_blend=t))
        ).astype(int)
    assert np.abs(frames[0.5] - frames[0.0]).mean() > 0.5 and np.abs(frames[0.5] - frames[1.0]).mean() > 0.5


def test_the_schedule_is_prepared_once_and_steps_like_diffusers(gen):
    first = gen.schedule(4, 0.5)
    assert gen.schedule(4, 0.5) is first, "cached per (steps, strength)"
    timesteps, consts, _ = first
    assert len(timesteps) == 4 and timesteps == sorted(timesteps, reverse=True)
    # one consistency step of the engine equals the scheduler's own step
    sched = gen.parts.scheduler
    sched.set_timesteps(4, strength=0.5)
    assert [int(t) for t in sched.timesteps] == timesteps
    torch.manual_seed(0)
    sample, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    c_skip, c_out, sa, sb, _, _ = consts[0]
    ours = c_out * (sample - sb * eps) / sa + c_skip * sample
    sched._step_index = None
    theirs = sched.step(eps, timesteps[0], sample, return_dict=True).denoised
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_the_warp_on_the_device_matches_the_display_warp(gen):
    img = picture()
    delta = np.array([0.15, 0.1, 0.05, -0.03])
    on_device = gen.to_display(gen.warp(gen.adopt(img), delta)).astype(int)
    on_host = motion.warp(img, delta).astype(int)
    inner = (slice(4, -4), slice(4, -4))  # the mirrored edges may round differently
    assert np.abs(on_device[inner] - on_host[inner]).mean() < 1.5
    assert np.abs(on_device - img).mean() > 5, "the warp moved the picture"
    assert gen.warp(gen.adopt(img), np.zeros(4)) is not None


@pytest.mark.parametrize("mode", BLEND_MODES)
def test_mixing_on_the_device_matches_the_mixer(gen, mode):
    base_img, layer = picture(), picture(seed=90)[:, ::-1].copy()
    weights = np.linspace(0, 1, SIZE[0], dtype=np.float32)[None, :].repeat(SIZE[1], 0)
    ours = gen.to_display(gen.mix(gen.adopt(base_img), layer, weights, mode)).astype(int)
    theirs = blend(base_img, layer, mode, weights).astype(int)
    assert np.abs(ours - theirs).max() <= 2


def run_worker(worker: GeneratorWorker, until) -> list:
    return drive(worker, until, timeout=60, prompt="a glass forest")


def test_missing_model_falls_back_to_sketch_with_a_clear_message(tmp_path):
    build = base.factory("lcm", SIZE, model=str(tmp_path / "nowhere"))
    w = GeneratorWorker(build, SIZE, name="lcm", fallback=base.factory("sketch", SIZE))
    frames = run_worker(w, lambda f: w.stats.fallback is not None and len(f) >= 3)
    assert w.stats.fallback == "sketch" and len(frames) >= 3
    assert "not found" in (w.stats.last_error or "") and "nowhere" in (w.stats.last_error or "")
    assert w.stats.errors == 1, "a missing model is not retried"


def test_broken_model_falls_back_to_sketch(models, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(models[0], broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights at all")
    build = base.factory("lcm", SIZE, model=str(broken))
    w = GeneratorWorker(build, SIZE, name="lcm", fallback=base.factory("sketch", SIZE))
    frames = run_worker(w, lambda f: w.stats.fallback is not None and len(f) >= 3)
    assert w.stats.fallback == "sketch" and len(frames) >= 3
    assert f"cannot load {broken}" in (w.stats.last_error or "")


def test_the_model_takes_over_from_its_stand_in(models):
    build = base.factory("lcm", SIZE, model=str(models[0]))
    w = GeneratorWorker(build, SIZE, name="lcm", fallback=base.factory("sketch", SIZE))
    run_worker(w, lambda f: w.stats.generated_by.get("lcm", 0) >= 3)
    assert w.stats.generated_by["lcm"] >= 3 and w.stats.fallback is None and w.stats.errors == 0
    assert w.stats.stand_in is None and w.stats.state == "running"


def test_a_hugging_face_id_is_found_in_the_local_cache_only(models, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    with pytest.raises(ModelMissing, match="vj model fetch someone/tiny-lcm"):
        locate("someone/tiny-lcm")
    # the cache layout huggingface_hub writes: refs/main names the snapshot that holds the files
    repo = cache / "models--someone--tiny-lcm"
    shutil.copytree(models[0], repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    kind, path = locate("someone/tiny-lcm")
    assert kind == "folder" and path == repo / "snapshots" / "0123abcd"
    g = LcmGenerator(SIZE, model="someone/tiny-lcm")
    g.load()
    assert tuple(g.fresh(params()).shape) == (1, 3, 64, 64)


def test_options_are_checked_before_any_loading():
    from vj.errors import GeneratorUnusable

    with pytest.raises(GeneratorUnusable, match="divisible by 8"):
        LcmGenerator((60, 64))
    with pytest.raises(GeneratorUnusable, match=r"steps must be 1\.\.8"):
        LcmGenerator(SIZE, steps=12)
    g = LcmGenerator(SIZE, model="x", device="cuda:7")
    if not torch.cuda.is_available():
        with pytest.raises(GeneratorUnusable, match="not available"):
            g.load()


# -- the command line ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_vj_run_with_a_random_model_made_by_vj(tmp_path):
    made = vj("model", "random", "--arch", "tiny", "--out", str(tmp_path / "m"), timeout=120)
    assert made.returncode == 0, made.stderr
    folder = Path(made.stdout.strip().splitlines()[-1])
    assert (folder / "model_index.json").is_file()
    # Waits for the model's first frame, however long the load takes on a busy machine, then ends the show.
    proc = start(
        "-v", "run", "--model", str(folder), "--gen-size", "64x64", "--headless", "--seconds", "600", "--no-osc",
        "--no-dreams", "--report", "-",
    )  # fmt: skip
    report, log = stop_after_line(proc, "first frame from lcm")
    out = SimpleNamespace(stderr=log)
    g = report["generator"]
    assert g["name"] == "lcm" and report["generated"] >= 1 and g["errors"] == 0 and g["fallback"] is None
    assert g["generated_by"].get("lcm", 0) >= 1, g
    assert g["load_s"] is not None
    assert "[transformers]" not in out.stderr and "Loading pipeline components" not in out.stderr, "library chatter"
    assert "loading " in out.stderr, "vj's own progress bar"


@pytest.mark.slow
def test_quitting_while_the_model_loads_exits_cleanly(models, tmp_path):
    out = vj(
        "run", "--model", str(models[0]), "--gen-size", "64x64", "--headless", "--seconds", "1", "--no-osc",
        "--no-dreams", "--report", str(tmp_path / "r.json"), timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["generator"]["generated_by"].get("sketch", 0) >= 1


def test_model_options_belong_to_lcm():
    out = vj("run", "--generator", "sketch", "--steps", "2", "--headless", "--frames", "1")
    assert out.returncode == 2 and "--steps: model options are for the lcm generator" in out.stderr


def test_fetch_offline_says_what_to_do(tmp_path):
    out = vj("model", "fetch", "someone/some-model", env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)})
    assert out.returncode == 2
    assert "cannot reach the Hugging Face Hub to fetch 'someone/some-model'" in out.stderr


@pytest.mark.slow
def test_the_benchmark_runs_engine_and_naive_side_by_side():
    import subprocess
    import sys

    from tests.child import ENV, ROOT

    out = subprocess.run(
        [sys.executable, "scripts/bench_gen.py", "--arch", "tiny", "--size", "64", "--steps", "3", "--frames", "2",
         "--warmup", "1", "--tiny-vae"],
        capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert (r["unet_calls_per_frame"], r["naive_unet_calls_per_frame"]) == (3, 3), "the same denoising work"
    assert r["tiny_vae"] is True and r["steps"] == 3 and r["size"] == 64
    assert r["engine_ms"] > 0 and r["naive_ms"] > 0 and r["model_ms"] > 0 and r["ratio"] > 0
    assert abs(r["overhead_ms"] - (r["engine_ms"] - r["model_ms"])) < 0.02


# -- replay: the latent morph ----------------------------------------------------------------------------------
def test_replay_walks_between_the_latents_of_dreams_the_model_made(models, gen, tmp_path):
    from vj.dreams.replay import ReplayGenerator
    from vj.dreams.store import DreamStore
    from vj.gen.lcm import LatentDecoder, slerp

    store = DreamStore(tmp_path)
    latents = []
    for seed in (1, 2):
        frame = gen.fresh(params(seed=seed, prompt="a coral reef"))
        latents.append(gen.latent(frame).numpy().copy())
        store.add(gen.to_display(frame), session="s", prompt="p", seed=seed, params={}, score=1 - seed / 10,
                  scores={}, generator="lcm", latent=latents[-1])  # fmt: skip
    store.close()
    replay = ReplayGenerator(SIZE, folder=tmp_path, seconds=1.0, latents=True, model=str(models[0]))
    replay.load()
    assert replay.decoder is not None and len(replay.latents) == 2
    t = [0.0]
    replay.clock = lambda: t[0]
    first = replay.generate(None, {})
    t[0] = 0.875  # half way through the morph (smoothstep(0.5) = 0.5)
    mid = replay.generate(None, {})
    decoder = LatentDecoder(str(models[0]))
    close = lambda x, y: np.abs(x.astype(int) - y).max() <= 2  # noqa: E731 - memory layouts round differently
    assert close(first, decoder.decode(latents[0])), "between morphs: the dream as it was kept"
    assert close(mid, decoder.decode(slerp(latents[0], latents[1], 0.5)))
    crossfade = (first.astype(int) + decoder.decode(latents[1])) // 2
    assert np.abs(mid.astype(int) - crossfade).mean() > 1, "a walk through latent space, not a crossfade"
    # slerp keeps the latents' size where a straight blend shrinks it
    a, b = latents
    assert np.linalg.norm(slerp(a, b, 0.5)) > np.linalg.norm((a + b) / 2)
    assert np.allclose(slerp(a, b, 0.0), a, atol=1e-5) and np.allclose(slerp(a, b, 1.0), b, atol=1e-5)


def test_replay_without_the_model_morphs_the_pictures(tmp_path):
    from vj.dreams.replay import ReplayGenerator
    from vj.dreams.store import DreamStore

    store = DreamStore(tmp_path)
    for seed in (1, 2):
        store.add(picture(seed * 50), session="s", prompt="p", seed=seed, params={}, score=0.5, scores={},
                  generator="lcm", latent=np.zeros((1, 4, 8, 8), np.float32))  # fmt: skip
    store.close()
    replay = ReplayGenerator(SIZE, folder=tmp_path, latents=True, model=str(tmp_path / "gone"))
    replay.load()
    assert replay.decoder is None and len(replay.images) == 2


def test_a_replay_scene_in_a_show_on_lcm_takes_the_model_along(tmp_path):
    from vj.engine.loop import Show, ShowConfig
    from vj.scenes import load_scenes

    (tmp_path / "01.toml").write_text('name = "Replay"\nkind = "replay"\n')
    options = {"model": "/no/model", "steps": 2, "tiny_vae": "t/v"}
    cfg = ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, frames=40, scenes=load_scenes(tmp_path),
                     generator="lcm", generator_options=options)  # fmt: skip
    s = Show(cfg)
    seen = {}

    def watch(s) -> None:
        if s.frames == 3:
            s.bus.post("osc", "scene", 1)
        if s.frames == 20:
            seen["now"] = s._generator_now

    s.on_frame.append(watch)
    s.run()
    name, options = seen["now"]
    assert name == "replay" and options["latents"] is True
    assert options["model"] == "/no/model" and options["tiny_vae"] == "t/v" and "steps" not in options


@pytest.mark.slow
def test_a_dream_session_on_the_model_keeps_latents(models, tmp_path):
    from vj.dreams.store import DreamStore

    out = vj("dream", "--prompt", "a coral reef", "--model", str(models[0]), "--gen-size", "64x64", "--frames", "2",
             "--seconds", "3", "--dreams", str(tmp_path), timeout=180)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "with lcm at 64x64" in out.stdout
    store = DreamStore(tmp_path, create=False)
    try:
        dreams = store.top()
        assert dreams and all(d.generator == "lcm" for d in dreams)
        assert all(store.latent(d).shape == (1, 4, 8, 8) for d in dreams)
    finally:
        store.close()

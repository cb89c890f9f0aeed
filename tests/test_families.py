"""Model families beside LCM (SD-Turbo, SDXL-Turbo, SDXL-Lightning) and LoRA weights fused at load, on tiny random
models built from configs (the real loading code, on the CPU)."""

import re
import shutil
from typing import Any

import pytest

pytest.importorskip("diffusers")

import torch

from tests.tiny import kohya_lora, original_checkpoint, tiny_lcm, tiny_lora, tiny_turbo, tiny_xl
from vj.errors import GeneratorUnusable
from vj.gen.families import CONFIG_KEY, LCM, Family, detect, timesteps
from vj.gen.models import ModelMissing, locate_lora, require_packages
from vj.gen.pipeline import Cond, Parts, encode_prompt, load_pipeline, parts_from
from vj.gen.random_models import ARCHS, configs, random_lora

CPU = torch.device("cpu")
F32 = torch.float32


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny LCM, turbo and SDXL folders, named so that no name gives the family away."""
    require_packages()
    root = tmp_path_factory.mktemp("families")
    return {
        "tiny": tiny_lcm(root / "a"),
        "tiny-turbo": tiny_turbo(root / "b"),
        "tiny-xl": tiny_xl(root / "c"),
        "lora": tiny_lora(root / "loras" / "random_lora.safetensors"),
    }


@pytest.fixture(scope="module")
def xl(folders):
    pipe = load_pipeline(str(folders["tiny-xl"]), None, F32)
    return pipe, parts_from(pipe, CPU, F32)


def unet_out(unet, cond: Cond, t: int = 999, seed: int = 0):
    """One UNet call on fixed noise: what the model predicts for it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g)
    dim = unet.config.get("time_cond_proj_dim")
    w = torch.randn(1, dim, generator=g) if dim else None
    kwargs = {"added_cond_kwargs": cond.added} if cond.added is not None else {}
    with torch.no_grad():
        return unet(
            x, torch.tensor([t]), encoder_hidden_states=cond.embeds, timestep_cond=w, return_dict=False, **kwargs
        )[0]


# -- which family ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "name", "xl", "steps", "spacing"),
    [
        ("sd15", "lcm", False, 4, "lcm"),
        ("small", "lcm", False, 4, "lcm"),
        ("tiny", "lcm", False, 4, "lcm"),
        ("sd-turbo", "turbo", False, 1, "trailing"),
        ("tiny-turbo", "turbo", False, 1, "trailing"),
        ("sdxl", "turbo", True, 1, "trailing"),
        ("tiny-xl", "turbo", True, 1, "trailing"),
    ],
)
def test_each_architecture_says_its_family(arch, name, xl, steps, spacing):
    assert set(ARCHS) == {"sd15", "small", "tiny", "sd-turbo", "tiny-turbo", "sdxl", "tiny-xl"}
    unet, scheduler = configs(arch)
    assert detect(unet, scheduler, "/models/whatever") == Family(name, xl, steps, spacing, "epsilon")
    # the marker in the scheduler config wins over a name that says otherwise; --family over both
    assert detect(unet, scheduler, "someone/sdxl-lightning").name == name
    forced = detect(unet, scheduler, "x", override="lightning")
    assert forced == Family("lightning", xl, 4, "trailing", "epsilon")
    _, marked = configs(arch, family="lightning")
    assert detect(unet, marked).name == "lightning"


def test_without_a_marker_the_name_and_the_unet_decide():
    sd = {"cross_attention_dim": 768}
    sdxl = {"cross_attention_dim": 2048, "addition_embed_type": "text_time"}
    euler = {"prediction_type": "epsilon", "timestep_spacing": "trailing"}
    assert detect(sdxl, euler, "stabilityai/sdxl-turbo") == Family("turbo", True, 1, "trailing")
    assert detect(sd, euler, "stabilityai/sd-turbo") == Family("turbo", False, 1, "trailing")
    assert detect(sdxl, euler, "/m/SDXL-Lightning-4step") == Family("lightning", True, 4, "trailing")
    assert detect(sd, {}, "SimianLuo/LCM_Dreamshaper_v7") == LCM
    assert detect({**sd, "time_cond_proj_dim": 256}, {}, "/m/dreamshaper") == LCM
    # a plain SD model runs in a few steps only with an LCM-LoRA fused: lcm
    assert detect(sd, {}, "/m/my-model") == LCM
    assert detect(sdxl, {}, "/m/my-model") == Family("lcm", True, 4, "lcm")
    # the fused LoRA's name comes first: an LCM-LoRA onto a turbo model makes it an lcm
    assert detect(sdxl, {}, ["latent-consistency/lcm-lora-sdxl", "stabilityai/sdxl-turbo"]).name == "lcm"
    assert detect(sdxl, {}, ["/loras/style.safetensors", "stabilityai/sdxl-turbo"]).name == "turbo"
    assert detect(sd, {"prediction_type": "v_prediction"}, "x").prediction == "v_prediction"
    with pytest.raises(GeneratorUnusable, match="unknown model family 'flux'"):
        detect(sd, {}, "x", override="flux")
    with pytest.raises(GeneratorUnusable, match="sample"):
        detect(sd, {"prediction_type": "sample"}, "x")


def test_trailing_timesteps_count_back_from_the_last_training_step():
    from diffusers import LCMScheduler

    s: Any = LCMScheduler()
    lightning, turbo = Family("lightning", True, 4, "trailing"), Family("turbo", True, 1, "trailing")
    assert timesteps(lightning, s, 4, 1.0) == [999, 749, 499, 249]  # as SDXL-Lightning's 4-step model expects
    assert timesteps(turbo, s, 1, 1.0) == [999]
    assert timesteps(turbo, s, 1, 0.5) == [499]
    assert timesteps(turbo, s, 2, 0.5) == [499, 249]
    assert timesteps(lightning, s, 4, 0.3) == [299, 224, 149, 74]
    # where steps crowd into too little strength, the repeats go (and nothing falls below 0)
    assert timesteps(lightning, s, 4, 0.002) == [1, 0]
    assert timesteps(lightning, s, 3, 0.0) == [0]


def test_lcm_timesteps_are_the_schedulers_own_with_the_strength_floor():
    from diffusers import LCMScheduler

    s: Any = LCMScheduler()
    ref: Any = LCMScheduler()
    assert timesteps(LCM, s, 4, 1.0) == [999, 759, 499, 259]
    ref.set_timesteps(2, strength=0.5)
    assert timesteps(LCM, s, 2, 0.5) == [int(t) for t in ref.timesteps]
    # below (steps + 1) / original_inference_steps (5/50 here) the strength is raised to it
    ref.set_timesteps(4, strength=0.1)
    low = timesteps(LCM, s, 4, 0.02)
    assert low == [int(t) for t in ref.timesteps] and len(low) == 4
    assert low == sorted(low, reverse=True) and max(low) < 100


# -- SDXL's conditioning -----------------------------------------------------------------------------------------
def test_sdxl_prompts_give_both_encoders_the_pooled_embedding_and_the_size(xl):
    pipe, parts = xl
    assert parts.family.xl and parts.text_encoder_2 is not None and parts.tokenizer_2 is not None
    widths = parts.text_encoder.config.hidden_size, parts.text_encoder_2.config.hidden_size
    cond = encode_prompt(parts, "a neon jellyfish", CPU, F32, size=(64, 48))
    assert tuple(cond.embeds.shape) == (1, 77, sum(widths))
    assert cond.added is not None and set(cond.added) == {"text_embeds", "time_ids"}
    assert tuple(cond.added["text_embeds"].shape) == (1, parts.text_encoder_2.config.projection_dim)
    assert cond.added["time_ids"].tolist() == [[48, 64, 0, 0, 48, 64]]  # (height, width), no crop, (height, width)
    # exactly what diffusers' own SDXL pipeline computes
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt("a neon jellyfish", device=CPU, do_classifier_free_guidance=False)
    assert torch.equal(cond.embeds, embeds) and torch.equal(cond.added["text_embeds"], pooled)
    ids, _ = pipe._get_add_time_ids((48, 64), (0, 0), (48, 64), 6.0, 2.5, (48, 64), (0, 0), (48, 64), F32, 32)
    assert torch.equal(cond.added["time_ids"], ids)
    # the UNet takes them, and both the pooled embedding and the size steer it
    out = unet_out(parts.unet, cond)
    assert tuple(out.shape) == (1, 4, 8, 8) and torch.isfinite(out).all()
    square = encode_prompt(parts, "a neon jellyfish", CPU, F32)
    assert square.added is not None and square.added["time_ids"].tolist() == [[64, 64, 0, 0, 64, 64]]
    assert not torch.allclose(unet_out(parts.unet, square), out)
    other = encode_prompt(parts, "a rusty tractor", CPU, F32, size=(64, 48))
    assert other.added is not None
    assert not torch.equal(other.added["text_embeds"], cond.added["text_embeds"])
    # the prompt fader and the stream batch carry the added conditioning along
    half = cond.lerp(other, 0.5)
    assert half.added is not None
    assert torch.allclose(half.added["text_embeds"], (cond.added["text_embeds"] + other.added["text_embeds"]) / 2)
    both = Cond.stack([cond, other])
    assert both.added is not None and tuple(both.added["time_ids"].shape) == (2, 6)


def test_sd_prompts_have_no_added_conditioning(folders):
    parts = parts_from(load_pipeline(str(folders["tiny-turbo"]), None, F32), CPU, F32)
    cond = encode_prompt(parts, "a fox", CPU, F32, size=(64, 64))
    assert cond.added is None and tuple(cond.embeds.shape) == (1, 77, 32)


# -- loading each family -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["tiny-turbo", "tiny-xl"])
def test_turbo_and_sdxl_folders_load_as_their_family(folders, arch):
    from diffusers import LCMScheduler

    pipe = load_pipeline(str(folders[arch]), None, F32)
    wanted = "StableDiffusionXLImg2ImgPipeline" if arch == "tiny-xl" else "StableDiffusionImg2ImgPipeline"
    assert type(pipe).__name__ == wanted
    parts = parts_from(pipe, CPU, F32, name=str(folders[arch]))
    assert parts.family == Family("turbo", arch == "tiny-xl", 1, "trailing", "epsilon")
    assert (parts.text_encoder_2 is not None) == (arch == "tiny-xl")
    # the engine's loop runs on an LCMScheduler made from the model's (Euler) config
    assert parts.scheduler.config.num_train_timesteps == 1000
    assert isinstance(parts.scheduler, LCMScheduler)
    assert timesteps(parts.family, parts.scheduler, parts.family.steps, 1.0) == [999]
    assert parts.scale == pytest.approx(0.13025 if arch == "tiny-xl" else 0.18215)
    cond = encode_prompt(parts, "a fox", CPU, F32, size=(64, 64))
    out = unet_out(parts.unet, cond)
    assert tuple(out.shape) == (1, 4, 8, 8) and torch.isfinite(out).all()
    assert not any(p.requires_grad for p in parts.unet.parameters())
    # --family wins over what the folder says
    forced = parts_from(pipe, CPU, F32, family="lightning")
    assert forced.family.name == "lightning" and forced.family.steps == 4


def test_the_family_is_read_from_the_saved_config_not_the_folder_name(tmp_path):
    folder = tiny_xl(tmp_path / "sdxl-turbo-copy", family="lightning")
    pipe = load_pipeline(str(folder), None, F32)
    assert pipe.scheduler.config[CONFIG_KEY] == "lightning"
    assert parts_from(pipe, CPU, F32, name=str(folder)).family == Family("lightning", True, 4, "trailing")


def test_sdxl_runs_its_autoencoder_in_float32_under_float16(folders):
    # SDXL's autoencoder overflows float16 (black frames): it runs in float32 and speaks float16 to the engine
    half = torch.float16
    parts = parts_from(load_pipeline(str(folders["tiny-xl"]), None, F32), CPU, half)
    assert parts.unet.dtype == half and parts.text_encoder_2.dtype == half
    assert next(parts.vae.vae.parameters()).dtype == F32
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(half) * 2 - 1
    with torch.no_grad():
        latents = parts.vae.encode(image).latent_dist.mean
        picture = parts.vae.decode(latents, return_dict=False)[0]
        direct = parts.vae.vae.encode(image.float()).latent_dist.mean
    assert latents.dtype == half and picture.dtype == half and tuple(picture.shape) == (1, 3, 64, 64)
    assert torch.allclose(latents.float(), direct, atol=1e-2)
    # an SD autoencoder is fine in float16
    sd = parts_from(load_pipeline(str(folders["tiny-turbo"]), None, F32), CPU, half)
    assert next(sd.vae.parameters()).dtype == half


def test_a_single_turbo_file_loads_with_its_folders_configs_and_family(folders, tmp_path):
    single = original_checkpoint(folders["tiny-turbo"], tmp_path / "turbo.safetensors")
    pipe = load_pipeline(str(single), str(folders["tiny-turbo"]), F32)
    assert parts_from(pipe, CPU, F32, name=str(single)).family.name == "turbo"
    ref = load_pipeline(str(folders["tiny-turbo"]), None, F32)
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(ref, name).state_dict()
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), name


def test_a_single_sdxl_file_loads_through_the_sdxl_pipeline(folders, tmp_path, monkeypatch):
    from diffusers import LatentConsistencyModelImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel

    calls = []

    def fake(name):
        def load(cls, path, **kwargs):
            calls.append((name, kwargs["config"]))
            return load_pipeline(kwargs["config"], None, F32) if name != "unet" else None

        return classmethod(load)

    monkeypatch.setattr(UNet2DConditionModel, "from_single_file", fake("unet"))
    monkeypatch.setattr(StableDiffusionXLImg2ImgPipeline, "from_single_file", fake("xl"))
    monkeypatch.setattr(LatentConsistencyModelImg2ImgPipeline, "from_single_file", fake("sd"))
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"x")
    load_pipeline(str(single), str(folders["tiny-xl"]), F32)
    load_pipeline(str(single), str(folders["tiny"]), F32)
    xl_config, sd_config = str(folders["tiny-xl"]), str(folders["tiny"])
    assert calls == [("unet", xl_config), ("xl", xl_config), ("unet", sd_config), ("sd", sd_config)]


def test_parts_keep_their_positional_form_and_default_to_lcm():
    parts = Parts(None, None, None, None, None, 0.18215, False)
    assert parts.family == LCM and parts.text_encoder_2 is None and parts.tokenizer_2 is None


@pytest.mark.slow
def test_the_vj_model_random_command_saves_each_family(tmp_path):
    from tests.child import vj

    out = vj(
        "model", "random", "--arch", "tiny-xl", "--family", "lightning", "--out", str(tmp_path / "m"),
        "--lora", str(tmp_path / "l.safetensors"), timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    parts = parts_from(load_pipeline(str(tmp_path / "m"), None, F32, lora=str(tmp_path / "l.safetensors")), CPU, F32)
    assert parts.family == Family("lightning", True, 4, "trailing")
    helped = vj("model", "random", "--help")
    assert all(arch in helped.stdout for arch in ARCHS)


# -- LoRA fused at load ----------------------------------------------------------------------------------------------
def test_a_fused_lora_gives_what_the_active_adapter_gives(folders):
    folder, lora = str(folders["tiny"]), folders["lora"]
    base = load_pipeline(folder, None, F32)
    fused = load_pipeline(folder, None, F32, lora=str(lora))
    adapter = load_pipeline(folder, None, F32)
    adapter.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="x")
    assert adapter.get_list_adapters() == {"unet": ["x"]}
    # fused: the weights changed in place, no LoRA layers left, the same parameters as the model alone
    keys = set(fused.unet.state_dict())
    assert keys == set(base.unet.state_dict()) and not any("lora" in k for k in keys)
    assert fused.get_list_adapters() == {}
    parts = [parts_from(p, CPU, F32) for p in (base, fused, adapter)]
    cond = encode_prompt(parts[0], "a fox", CPU, F32)
    plain, with_fused, with_adapter = (unet_out(p.unet, cond) for p in parts)
    assert (with_fused - plain).abs().mean() > 1e-3 * plain.abs().mean() + 1e-4, "the LoRA changes the prediction"
    assert torch.allclose(with_fused, with_adapter, atol=1e-4, rtol=1e-4)


def test_a_kohya_layout_lora_fuses_to_the_same_weights(folders, tmp_path):
    # the layout LoRAs from model sites, and the published LCM-LoRAs, come in
    kohya = kohya_lora(folders["lora"], tmp_path / "kohya.safetensors")
    folder = str(folders["tiny"])
    ours = load_pipeline(folder, None, F32, lora=str(folders["lora"])).unet.state_dict()
    theirs = load_pipeline(folder, None, F32, lora=str(kohya)).unet.state_dict()
    plain = load_pipeline(folder, None, F32).unet.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    changed = [k for k in ours if not torch.equal(ours[k], plain[k])]
    assert changed and all(".attn" in k and k.endswith("weight") for k in changed)


def test_a_lora_is_found_as_a_file_a_folder_or_a_cached_id(folders, tmp_path, monkeypatch):
    lora = folders["lora"]
    assert locate_lora(str(lora)) == lora
    assert locate_lora(str(lora.parent)) == lora  # the folder's only .safetensors
    shutil.copy(lora, lora.parent / "pytorch_lora_weights.safetensors")
    assert locate_lora(str(lora.parent)) == lora.parent / "pytorch_lora_weights.safetensors"
    shutil.copy(lora, tmp_path / "one.safetensors")
    shutil.copy(lora, tmp_path / "two.safetensors")
    with pytest.raises(ModelMissing, match=r"several \.safetensors files .*name one"):
        locate_lora(str(tmp_path))
    import huggingface_hub.constants as hub

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    with pytest.raises(ModelMissing, match="vj model fetch someone/lcm-lora-tiny"):
        locate_lora("someone/lcm-lora-tiny")
    snapshot = cache / "models--someone--lcm-lora-tiny" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    shutil.copy(lora, snapshot / "tiny_4step_lora.safetensors")
    shutil.copy(lora, snapshot / "tiny_8step_lora.safetensors")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    with pytest.raises(
        ModelMissing, match=re.escape("name one: --lora someone/lcm-lora-tiny/tiny_4step_lora.safetensors")
    ):
        locate_lora("someone/lcm-lora-tiny")
    assert locate_lora("someone/lcm-lora-tiny/tiny_8step_lora.safetensors") == snapshot / "tiny_8step_lora.safetensors"
    with pytest.raises(ModelMissing, match=re.escape("has no tiny_2step_lora.safetensors")):
        locate_lora("someone/lcm-lora-tiny/tiny_2step_lora.safetensors")
    pipe = load_pipeline(str(folders["tiny"]), None, F32, lora="someone/lcm-lora-tiny/tiny_4step_lora.safetensors")
    assert pipe.get_list_adapters() == {}


def test_a_missing_broken_or_foreign_lora_is_a_clear_model_missing(folders, tmp_path):
    from safetensors.torch import save_file

    folder = str(folders["tiny"])
    with pytest.raises(ModelMissing, match=re.escape("LoRA '/no/such/lora.safetensors' not found")):
        load_pipeline(folder, None, F32, lora="/no/such/lora.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01this is not a safetensors file" * 10)
    with pytest.raises(ModelMissing, match=f"LoRA {garbage}: not a readable .safetensors file"):
        load_pipeline(folder, None, F32, lora=str(garbage))
    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"x")
    with pytest.raises(ModelMissing, match=re.escape("a LoRA is a .safetensors file")):
        load_pipeline(folder, None, F32, lora=str(pickle))
    model = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.out.2.weight": torch.zeros(2, 2)}, str(model))
    with pytest.raises(ModelMissing, match="holds no LoRA weights"):
        load_pipeline(folder, None, F32, lora=str(model))
    # made for another base: SDXL's layers onto an SD model, and an SD LoRA onto SDXL
    xl_lora = tiny_lora(tmp_path / "xl.safetensors", arch="tiny-xl")
    with pytest.raises(ModelMissing, match=f"LoRA {xl_lora} does not fit this model"):
        load_pipeline(folder, None, F32, lora=str(xl_lora))
    with pytest.raises(ModelMissing, match="does not fit this model"):
        load_pipeline(str(folders["tiny-xl"]), None, F32, lora=str(folders["lora"]))


def test_random_lora_leaves_the_unet_alone_and_has_diffusers_keys(xl):
    _, parts = xl
    before = {k: v.clone() for k, v in parts.unet.state_dict().items()}
    state = random_lora(parts.unet, rank=2, seed=1)
    assert set(parts.unet.state_dict()) == set(before)
    assert all(torch.equal(v, before[k]) for k, v in parts.unet.state_dict().items())
    assert state and all(k.endswith(("lora_A.weight", "lora_B.weight")) for k in state)
    a = next(v for k, v in state.items() if k.endswith("attn1.to_q.lora_A.weight"))
    assert a.shape[0] == 2 and torch.count_nonzero(a) > 0
    again = random_lora(parts.unet, rank=2, seed=1)
    assert all(torch.equal(v, again[k]) for k, v in state.items())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/mnt/turbo_ssd/models/LCM_Dreamshaper_v7", ("lcm", 4)),  # the folders above a model say nothing
        ("/home/me/lightning-tests/sd-turbo", ("turbo", 1)),
        ("x/lcm-lora-sdxl-turbo", ("lcm", 4)),  # the word that comes first
        ("ByteDance/sdxl_lightning_2step_unet", ("lightning", 2)),  # a step count in the name
        ("x/SDXL-Lightning-8step", ("lightning", 8)),
        ("/data/2step/sd-turbo", ("turbo", 1)),
    ],
)
def test_only_a_models_own_name_says_its_family_and_steps(name, expected):
    found = detect({}, {}, name)
    assert (found.name, found.steps) == expected

"""Structure guidance (depth ControlNet) on tiny random models: control images, residuals, loading."""

import json

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import torch

from vj.gen.models import ModelMissing
from vj.gen.pipeline import Cond
from vj.gen.random_models import random_pipeline
from vj.gen.structure import (
    DEFAULT_DEPTH,
    Structure,
    random_controlnet,
    random_depth,
    random_structure,
    save_random_structure,
)

H, W = 64, 48  # a frame; its latents are 8 x 6


@pytest.fixture(scope="module")
def unet():
    return random_pipeline("tiny").unet.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def structure(unet):
    return random_structure(unet)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, unet):
    return save_random_structure(tmp_path_factory.mktemp("structure"), unet=unet)


def frames(*seeds: int) -> torch.Tensor:
    """Smooth pictures in -1..1 (a gradient and a disc that moves with the seed), B x 3 x H x W."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    out = []
    for s in seeds:
        disc = ((x - 0.3 * s + 0.3) ** 2 + (y + 0.2 * s) ** 2 < 0.2).float()
        out.append(torch.stack([x * 0.8, y * 0.5 - 0.2 * s, disc * 1.6 - 0.8]))
    return torch.stack(out)


def inputs(batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, Cond]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, H // 8, W // 8, generator=g), Cond(torch.randn(batch, 77, 32, generator=g))


def flat(residuals: dict) -> list[torch.Tensor]:
    return [*residuals["down_block_additional_residuals"], residuals["mid_block_additional_residual"]]


# -- control images -----------------------------------------------------------------------------------------------
def test_control_image_is_each_frames_depth_stretched_to_0_1(structure):
    control = structure.control_image(frames(0, 1, 0))
    assert tuple(control.shape) == (3, 3, H, W) and control.dtype == torch.float32
    assert not control.isnan().any()
    assert float(control.min()) >= 0 and float(control.max()) <= 1
    for c in control:
        assert float(c.min()) == 0 and float(c.max()) == pytest.approx(1)
        assert torch.equal(c[0], c[1]) and torch.equal(c[0], c[2])  # one depth, three channels
    torch.testing.assert_close(control[0], control[2], atol=1e-5, rtol=0)  # the batch does not mix frames
    assert float((control[0] - control[1]).abs().mean()) > 1e-3  # another picture, another depth


def test_flat_depth_gives_zeros_not_nan(unet):
    depth, processor = random_depth()
    depth.head.conv3.weight.data.zero_()  # the same depth everywhere
    s = Structure(random_controlnet(unet), depth, torch.device("cpu"), torch.float32, processor=processor)
    control = s.control_image(frames(0, 1))
    assert tuple(control.shape) == (2, 3, H, W)
    assert not control.isnan().any() and float(control.abs().max()) == 0


def test_depth_input_matches_the_image_processor(structure):
    """Resized as the model's image processor would (aspect kept, multiples of the patch), with its mean and std."""
    _, processor = random_depth()
    for h, w in ((64, 48), (42, 42), (30, 90)):
        image = np.zeros((h, w, 3), np.uint8)
        expected = processor(images=image, return_tensors="pt").pixel_values
        assert structure.depth_input_size(h, w) == tuple(expected.shape[-2:]), (h, w)
    # at the processor's own size nothing is resized: the values are the processor's
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (42, 42, 3), dtype=np.uint8)
    expected = processor(images=image, return_tensors="pt").pixel_values
    frame = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    torch.testing.assert_close(structure.pixel_values(frame), expected, atol=1e-4, rtol=0)


def test_depth_size_overrides_the_processor(unet):
    depth, processor = random_depth()
    s = Structure(
        random_controlnet(unet), depth, torch.device("cpu"), torch.float32, processor=processor, depth_size=28
    )
    assert s.depth_input_size(64, 64) == (28, 28)
    assert tuple(s.control_image(frames(0)).shape) == (1, 3, H, W)


# -- residuals ----------------------------------------------------------------------------------------------------
def test_scale_zero_costs_nothing(structure):
    calls = []
    hook = structure.controlnet.register_forward_hook(lambda *a: calls.append(1))
    try:
        latents, cond = inputs()
        control = structure.control_image(frames(0))
        assert structure.residuals(latents, torch.tensor([500]), cond, control, 0.0) == {}
        assert structure.residuals(latents, torch.tensor([500]), cond, control, -1.0) == {}
        assert calls == []
        assert structure.residuals(latents, torch.tensor([500]), cond, control, 1.0)
        assert calls == [1]
    finally:
        hook.remove()


def test_residuals_steer_the_unet(structure, unet):
    latents, cond = inputs()
    t = torch.tensor([500])
    control = structure.control_image(frames(0))
    r = structure.residuals(latents, t, cond, control, 1.0)
    assert len(r["down_block_additional_residuals"]) == 12  # 4 blocks x (2 layers + downsampler), less one
    with torch.no_grad():
        plain = unet(latents, t, encoder_hidden_states=cond.embeds, return_dict=False)[0]
        steered = unet(latents, t, encoder_hidden_states=cond.embeds, return_dict=False, **r)[0]
    assert plain.shape == steered.shape == latents.shape
    assert float((plain - steered).abs().mean()) > 1e-3
    # and another control image steers it elsewhere
    other = structure.residuals(latents, t, cond, structure.control_image(frames(1)), 1.0)
    assert any(not torch.allclose(a, b) for a, b in zip(flat(r), flat(other), strict=True))


def test_scale_is_linear(structure):
    latents, cond = inputs()
    t = torch.tensor([300])
    control = structure.control_image(frames(0))
    full = flat(structure.residuals(latents, t, cond, control, 1.0))
    half = flat(structure.residuals(latents, t, cond, control, 0.5))
    assert any(float(a.abs().max()) > 0 for a in full)
    for a, b in zip(full, half, strict=True):
        torch.testing.assert_close(b, 0.5 * a)


def test_a_batch_is_its_frames(structure):
    """The stream batch: each frame its own latents, prompt, control image and timestep."""
    latents, cond = inputs(2)
    control = structure.control_image(frames(0, 1))
    both = flat(structure.residuals(latents, torch.tensor([700, 200]), cond, control, 0.8))
    for i, t in enumerate((700, 200)):
        one = flat(
            structure.residuals(
                latents[i : i + 1], torch.tensor([t]), Cond(cond.embeds[i : i + 1]), control[i : i + 1], 0.8
            )
        )
        for a, b in zip(both, one, strict=True):
            torch.testing.assert_close(a[i : i + 1], b, atol=1e-5, rtol=1e-4)
    # one timestep (and one prompt) for the whole batch is spread over it
    shared = flat(structure.residuals(latents, torch.tensor([700]), Cond(cond.embeds[:1]), control, 0.8))
    alike = flat(
        structure.residuals(latents, torch.tensor([700, 700]), Cond(cond.embeds[:1].repeat(2, 1, 1)), control, 0.8)
    )
    for a, b in zip(shared, alike, strict=True):
        torch.testing.assert_close(a, b)
    # each frame's own timestep counts (the mid block's residual depends on it)
    same = flat(structure.residuals(latents, torch.tensor([700, 700]), cond, control, 0.8))
    torch.testing.assert_close(same[-1][0], both[-1][0])
    assert not torch.allclose(same[-1][1], both[-1][1])


# -- loading ------------------------------------------------------------------------------------------------------
def test_saved_folders_load_back_the_same(structure, folders):
    control_dir, depth_dir = folders
    assert (control_dir / "config.json").is_file() and (depth_dir / "preprocessor_config.json").is_file()
    loaded = Structure.load(str(control_dir), str(depth_dir), "cpu", "float32")
    assert loaded.device == torch.device("cpu") and loaded.controlnet.dtype == torch.float32
    assert loaded.depth_input_size(H, W) == structure.depth_input_size(H, W) == (56, 42)
    images = frames(0, 1)
    torch.testing.assert_close(loaded.control_image(images), structure.control_image(images), atol=0, rtol=0)
    latents, cond = inputs(2)
    control = structure.control_image(images)
    t = torch.tensor([600, 100])
    for a, b in zip(
        flat(loaded.residuals(latents, t, cond, control, 1.0)),
        flat(structure.residuals(latents, t, cond, control, 1.0)),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    loaded.close()
    assert loaded.controlnet is None and loaded.depth is None
    loaded.close()  # twice is fine


def test_missing_models_say_how_to_fetch_them(folders, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache, whatever this machine holds
    control_dir, depth_dir = folders
    with pytest.raises(ModelMissing, match=r"'nobody/no-such-controlnet'.*vj model fetch nobody/no-such-controlnet"):
        Structure.load("nobody/no-such-controlnet", str(depth_dir), "cpu", "float32")
    with pytest.raises(ModelMissing, match=r"depth model 'nobody/no-such-depth'.*vj model fetch nobody/no-such-depth"):
        Structure.load(str(control_dir), "nobody/no-such-depth", "cpu", "float32")
    with pytest.raises(ModelMissing, match=f"vj model fetch {DEFAULT_DEPTH}"):  # the default depth model
        Structure.load(str(control_dir), None, "cpu", "float32")


def test_broken_folders_are_named(tmp_path, folders):
    control_dir, depth_dir = folders
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(ModelMissing, match=r"ControlNet .*broken: \w+Error") as e:
        Structure.load(str(broken), str(depth_dir), "cpu", "float32")
    assert str(broken) in str(e.value)
    with pytest.raises(ModelMissing, match=r"depth model .*broken: \w+Error"):
        Structure.load(str(control_dir), str(broken), "cpu", "float32")
    # a depth folder with a garbage image processor config is named too
    bad_processor = tmp_path / "bad_processor"
    bad_processor.mkdir()
    for f in depth_dir.iterdir():
        (bad_processor / f.name).write_bytes(f.read_bytes())
    (bad_processor / "preprocessor_config.json").write_text(json.dumps([1, 2])[:-1])
    with pytest.raises(ModelMissing, match=r"bad_processor.*preprocessor_config\.json"):
        Structure.load(str(control_dir), str(bad_processor), "cpu", "float32")
    (bad_processor / "preprocessor_config.json").write_text(json.dumps({"size": "big"}))
    with pytest.raises(ModelMissing, match=r"bad_processor.*preprocessor_config\.json.*'big'"):
        Structure.load(str(control_dir), str(bad_processor), "cpu", "float32")


def test_bfloat16_control_images(unet):
    depth, processor = random_depth()
    s = Structure(random_controlnet(unet), depth, torch.device("cpu"), torch.bfloat16, processor=processor)
    control = s.control_image(frames(0, 1))
    assert control.dtype == torch.bfloat16 and tuple(control.shape) == (2, 3, H, W)
    assert float(control.min()) == 0 and float(control.max()) == 1


def test_sdxl_layout_takes_the_added_conditioning():
    """An SDXL-shaped UNet and its ControlNet: the pooled text and size ids reach both."""
    from diffusers import UNet2DConditionModel

    from vj.gen import random_models

    if "tiny-xl" not in random_models.ARCHS:
        pytest.skip("no tiny SDXL layout among the random architectures")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**random_models.configs("tiny-xl")[0]).eval().requires_grad_(False)
    s = random_structure(unet)
    assert s.controlnet.config.addition_embed_type == "text_time"
    latents, _ = inputs(2)
    g = torch.Generator().manual_seed(1)
    added = {"text_embeds": torch.randn(2, 32, generator=g), "time_ids": torch.randn(2, 6, generator=g)}
    cond = Cond(torch.randn(2, 77, unet.config.cross_attention_dim, generator=g), added)
    t = torch.tensor([500, 300])
    control = s.control_image(frames(0, 1))
    r = s.residuals(latents, t, cond, control, 1.0)
    other = s.residuals(latents, t, Cond(cond.embeds, {**added, "time_ids": added["time_ids"] + 1}), control, 1.0)
    assert not torch.allclose(r["mid_block_additional_residual"], other["mid_block_additional_residual"])
    with torch.no_grad():
        kw = {"encoder_hidden_states": cond.embeds, "added_cond_kwargs": added, "return_dict": False}
        plain, steered = unet(latents, t, **kw)[0], unet(latents, t, **kw, **r)[0]
    assert float((plain - steered).abs().mean()) > 1e-3

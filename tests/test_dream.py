"""The dream generator: prompts shape form (measured on grey levels, so hue cannot pass for structure), zoom flies
into structure instead of blurring out, sparks bring a new attractor, and it keeps the generator contract."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from vj.engine.loop import Show, ShowConfig
from vj.errors import ConfigError
from vj.frame import motion
from vj.gen.dream import DreamGenerator
from vj.gen.motifs import families_for, vocabulary
from vj.params import ParamStore

FAMILIES = ["rain", "city", "forest", "space", "crystal", "bloom", "fire", "ocean", "reef"]


def run(prompt: str, frames: int = 90, *, seed: int = 1, size=(192, 192), zoom: float = 0.0, generate: bool = True):
    """Frames of a feedback loop at 15 generated frames a second on a stepped clock; the camera zooms at ``zoom``."""
    gen = DreamGenerator(size)
    now = [0.0]
    gen.clock = lambda: now[0]
    p = ParamStore().values()
    p.update(prompt=prompt, seed=seed, strength=0.5, chaos=0.3)
    frame = gen.generate(None, p)
    out = []
    for _ in range(frames):
        now[0] += 1 / 15
        frame = motion.warp(frame, np.array([zoom * motion.ZOOM_PER_S / 15, 0, 0, 0]))
        if generate:
            frame = gen.generate(frame, p)
        out.append(frame)
    return out


def grey(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)


def vertical_streaks(img: np.ndarray) -> float:
    """Share of edge energy in near-horizontal gradients: what vertical streaks make."""
    g = grey(img)
    mag, ang = cv2.cartToPolar(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    hist, _ = np.histogram(np.mod(ang, np.pi), bins=8, range=(0, np.pi), weights=mag)
    return float((hist[0] + hist[7]) / hist.sum())


def six_fold(img: np.ndarray) -> float:
    """Correlation of the picture with itself turned 60 degrees about the centre."""
    g = grey(img)
    h, w = g.shape
    turned = cv2.warpAffine(g, cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), 60, 1.0), (w, h))
    yy, xx = np.mgrid[:h, :w]
    inside = np.hypot(yy - h / 2, xx - w / 2) < 0.45 * h
    return float(np.corrcoef(g[inside], turned[inside])[0, 1])


def radial_streaks(img: np.ndarray) -> float:
    """Share of edge energy across the radius: what streaks flying out of the centre make."""
    g = grey(img)
    h, w = g.shape
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    yy, xx = np.mgrid[:h, :w]
    rx, ry = xx - w / 2, yy - h / 2
    rn = np.hypot(rx, ry) + 1e-6
    along = np.abs(gx * rx / rn + gy * ry / rn)
    return float(1 - along.sum() / (np.hypot(gx, gy).sum() + 1e-6))


def edge_density(img: np.ndarray) -> float:
    return float((cv2.Canny(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 60, 140) > 0).mean())


@pytest.fixture(scope="module")
def last_frames():
    return {(f, seed): run(f, seed=seed)[-1] for f in FAMILIES for seed in (1, 7)}


@pytest.mark.parametrize(
    ("family", "measure", "its_own", "others_below"),
    [
        ("rain", vertical_streaks, 0.7, 0.5),  # rain falls in streaks
        ("crystal", six_fold, 0.6, 0.45),  # crystal is a six-wedge kaleidoscope
        ("space", radial_streaks, 0.5, 0.47),  # space is a star field flying past
    ],
)
def test_motif_families_make_different_structure(last_frames, family, measure, its_own, others_below):
    for seed in (1, 7):
        assert measure(last_frames[(family, seed)]) > its_own, f"{family} (seed {seed}) lacks its structure"
        for other in FAMILIES:
            if other != family:
                value = measure(last_frames[(other, seed)])
                assert value < others_below, f"{other} (seed {seed}) measures {value:.2f} like {family}"


def test_twenty_seconds_of_zoom_fly_into_structure_instead_of_blurring_out():
    dream = run("forest", frames=300, zoom=0.5)
    plain = run("forest", frames=300, zoom=0.5, generate=False)  # the same zoom on a picture nothing renews
    assert edge_density(plain[-1]) < 0.3 * edge_density(plain[29]), "the control: zoom alone blurs everything out"
    assert edge_density(dream[-1]) > 0.6 * edge_density(dream[29]), "the dream keeps its detail under zoom"


def test_frames_follow_the_contract_and_hold_their_tone():
    for size in ((160, 90), (128, 128)):
        frames = run("neon rain over a city", frames=45, size=size)
        for f in frames:
            assert f.shape == (size[1], size[0], 3) and f.dtype == np.uint8
        levels = [float(f.mean()) for f in frames[15:]]
        assert min(levels) > 40 and max(levels) < 190, "neither black nor blown out"


def test_a_spark_brings_a_new_attractor():
    gen = DreamGenerator((128, 128))
    p = ParamStore().values()
    p.update(prompt="forest", seed=3)
    first = gen.generate(None, p)
    maps = [m.copy() for m, _ in gen._maps(1.0, 0.3)]
    spark = gen.fresh(p)
    after = [m for m, _ in gen._maps(1.0, 0.3)]
    assert not all(np.allclose(a, b) for a, b in zip(maps, after, strict=True)), "the maps moved"
    assert edge_density(spark) > 0.02 and np.abs(spark.astype(int) - first.astype(int)).mean() > 10


def test_a_prompt_change_glides_from_one_family_to_the_next():
    gen = DreamGenerator((96, 96))
    now = [0.0]
    gen.clock = lambda: now[0]
    p = ParamStore().values()
    p.update(prompt="rain", seed=1)
    frame = gen.generate(None, p)
    p["prompt"] = "fire"
    shares = []
    for _ in range(60):
        now[0] += 1 / 15
        frame = gen.generate(frame, p)
        shares.append(gen._weights.get("fire", 0.0))
    assert 0.05 < shares[2] < 0.6, "the new family comes in over several frames, not at once"
    assert shares[-1] > 0.95 and gen._weights.get("rain", 0.0) < 0.05, "and has taken over after a few seconds"


def test_words_call_families_and_unknown_words_a_stable_one():
    assert families_for("rain") == {"rain": 1.0}
    assert families_for("Neon rain") == {"city": 0.5, "rain": 0.5}
    assert families_for("trees") == {"forest": 1.0}, "a plural finds its word"
    odd = families_for("quixotic zebra")
    assert odd == families_for("quixotic zebra") and sum(odd.values()) == pytest.approx(1.0)
    assert set(odd) <= set(vocabulary())


def test_a_broken_vocabulary_names_the_file_and_key(tmp_path: Path):
    path = tmp_path / "motifs.toml"
    path.write_text('[families.rain]\nwords = ["rain"]\nsprites = "drizzle"\nmaps = [[0.5, 0, 0, 0]]\n')
    with pytest.raises(ConfigError, match=r"motifs.toml: families.rain.sprites: unknown sprites 'drizzle'"):
        vocabulary(path)
    path.write_text('[families.rain]\nwords = ["rain"]\nsprites = "fall"\nmaps = [[0.5, 0, 0]]\n')
    with pytest.raises(ConfigError, match=r"families.rain.maps\[0\]: expected one to six maps"):
        vocabulary(path)


def test_the_show_runs_on_dream_with_sparks_and_scene_prompts():
    show = Show(ShowConfig(size=(160, 90), gen_size=(96, 96), headless=True, frames=120, generator="dream"))
    show.on_frame.append(lambda s: s.bus.post("osc", "spark", op="fire") if s.frames == 30 else None)
    show.on_frame.append(lambda s: s.bus.post("osc", "prompt", "deep space") if s.frames == 50 else None)
    report = show.run()
    assert report["generator"]["errors"] == 0 and report["generator"]["name"] == "dream"
    assert report["sparks"] >= 1 and report["generated"] > 10
    assert report["params"]["prompt"] == "deep space"


def test_strength_and_chaos_change_the_look():
    def change(frames):
        return float(np.mean([cv2.absdiff(a, b).mean() for a, b in itertools.pairwise(frames[30:])]))

    def with_params(**kw):
        gen = DreamGenerator((128, 128))
        now = [0.0]
        gen.clock = lambda: now[0]
        p = ParamStore().values()
        p.update(prompt="ocean", seed=2, **kw)
        frame, out = gen.generate(None, p), []
        for _ in range(60):
            now[0] += 1 / 15
            frame = gen.generate(frame, p)
            out.append(frame)
        return out

    calm, strong = with_params(strength=0.05, chaos=0.3), with_params(strength=1.0, chaos=0.3)
    assert change(strong) > 1.3 * change(calm), "strength sets how much of each frame is re-made"
    still, wild = with_params(strength=0.5, chaos=0.0), with_params(strength=0.5, chaos=1.0)
    assert np.abs(still[-1].astype(int) - wild[-1].astype(int)).mean() > 15, "chaos bends the picture visibly"


@pytest.mark.parametrize("size", [(16, 16), (8, 64), (640, 24)])
def test_odd_sizes_and_seeds_dream_without_error(size):
    gen = DreamGenerator(size)
    p = ParamStore().values()
    for seed in (0, -5, 2**40):
        p.update(prompt="city rain forest fire space crystal flower ocean reef", seed=seed, chaos=1.0)
        frame = gen.generate(None, p)
        for _ in range(5):
            frame = gen.generate(frame, p)
        frame = gen.fresh(p)
        assert frame.shape == (size[1], size[0], 3) and frame.dtype == np.uint8

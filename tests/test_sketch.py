import itertools

import cv2
import numpy as np
import pytest

from vj.frame import motion
from vj.gen.look import look_for, words
from vj.gen.sketch import SketchGenerator
from vj.params import ParamStore


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def params(**kw):
    p = ParamStore().values()
    p.update(kw)
    return p


def dream(prompt: str, frames: int = 40, seed: int = 1, size=(128, 128), **kw) -> list[np.ndarray]:
    """Run the generator in a feedback loop with the default motion, at a steady 30 frames a second."""
    gen = SketchGenerator(size)
    gen.clock = FakeClock()
    p = params(prompt=prompt, seed=seed, **kw)
    cam = prev_cam = motion.new_camera()
    out, img = [], None
    for _ in range(frames):
        gen.clock.t += 1 / 30
        cam = motion.advance(cam, p, 1 / 30)
        img = gen.generate(None if img is None else motion.warp(img, cam - prev_cam), p)
        prev_cam = cam
        out.append(img)
    return out


def colour_histogram(img: np.ndarray) -> np.ndarray:
    h = cv2.calcHist([img], [0, 1, 2], None, [6, 6, 6], [0, 256] * 3).ravel()
    return h / h.sum()


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(colour_histogram(a) - colour_histogram(b)).sum())


def test_frames_follow_the_contract_at_any_size():
    for size in [(128, 128), (160, 90), (90, 160)]:
        gen = SketchGenerator(size)
        first = gen.generate(None, params())
        assert first.shape == (size[1], size[0], 3) and first.dtype == np.uint8
        second = gen.generate(first, params())
        assert second.shape == first.shape and second.dtype == np.uint8


def test_the_look_is_the_same_at_every_size_and_reads_as_healthy():
    from vj.frame.vitals import measure, stagnant

    sensitivity = ParamStore().values()["spark_sensitivity"]
    details = {}
    for size in [(128, 128), (256, 256), (512, 512), (320, 180)]:
        prev, vitals = None, []
        for img in dream("a luminous dream of drifting nebulae", frames=40, size=size):
            v, prev = measure(img, prev)
            vitals.append(v)
        vitals = vitals[10:]  # once it has grown from the first frame
        assert not any(stagnant(v, sensitivity) for v in vitals), f"a healthy sketch at {size} read as stale"
        details[size] = float(np.median([v.detail for v in vitals]))
    assert max(details.values()) < 2 * min(details.values()), details


def test_same_prompt_and_seed_dream_the_same():
    a, b = dream("a forest made of glass", 10)[-1], dream("a forest made of glass", 10)[-1]
    assert np.array_equal(a, b)


def test_seed_varies_the_dream():
    a, b = dream("a forest made of glass", 10, seed=1)[-1], dream("a forest made of glass", 10, seed=2)[-1]
    assert np.abs(a.astype(int) - b).mean() > 10


def test_similar_prompts_look_alike_and_different_prompts_look_different():
    city = dream("a neon city in the rain")[-1]
    city2 = dream("neon city at night, rain")[-1]
    forest = dream("a green forest of moss")[-1]
    fire = dream("fire and lava")[-1]
    near = distance(city, city2)
    assert near < distance(city, forest) and near < distance(city, fire)
    assert distance(forest, fire) > near


def test_the_words_pick_the_colours():
    def mean_hue_rgb(prompt):
        return dream(prompt)[-1].reshape(-1, 3).mean(axis=0)

    r, g, b = mean_hue_rgb("fire and lava")
    assert r > g > b, "fire is warm"
    r, g, b = mean_hue_rgb("a green forest of moss")
    assert g > r and g > b, "a forest is green"
    r, g, b = mean_hue_rgb("deep blue ocean water")
    assert b > r, "the ocean is blue"


def test_look_reads_words_not_punctuation_or_filler():
    assert words("A Forest, made of GLASS!") == ["forest", "glass"]
    a, b = look_for("a forest made of glass"), look_for("forest glass")
    assert np.array_equal(a.palette, b.palette)
    unknown = look_for("zyxquor")
    assert unknown.palette.shape == (256, 3)
    assert not np.array_equal(unknown.palette, look_for("plimbet").palette), "unknown words still get a look"


def test_palettes_keep_the_light_where_it_is():
    for prompt in ("fire", "a white glass cloud", "dark night void"):
        pal = look_for(prompt).palette.astype(np.uint8)[None]
        luma = cv2.cvtColor(pal, cv2.COLOR_RGB2YCrCb)[0, :, 0].astype(int)
        assert np.abs(luma - np.arange(256)).max() <= 12, prompt


def test_strength_sets_how_much_is_reimagined():
    gen = SketchGenerator((128, 128))
    gen.clock = FakeClock()
    start = gen.generate(None, params())
    still = {"zoom": 0.0}
    changes = []
    for s in (0.0, 0.3, 1.0):
        gen.clock.t += 0.1
        out = gen.generate(start.copy(), params(strength=s, **still))
        changes.append(float(np.abs(out.astype(int) - start).mean()))
    assert changes[0] == 0.0, "strength 0 leaves the frame as it was"
    assert changes[0] < changes[1] < changes[2]


def test_it_lives_like_a_dream_not_static_noise():
    frames = dream("a luminous dream of drifting nebulae", 240, size=(192, 192))
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in frames]
    late = grey[-60:]
    assert min(g.std() for g in late) > 25, "contrast holds: no drift to flat grey"
    step = [np.abs(a - b).mean() for a, b in itertools.pairwise(late)]
    assert min(step) > 0.3, "every frame moves on"
    assert max(step) < 15, "consecutive frames are close: smooth motion, not flicker"
    drift = np.abs(late[-1] - late[0]).mean()
    assert drift > 3 * np.mean(step), "over two seconds it becomes something else"
    g = late[-1]
    corr = np.corrcoef(g[:, :-1].ravel(), g[:, 1:].ravel())[0, 1]
    assert corr > 0.8, "neighbouring pixels agree: shapes, not noise"


def test_prompt_change_glides_in_instead_of_cutting():
    gen = SketchGenerator((96, 96))
    gen.clock = FakeClock()
    img = gen.generate(None, params(prompt="fire and lava"))
    for _ in range(20):
        gen.clock.t += 1 / 30
        img = gen.generate(img, params(prompt="fire and lava"))
    warm = gen._palette.copy()
    gen.clock.t += 1 / 30
    gen.generate(img, params(prompt="deep blue ocean water"))
    first = gen._palette.copy()
    target = look_for("deep blue ocean water").palette
    assert 0 < np.abs(first - warm).mean() < 0.5 * np.abs(target - warm).mean()
    for _ in range(60):
        gen.clock.t += 1 / 30
        gen.generate(img, params(prompt="deep blue ocean water"))
    assert np.array_equal(gen._palette, target), "after a couple of seconds the new look has fully arrived"


@pytest.mark.parametrize("prompt", ["", "!!!", "a " * 200])
def test_any_prompt_text_dreams(prompt):
    gen = SketchGenerator((64, 64))
    img = gen.generate(None, params() | {"prompt": prompt})
    assert gen.generate(img, params() | {"prompt": prompt}).shape == (64, 64, 3)

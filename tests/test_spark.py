import json
from itertools import pairwise

import cv2
import numpy as np
import pytest

from tests.child import vj
from vj.engine.loop import Show, ShowConfig
from vj.engine.spark import HOLD, Sparks
from vj.frame import motion
from vj.frame.vitals import Bloom, Vitals, measure, stagnant
from vj.gen.base import Generator


def textured(seed: int = 0, size: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 0.6)


def healthy() -> Vitals:
    return Vitals(brightness=120, contrast=70, detail=40, colour=20, change=3)


def flat() -> Vitals:
    return Vitals(brightness=128, contrast=2, detail=0.5, colour=0.5, change=0.01)


# -- vitals and the stagnation test ----------------------------------------------------------------------------
def test_vitals_tell_flat_from_lively():
    grey = np.full((128, 128, 3), 128, np.uint8)
    v_grey, small = measure(grey, None)
    assert v_grey.contrast == 0 and v_grey.detail == 0 and v_grey.change == 0
    v_tex, _ = measure(textured(), small)
    assert v_tex.contrast > 10 and v_tex.detail > 5 and v_tex.change > 5
    colourful = np.zeros((128, 128, 3), np.uint8)
    colourful[:, :64] = (255, 0, 0)
    colourful[:, 64:] = (0, 0, 255)
    assert measure(colourful, None)[0].colour > 30


def test_stagnation_depends_on_sensitivity():
    assert stagnant(flat(), 0.5) and not stagnant(healthy(), 0.5)
    assert not stagnant(flat(), 0.0), "sensitivity 0 never sparks"
    borderline = Vitals(120, 20, 12, 10, 2)
    assert stagnant(borderline, 1.0) and not stagnant(borderline, 0.3)


def test_a_picture_that_stopped_moving_is_stale_only_while_it_should_dream():
    still = Vitals(120, 70, 40, 20, change=0.0)
    assert stagnant(still, 0.5, dreaming=True)
    assert not stagnant(still, 0.5, dreaming=False), "strength 0: standing still is what was asked for"


# -- deciding sparks ---------------------------------------------------------------------------------------------
PARAMS = {"strength": 0.5, "spark_sensitivity": 0.5, "spark_cooldown": 2.0}


def test_an_automatic_spark_needs_several_stale_frames_in_a_row():
    s = Sparks()
    results = [s.observe(flat(), PARAMS, now=10 + i / 60, blooming=False) for i in range(HOLD)]
    assert results == [False] * (HOLD - 1) + [True]
    assert s.auto == 1 and s.seq == 1 and s.stagnant_frames == HOLD
    s2 = Sparks()
    for i in range(3 * HOLD):
        s2.observe(flat() if i % 2 else healthy(), PARAMS, now=10 + i / 60, blooming=False)
    assert s2.total == 0, "a flicker of staleness is not stagnation"


def test_the_cooldown_holds_for_both_kinds():
    s = Sparks()
    assert s.request("manual", 10.0, cooldown=2.0)
    assert not s.request("manual", 11.0, cooldown=2.0)
    for i in range(60):
        s.observe(flat(), PARAMS, now=10.0 + i / 60, blooming=False)
    assert s.total == 1 and s.refused == 1, "no automatic spark either until the cooldown is over"
    assert s.observe(flat(), PARAMS, now=12.1, blooming=False)
    assert s.auto == 1 and s.manual == 1


def test_no_automatic_spark_while_one_is_blooming():
    s = Sparks()
    for i in range(2 * HOLD):
        s.observe(flat(), PARAMS, now=100 + i, blooming=True)
    assert s.total == 0


def test_the_report_counts_and_shares():
    s = Sparks()
    for i in range(10):
        s.observe(healthy() if i < 8 else flat(), PARAMS, now=i, blooming=False)
    s.request("manual", 50, 2.0)
    r = s.report()
    assert r["sparks"] == 1 and r["sparks_manual"] == 1 and r["stagnant_frames"] == 2 and r["stagnant_share"] == 0.2


# -- the bloom ---------------------------------------------------------------------------------------------------
class NumpyGen(Generator):
    pass


def test_the_bloom_mask_grows_from_the_centre_monotonically():
    b = Bloom(np.zeros((120, 160, 3), np.uint8), motion.new_camera(), frames=20, size=(160, 120))
    masks = [b.mask(k) for k in range(20)]
    for a, c in pairwise(masks):
        assert (c >= a - 1e-6).all(), "every step covers at least what the last one did"
        assert c.sum() > a.sum()
    assert masks[0][60, 80] == 1.0 and masks[0][0, 0] < 0.01
    assert b.radius(0) == pytest.approx(0.10) and b.radius(19) == pytest.approx(0.80)
    assert 0.01 < masks[-1][0, 0] < 0.5, "even at the end the corners are a soft edge, not a cut"


def test_the_bloom_blends_the_fresh_image_in_step_by_step():
    fresh = np.full((64, 64, 3), 250, np.uint8)
    b = Bloom(fresh, motion.new_camera(), frames=10, size=(64, 64))
    frame = np.full((64, 64, 3), 10, np.uint8)
    centre = []
    while not b.done:
        frame = b.apply(frame, motion.new_camera(), NumpyGen((64, 64)))
        centre.append(int(frame[32, 32, 0]))
    assert len(centre) == 10 and centre == sorted(centre)
    assert centre[0] < 250 * 0.8, "the first step only starts it"
    assert centre[-1] > 240


# -- a running show ----------------------------------------------------------------------------------------------
def show(generator="decay", **kw) -> Show:
    return Show(ShowConfig(size=(160, 90), gen_size=(128, 128), headless=True, generator=generator, **kw))


def test_a_dying_loop_sparks_by_itself_and_comes_back_to_life():
    s = show(frames=900, params={"zoom": 0.0})  # no motion: the loop dies by fading, as contrast
    seen: list = []
    original = s.blender.push
    s.blender.push = lambda frame, now: (seen.append((s.sparks.auto, frame.vitals)), original(frame, now))[-1]
    s.on_frame.append(lambda s: s.stop() if s.sparks.auto and len(seen) > 400 else None)
    report = s.run()
    assert report["sparks_auto"] >= 1
    first = next(i for i, (auto, _) in enumerate(seen) if auto)
    assert first < 600, "the spark came within a bounded number of frames"
    dying = seen[first][1]
    assert stagnant(dying, 0.5)
    revived = [v for _, v in seen[first + 30 : first + 60]]  # after the 30-frame bloom
    assert not any(stagnant(v, 0.5) for v in revived), "the loop is judged alive again"
    assert min(v.contrast for v in revived) > 2 * dying.contrast, "contrast recovered"
    assert min(v.detail for v in revived) > 1.2 * dying.detail, "detail recovered"


def test_a_manual_spark_blooms_over_n_frames_without_a_hard_cut():
    # Waits on generated frames, not on display frames: on a busy machine the bloom's 24 generated frames may
    # span many more display frames than on a quiet one.
    s = show(frames=20_000, params={"spark_sensitivity": 0.0, "spark_frames": 24, "zoom": 0.0})
    blooms, pictures = [], []
    original = s.blender.push
    s.blender.push = lambda frame, now: (blooms.append(frame.bloom), original(frame, now))[-1]
    settled: list[int] = []

    def watch(s: Show) -> None:
        if s.frames == 100:
            s.bus.post("osc", "spark", op="fire")
        if s.frames >= 95:
            pictures.append(s.window.screenshot().astype(np.int16))
        if any(b is not None and b >= 1.0 for b in blooms):
            settled.append(s.frames)  # the last bloom step was generated: let the crossfade land, then stop
            if len(settled) > 30 and len(blooms) > blooms.index(1.0) + 3:
                s.stop()

    s.on_frame.append(watch)
    report = s.run()
    assert report["sparks_manual"] == 1
    progress = [b for b in blooms if b is not None]
    # Every generated frame takes one step of 1/24 (the loop may miss a frame on a busy box: newest wins).
    assert progress[-1] == 1.0 and progress == sorted(progress), ("N steps, in order", progress)
    assert all(abs(p * 24 - round(p * 24)) < 1e-6 for p in progress) and len(progress) >= 12
    steps = [np.abs(b - a).mean() for a, b in pairwise(pictures)]
    total = np.abs(pictures[-1] - pictures[0]).mean()
    assert total > 10, "the spark changed the picture"
    assert max(steps) < 0.35 * total, "no single frame carries the change: no hard cut"


def test_space_and_osc_and_midi_all_reach_the_spark(bus):
    s = show("sketch", frames=40, params={"spark_cooldown": 0.0})
    s.on_frame.append(lambda s: s.bus.post("keys", "spark", op="fire") if s.frames == 5 else None)
    s.on_frame.append(lambda s: s.bus.post("midi", "spark", op="fire") if s.frames == 15 else None)
    s.on_frame.append(lambda s: s.bus.post("voice", "spark", op="fire") if s.frames == 25 else None)
    assert s.run()["sparks_manual"] == 3


def test_vj_run_decay_sparks_and_stays_mostly_alive():
    out = vj("run", "--generator", "decay", "--headless", "--seconds", "20", "--no-osc", "--report", "-", timeout=90)
    report = json.loads(out.stdout)
    assert report["sparks"] >= 1 and report["sparks_auto"] >= 1
    assert report["stagnant_share"] < 0.3
    assert 0 < report["stagnant_frames"] < report["generated"]

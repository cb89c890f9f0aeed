import math

import cv2
import numpy as np

from vj.engine.blend import BLACKOUT_S, FrameBlender, OutputLevel
from vj.engine.worker import Frame
from vj.frame import motion

SIZE = (64, 48)


def frame(rgb, camera=None, index=1) -> Frame:
    img = np.empty((SIZE[1], SIZE[0], 3), np.uint8)
    img[:] = rgb
    cam = motion.new_camera() if camera is None else np.asarray(camera, float)
    return Frame(img, cam, index, {}, 0.0, 1.0)


def textured() -> Frame:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8), (0, 0), 2)
    return Frame(img, motion.new_camera(), 1, {}, 0.0, 1.0)


def test_nothing_to_show_before_the_first_frame():
    assert FrameBlender(SIZE).compose(motion.new_camera(), 0.0) is None


def test_a_frame_is_shown_in_the_display_layout():
    b = FrameBlender(SIZE)
    b.push(frame((10, 20, 30)), 0.0)
    out = b.compose(motion.new_camera(), 1.0)
    assert out.shape == (48, 64, 4)
    assert tuple(out[5, 5, :3]) == (30, 20, 10), "BGRA: blue first"


def test_timewarp_moves_the_last_frame_with_the_camera_between_generated_frames():
    b = FrameBlender(SIZE)
    f = textured()
    b.push(f, 0.0)
    bgra = cv2.cvtColor(f.image, cv2.COLOR_RGB2BGRA)
    cam = motion.new_camera()
    previous = None
    for i in range(1, 6):
        cam = cam + np.array([0.02, 0.01, 0.0, 0.0])
        out = b.compose(cam, 1.0 + i / 60).copy()
        expected = motion.warp(bgra, cam - f.camera)
        assert np.abs(out.astype(int) - expected).max() <= 1
        if previous is not None:
            assert np.abs(out.astype(int) - previous).mean() > 0.5, "every display frame moves"
        previous = out


def test_a_new_frame_fades_in_over_one_generator_interval_without_a_cut():
    b = FrameBlender(SIZE)
    b.push(frame((0, 0, 0)), 0.0)
    b.push(frame((0, 0, 0)), 0.1)  # the generator runs at 10 fps
    b.compose(motion.new_camera(), 0.25)
    b.push(frame((240, 240, 240)), 0.2)
    levels = [int(b.compose(motion.new_camera(), 0.2 + i / 60)[0, 0, 0]) for i in range(12)]
    assert levels[0] < 10 and levels[-1] == 240
    assert levels == sorted(levels), "the fade only goes one way"
    steps = np.diff(levels)
    assert steps.max() <= 240 * (1 / 60) / 0.1 + 8, "each display frame moves a fraction of the way: no hard cut"


def test_a_frame_arriving_mid_fade_jumps_at_most_the_rest_of_the_fade():
    b = FrameBlender(SIZE)
    b.push(frame((0, 0, 0)), 0.0)
    b.push(frame((200, 200, 200)), 0.1)
    on_screen = int(b.compose(motion.new_camera(), 0.15)[0, 0, 0])
    assert 40 < on_screen < 160
    b.push(frame((210, 210, 210)), 0.15)
    after = int(b.compose(motion.new_camera(), 0.15)[0, 0, 0])
    assert after == 200, "the new fade starts from the last generated frame"
    assert after - on_screen <= 200 * (1 - on_screen / 200) + 2


def test_a_generator_as_fast_as_the_display_is_shown_one_frame_late_never_more():
    b = FrameBlender(SIZE)
    shown = []
    for i in range(200):
        now = i / 60
        b.push(frame((i % 250, 0, 0)), now)  # a new frame for every display frame
        shown.append(int(b.compose(motion.new_camera(), now)[0, 0, 2]))
    assert shown[1:] == [i % 250 for i in range(199)], "exactly one frame behind, all the way"


def test_blackout_fades_out_and_back_in():
    picture = np.full((48, 64, 4), 200, np.uint8)
    fader = OutputLevel()
    dt = 1 / 60
    out = [int(fader.apply(picture, 0.0, dt)[0, 0, 0]) for _ in range(30)]
    assert 0 < out[0] < 200, "no hard cut to black"
    assert out == sorted(out, reverse=True)
    assert out[math.ceil(BLACKOUT_S / dt)] == 0
    back = [int(fader.apply(picture, 1.0, dt)[0, 0, 0]) for _ in range(30)]
    assert back[0] < 200 and back[-1] == 200
    assert picture[0, 0, 0] == 200, "the picture itself is left alone"

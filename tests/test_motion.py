import math

import numpy as np
import pytest

from vj.frame import motion

W = H = 101
C = 50


def dot(x: int, y: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[y - 1 : y + 2, x - 1 : x + 2] = 255
    return img


def centroid(img: np.ndarray) -> tuple[float, float]:
    """Where the dot is, looking only near the centre (zooming out mirrors copies of it into the edges)."""
    g = img[..., 0].astype(float)
    ys, xs = np.mgrid[0:H, 0:W]
    g[(np.abs(xs - C) > 35) | (np.abs(ys - C) > 35)] = 0
    return float((xs * g).sum() / g.sum()), float((ys * g).sum() / g.sum())


def moved(delta) -> tuple[float, float]:
    return centroid(motion.warp(dot(C + 20, C), np.asarray(delta, float)))


def test_zoom_in_pushes_content_outward_from_the_centre():
    x, y = moved([math.log(1.5), 0, 0, 0])
    assert x == pytest.approx(C + 30, abs=0.6) and y == pytest.approx(C, abs=0.6)
    x, _ = moved([-math.log(2), 0, 0, 0])
    assert x == pytest.approx(C + 10, abs=0.6), "zooming out pulls content inward"


def test_panning_the_view_right_and_up_slides_content_left_and_down():
    x, y = moved([0, 0, 0.1, 0])
    assert x == pytest.approx(C + 20 - 0.1 * H, abs=0.6) and y == pytest.approx(C, abs=0.6)
    x, y = moved([0, 0, 0, 0.1])
    assert y == pytest.approx(C + 0.1 * H, abs=0.6)


def test_positive_rotation_turns_clockwise_on_screen():
    x, y = moved([0, math.pi / 2, 0, 0])
    assert x == pytest.approx(C, abs=0.6) and y == pytest.approx(C + 20, abs=0.6), "right of centre goes down"


def test_still_camera_returns_the_frame_untouched():
    img = dot(10, 10)
    assert motion.warp(img, motion.new_camera()) is img
    out = np.empty_like(img)
    assert motion.warp(img, motion.new_camera(), out=out) is out and np.array_equal(out, img)


def test_edges_coming_into_view_are_never_black():
    img = np.full((H, W, 3), 120, np.uint8)
    out = motion.warp(img, np.array([-math.log(3), 0.3, 0.2, -0.2]))
    assert out.min() == 120, "zooming out mirrors the frame into the new edges"


def test_camera_integrates_rates_linearly_and_speed_scales_them():
    params = {"zoom": 1.0, "rotate": -0.5, "pan_x": 0.2, "pan_y": 0.0, "speed": 1.0}
    cam = motion.new_camera()
    for _ in range(60):
        cam = motion.advance(cam, params, 1 / 60)
    assert cam == pytest.approx([motion.ZOOM_PER_S, -0.5 * motion.TURN_PER_S, 0.2 * motion.PAN_PER_S, 0.0])
    assert motion.advance(motion.new_camera(), {**params, "speed": 0.0}, 1.0) == pytest.approx([0, 0, 0, 0])


def test_a_night_of_zooming_stays_exact():
    params = {"zoom": 1.0, "rotate": 1.0, "pan_x": 1.0, "pan_y": 1.0, "speed": 4.0}
    cam = motion.advance(motion.new_camera(), params, 12 * 3600)
    step = motion.advance(cam, params, 1 / 60) - cam
    assert step == pytest.approx(motion.advance(motion.new_camera(), params, 1 / 60), rel=1e-6)

import time
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from vj.engine.loop import Show, ShowConfig
from vj.engine.mixer import Mixer
from vj.errors import ConfigError
from vj.frame.compose import BLEND_MODES, blend
from vj.gen.base import Generator
from vj.layers.kinds import StillLayer, VideoLayer
from vj.layers.spec import LayerSpec, layer_spec, parse_layer_option

B = np.array([[[0, 64, 200]]], np.uint8)  # base pixel
L = np.array([[[255, 128, 100]]], np.uint8)  # layer pixel


def expected(mode: str, opacity: float) -> np.ndarray:
    b, l = B.astype(float) / 255, L.astype(float) / 255  # noqa: E741 - b and l, as in every blend-mode formula
    mixed = {
        "normal": l,
        "add": np.minimum(1, b + l),
        "screen": 1 - (1 - b) * (1 - l),
        "multiply": b * l,
        "difference": np.abs(b - l),
    }[mode]
    return (b + (mixed - b) * opacity) * 255


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize("opacity", [1.0, 0.5, 0.2])
def test_each_blend_mode_matches_its_formula(mode, opacity):
    got = blend(B, L, mode, opacity).astype(float)
    assert np.abs(got - expected(mode, opacity)).max() <= 1.0


@pytest.mark.parametrize("mode", BLEND_MODES)
def test_a_per_pixel_opacity_map_weighs_each_pixel(mode):
    base = np.repeat(B, 4, axis=1)
    layer = np.repeat(L, 4, axis=1)
    w = np.array([[0.0, 0.25, 0.75, 1.0]], np.float32)
    got = blend(base, layer, mode, w).astype(float)
    for i, o in enumerate(w[0]):
        assert np.abs(got[0, i] - expected(mode, float(o))[0, 0]).max() <= 1.0
    assert np.array_equal(blend(base, layer, mode, 0.0), base)


def test_blending_never_changes_its_inputs():
    base, layer = B.copy(), L.copy()
    for mode in BLEND_MODES:
        blend(base, layer, mode, 0.7)
        blend(base, layer, mode, 1.0)
    assert np.array_equal(base, B) and np.array_equal(layer, L)


# -- layer specs -------------------------------------------------------------------------------------------------
def test_layer_options_parse_into_specs(tmp_path):
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"x")
    spec = parse_layer_option(f"video={clip},mode=screen,into=loop,opacity=0.6")
    assert spec == LayerSpec("video", str(clip), "screen", "loop", 0.6)
    assert parse_layer_option("brush").kind == "brush"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "hologram"}, "layers[2].kind: unknown layer kind 'hologram'"),
        ({"kind": "image", "source": "/no/file.png"}, "layers[2].source: no such file"),
        ({"kind": "solid", "source": "red"}, "layers[2].source: 'red' is not a colour"),
        ({"kind": "gradient", "source": "#000000"}, "needs two colours"),
        ({"kind": "solid", "source": "#ff0000", "mode": "burn"}, "layers[2].mode: unknown blend mode 'burn'"),
        ({"kind": "solid", "source": "#ff0000", "into": "under"}, "layers[2].into: unknown place"),
        ({"kind": "solid", "source": "#ff0000", "opacity": 2}, "layers[2].opacity: 2 is out of range (use 0..1)"),
        ({"kind": "brush", "colour": "x"}, "layers[2].colour: unknown key 'colour'"),
        ({"kind": "camera", "source": "front"}, "camera wants a device number"),
    ],
)
def test_layer_spec_errors_name_where_and_the_fix(data, message):
    with pytest.raises(ConfigError) as info:
        layer_spec(data, "scenes/x.toml", key="layers[2]")
    assert str(info.value).startswith("scenes/x.toml: ") and message in str(info.value)


def test_at_most_four_layers():
    with pytest.raises(ConfigError, match="at most 4"):
        Mixer([LayerSpec("solid", "#000000")] * 5, (32, 32))


# -- layer kinds ---------------------------------------------------------------------------------------------------
def test_an_image_layer_covers_the_frame_and_keeps_its_alpha(tmp_path):
    img = np.zeros((50, 100, 4), np.uint8)
    img[..., 2] = 255  # red, in OpenCV's BGRA
    img[..., 3] = 128
    path = tmp_path / "logo.png"
    cv2.imwrite(str(path), img)
    layer = StillLayer(LayerSpec("image", str(path)), 1, (64, 64))
    layer.start()
    rgb, alpha = layer.current()
    assert rgb.shape == (64, 64, 3) and tuple(rgb[10, 10]) == (255, 0, 0)
    assert alpha is not None and alpha.shape == (64, 64) and alpha[10, 10] == 128


def test_a_gradient_runs_from_its_first_colour_to_its_second():
    layer = StillLayer(LayerSpec("gradient", "#000000:#ffffff", angle=90), 1, (32, 32))
    layer.start()
    rgb, _ = layer.current()
    assert rgb[0, 16, 0] < 10 and rgb[31, 16, 0] > 245 and rgb[16, 0, 0] == rgb[16, 31, 0]


def write_clip(path: Path, frames: int = 24, size: tuple[int, int] = (96, 64)) -> None:
    """A clip whose frame i is a flat grey of level 10 * i."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = np.full((size[1], size[0], 3), 10 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_a_video_layer_decodes_a_clip_in_real_time_and_loops(tmp_path):
    clip = tmp_path / "clip.mp4"
    write_clip(clip)
    layer = VideoLayer(LayerSpec("video", str(clip)), 1, (64, 64))
    layer.start()
    levels = []
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and layer.frames < 40:
            rgb, _ = layer.current()
            if rgb is not None:
                levels.append(int(rgb[32, 32, 0]))
            time.sleep(0.02)
    finally:
        layer.stop()
    assert layer.error is None
    assert layer.frames >= 40, "24 frames a second, and it went round again"
    assert levels[0] < 30 and max(levels) > 200, "it played through the clip"
    drops = [i for i, (a, b) in enumerate(pairwise(levels)) if b < a - 100]
    assert drops, "after the last frame it starts over"
    assert rgb.shape == (64, 64, 3)


def test_a_missing_camera_is_reported_and_nothing_breaks():
    s = Show(
        ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, frames=30, layers=[LayerSpec("camera", "57")])
    )
    report = s.run()
    assert report["frames"] == 30
    assert "no camera 57" in report["layers"][0]["error"]


# -- into the loop or on top ---------------------------------------------------------------------------------------
class Echo(Generator):
    """Returns its input unchanged (grey to start): what goes in is what comes out."""

    name = "echo"

    def generate(self, image: Any, params: Mapping[str, Any]) -> np.ndarray:
        return np.full((self.height, self.width, 3), 60, np.uint8) if image is None else image.copy()


def run_with(layer: LayerSpec, frames: int = 40, **params: Any) -> tuple[Show, list[np.ndarray], np.ndarray]:
    """Run an Echo show with one layer: the generated frames, and the screen at the last frame."""
    s = Show(
        ShowConfig(
            size=(64, 64),
            gen_size=(64, 64),
            headless=True,
            frames=frames,
            hud=False,
            params={"zoom": 0.0, "spark_sensitivity": 0.0, **params},
            layers=[layer],
        ),
        build=lambda: Echo((64, 64)),
    )
    generated: list[np.ndarray] = []
    screens: list[np.ndarray] = []
    push = s.blender.push
    s.blender.push = lambda frame, now: (generated.append(frame.image), push(frame, now))[-1]
    s.on_frame.append(lambda s: screens.append(s.window.screenshot()) if s.frames == frames else None)
    s.run()
    return s, generated, screens[-1]


def test_a_layer_into_the_loop_changes_the_generated_frames():
    _, generated, screen = run_with(LayerSpec("solid", "#ff0000", "normal", "loop", 1.0))
    assert tuple(generated[0][0, 0]) == (60, 60, 60), "the very first frame is made from nothing"
    assert tuple(generated[-1][0, 0]) == (255, 0, 0), "the dream took the layer in"
    assert tuple(screen[32, 32]) == (255, 0, 0)


def test_a_layer_on_top_changes_the_screen_but_not_the_dream():
    _, generated, screen = run_with(LayerSpec("solid", "#ff0000", "normal", "top", 1.0))
    assert all(tuple(g[0, 0]) == (60, 60, 60) for g in generated), "the generator never saw it"
    assert tuple(screen[32, 32]) == (255, 0, 0), "the audience does"


def test_opacity_is_a_parameter_any_source_can_move():
    s, _, screen = run_with(LayerSpec("solid", "#ffffff", "normal", "top", 0.8), frames=30, layer1_opacity=0.0)
    assert s.params.target("layer1_opacity") == 0.0
    assert tuple(screen[32, 32]) == (60, 60, 60), "opacity 0 from a parameter hides the layer"
    s2, _, screen2 = run_with(LayerSpec("solid", "#ffffff", "normal", "top", 0.8), frames=30)
    assert s2.params.target("layer1_opacity") == 0.8, "the layer's own opacity is the starting value"
    assert abs(int(screen2[32, 32, 0]) - round(60 + (255 - 60) * 0.8)) <= 2


def test_the_brush_paints_where_the_mouse_drags_and_fades_away():
    s = Show(
        ShowConfig(
            size=(128, 128),
            gen_size=(64, 64),
            headless=True,
            frames=400,
            hud=False,
            params={"zoom": 0.0, "spark_sensitivity": 0.0},
            layers=[LayerSpec("brush", "", "normal", "top", 1.0)],
        ),
        build=lambda: Echo((64, 64)),
    )
    shots = {}

    def drive(s: Show) -> None:
        pg = s.window.pg
        if s.frames == 5:
            pg.event.post(pg.event.Event(pg.MOUSEBUTTONDOWN, pos=(32, 64), button=1))
            for x in range(32, 100, 4):
                pg.event.post(pg.event.Event(pg.MOUSEMOTION, pos=(x, 64), rel=(4, 0), buttons=(1, 0, 0)))
            pg.event.post(pg.event.Event(pg.MOUSEBUTTONUP, pos=(100, 64), button=1))
        if s.frames in (10, 399):
            shots[s.frames] = s.window.screenshot().astype(int)

    s.on_frame.append(drive)
    s.run()
    painted, later = shots[10], shots[399]
    grey = np.array([60, 60, 60])
    assert np.abs(painted[64, 40:90] - grey).sum(axis=1).min() > 60, "a stroke along the drag"
    assert np.abs(painted[10, 10] - grey).sum() == 0, "and nowhere else"
    assert np.abs(later[64, 40:90] - grey).sum(axis=1).max() < np.abs(painted[64, 40:90] - grey).sum(axis=1).max() / 4


def test_a_scene_with_a_large_image_and_a_brush_swaps_in_only_once_started(tmp_path):
    """The new layers start off the loop thread; the loop must never step a layer whose start-up has not run."""
    import cv2

    from vj.scenes import load_scenes

    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.random.default_rng(1).integers(0, 255, (2160, 3840, 3), np.uint8))
    (tmp_path / "01-plain.toml").write_text('name = "Plain"\n')
    (tmp_path / "02-layers.toml").write_text(
        'name = "Layers"\ntransition = 0.0\n'
        f'[[layers]]\nkind = "image"\nsource = "{big}"\nopacity = 0.5\n'
        '[[layers]]\nkind = "brush"\nopacity = 1.0\n'
    )
    s = Show(
        ShowConfig(size=(160, 90), gen_size=(96, 96), headless=True, frames=3000, scenes=load_scenes(tmp_path), scene=1)
    )
    switched = []

    def watch(s: Show) -> None:
        if s.frames in (3, 6, 9):  # switch back and forth while the big image decodes
            s.bus.post("osc", "scene", 2 if s.frames != 6 else 1)
        if s.frames > 9 and len(s.mixer.layers) == 2:
            switched.append(s.frames)
            if len(switched) > 30:
                s.stop()

    s.on_frame.append(watch)
    report = s.run()
    assert switched, "the layers came in"
    assert [layer["error"] for layer in report["layers"]] == [None, None]
    assert report["frames"] < 3000

import numpy as np
import pytest

from vj.errors import DeviceError
from vj.output.window import Window, layout


def bgra(w: int, h: int, rgb=(250, 120, 10)) -> np.ndarray:
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = rgb[2], rgb[1], rgb[0]
    return img


@pytest.fixture
def window():
    win = Window((320, 180), headless=True)
    yield win
    win.close()


def test_contain_keeps_the_whole_picture_centred():
    assert layout((512, 512), (1920, 1080), "contain").dst == (420, 0, 1080, 1080)
    assert layout((512, 288), (1920, 1080), "contain").dst == (0, 0, 1920, 1080)
    assert layout((400, 100), (800, 800), "contain").dst == (0, 300, 800, 200)


def test_cover_fills_the_screen_and_crops_the_overflow():
    lay = layout((512, 512), (1920, 1080), "cover")
    assert lay.dst == (0, 0, 1920, 1080)
    assert lay.src == (0, 112, 512, 288)


def test_present_scales_the_picture_aspect_correct_with_black_bars(window):
    window.present(bgra(64, 48))
    shot = window.screenshot()
    assert shot.shape == (180, 320, 3)
    # 4:3 in 16:9: 240 wide, centred, 40 px bars either side.
    assert tuple(shot[90, 160]) == (250, 120, 10)
    assert tuple(shot[90, 41]) == (250, 120, 10) and tuple(shot[90, 278]) == (250, 120, 10)
    assert tuple(shot[90, 38]) == (0, 0, 0) and tuple(shot[90, 282]) == (0, 0, 0)


def test_cover_leaves_no_bars(window):
    window.fit = "cover"
    window.present(bgra(64, 48))
    shot = window.screenshot()
    assert (shot == (250, 120, 10)).all()


def test_the_hud_draws_on_top_and_leaves_no_trace_when_hidden(window):
    pg = window.pg
    hud = pg.Surface((100, 30))
    hud.fill((0, 255, 0))
    window.present(bgra(64, 48), hud)
    assert tuple(window.screenshot()[20, 20]) == (0, 255, 0)
    window.present(bgra(64, 48), None)
    shot = window.screenshot()
    assert tuple(shot[20, 20]) == (0, 0, 0), "the bar under the HUD is black again"
    assert tuple(shot[20, 60]) == (250, 120, 10)


def test_a_missing_display_is_a_clear_error():
    with pytest.raises(DeviceError, match="--display 7"):
        Window((320, 180), headless=True, display=7)


def test_fullscreen_toggles_to_the_desktop_size_and_back(window):
    desktop = tuple(window.pg.display.get_desktop_sizes()[0])
    window.toggle_fullscreen()
    assert window.fullscreen and window.size == desktop
    window.present(bgra(64, 48))
    window.toggle_fullscreen()
    assert not window.fullscreen and window.size == (320, 180)


@pytest.mark.parametrize("text", ["a\x00b", "\x1b[31mred", "emoji 🎛️ knob", "\ud800", "x" * 5000, "tab\there"])
def test_the_hud_draws_any_text_a_file_or_a_sender_brings(window, text):
    from vj.output.hud import Hud, printable

    hud = Hud(window.pg)
    hud.update([f"prompt: {text}", f"scene 1/1: {text}"], 0.0)
    assert hud.surface() is not None
    assert "\x00" not in printable(text) and len(printable(text)) <= 200

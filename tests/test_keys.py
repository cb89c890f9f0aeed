import pytest

from vj.control.keys import Keyboard


@pytest.fixture
def kb(bus):
    from vj.output.window import Window

    win = Window((160, 90), headless=True)
    yield Keyboard(win.pg, bus), win.pg
    win.close()


def key(pg, k, uni=""):
    return pg.event.Event(pg.KEYDOWN, key=k, unicode=uni, mod=0)


def test_keys_post_bus_events_from_the_table(kb, bus):
    keyboard, pg = kb
    keyboard.handle(key(pg, pg.K_LEFT))
    keyboard.handle(key(pg, pg.K_EQUALS, "+"))
    keyboard.handle(key(pg, pg.K_TAB))
    keyboard.handle(key(pg, pg.K_b, "b"))
    keyboard.handle(key(pg, pg.K_F1))  # not in the table: nothing
    got = [(e.source, e.target, e.op, e.value) for e in bus.drain()]
    assert got == [
        ("keys", "pan_x", "nudge", -1),
        ("keys", "zoom", "nudge", 1),
        ("keys", "hud", "fire", None),
        ("keys", "blackout", "toggle", None),
    ]


def test_escape_and_closing_the_window_quit(kb, bus):
    keyboard, pg = kb
    keyboard.handle(key(pg, pg.K_ESCAPE))
    keyboard.handle(pg.event.Event(pg.QUIT))
    assert [(e.target, e.op) for e in bus.drain()] == [("quit", "fire")]


def test_enter_opens_a_prompt_line_and_enter_sends_it(kb, bus):
    keyboard, pg = kb
    keyboard.handle(key(pg, pg.K_RETURN))
    assert keyboard.typing == ""
    for text in ("neon", " city", "x"):
        keyboard.handle(pg.event.Event(pg.TEXTINPUT, text=text))
    keyboard.handle(key(pg, pg.K_LEFT))  # while typing, keys do not steer
    keyboard.handle(key(pg, pg.K_BACKSPACE))
    assert keyboard.typing == "neon city"
    keyboard.handle(key(pg, pg.K_RETURN))
    assert keyboard.typing is None
    assert [(e.target, e.value) for e in bus.drain()] == [("prompt", "neon city")]


def test_escape_cancels_the_prompt_line(kb, bus):
    keyboard, pg = kb
    keyboard.handle(key(pg, pg.K_RETURN))
    keyboard.handle(pg.event.Event(pg.TEXTINPUT, text="nope"))
    keyboard.handle(key(pg, pg.K_ESCAPE))
    assert keyboard.typing is None and bus.drain() == []


def test_ctrl_r_toggles_recording_and_plain_r_still_replays(kb, bus):
    keyboard, pg = kb
    keyboard.handle(pg.event.Event(pg.KEYDOWN, key=pg.K_r, unicode="\x12", mod=pg.KMOD_LCTRL))
    keyboard.handle(key(pg, pg.K_r, "r"))
    assert [(e.target, e.op) for e in bus.drain()] == [("record", "toggle"), ("replay", "fire")]

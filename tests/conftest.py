import os

import pytest

# No test may open a real window or touch a sound card: SDL gets its dummy drivers.
os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


@pytest.fixture
def bus():
    from vj.control.bus import ControlBus

    return ControlBus()

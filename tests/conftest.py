import os
import tempfile

import pytest

# No test may open a real window or touch a sound card: SDL gets its dummy drivers.
os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# Shows started by tests keep their dreams here, not in the user's ~/.local/share/vj/dreams.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="vj-tests-")


@pytest.fixture
def bus():
    from vj.control.bus import ControlBus

    return ControlBus()

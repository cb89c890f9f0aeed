import os
import shutil
import subprocess
import sys
import tempfile
import time

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


@pytest.fixture(scope="session")
def jack():
    """A JACK server with the dummy driver: real MIDI ports and an audio device, no sound card needed."""
    if not shutil.which("jackd"):
        pytest.skip("needs jackd (Debian jackd2; .ci/run installs it)")
    if subprocess.run(["jack_lsp"], capture_output=True, check=False).returncode == 0:
        yield
        return
    proc = subprocess.Popen(
        ["jackd", "-r", "-d", "dummy", "-r", "48000", "-p", "256"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while subprocess.run(["jack_lsp"], capture_output=True, check=False).returncode != 0:
        assert time.monotonic() < deadline, "jackd did not start"
        time.sleep(0.2)
    yield
    # PortAudio asserts (and aborts the interpreter) if it is still attached to JACK when the server goes away.
    sd = sys.modules.get("sounddevice")
    while sd is not None and sd._initialized:
        sd._terminate()
    proc.terminate()
    proc.wait(10)

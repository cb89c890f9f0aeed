"""Ableton Link between vj and another peer. Link finds peers by multicast on every network it can reach, so the
peers run only inside a private network namespace made here (its own loopback, nothing else): never on the host's
network, where they would join whatever Link session is out there."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from functools import cache

import pytest

from tests.child import ENV, ROOT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("link") is None, reason="needs LinkPython-extern (pip install 'vj[link]')"
)

SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo || exit 77"


@cache
def unshare() -> list[str]:
    """The command that runs a program in a new network namespace, or a skip saying why there is none."""
    tool, ip = (
        shutil.which("unshare"),
        shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.path.exists(p)), None),
    )
    if tool is None or ip is None:
        pytest.skip("needs unshare (util-linux) and ip (iproute2) for a private network namespace")
    tried = []
    for cmd in ([tool, "--net", "--map-root-user"], [tool, "--net"]):
        probe = subprocess.run([*cmd, ip, "link", "set", "lo", "up"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return cmd
        tried.append(probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"status {probe.returncode}")
    pytest.skip(f"cannot make a private network namespace ({'; '.join(tried)})")


def in_namespace(mode: str, timeout: float = 240) -> dict:
    """Run tests/link_netns.py MODE inside a fresh network namespace; what it printed."""
    env = {**ENV, "VJ_TEST_HOST_NETNS": os.readlink("/proc/self/ns/net")}
    script = f'{SETUP}\nexec "{sys.executable}" tests/link_netns.py {mode}'
    proc = subprocess.run(
        [*unshare(), "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode == 77:
        pytest.skip(f"cannot route multicast on the namespace's loopback: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_vj_run_joins_a_link_session_and_takes_its_tempo():
    out = in_namespace("run")
    tempo = out["report"]["tempo"]
    assert tempo["source"] == "link"
    assert tempo["bpm"] == pytest.approx(130.0, rel=0.005), "vj joined the session: its tempo, not vj's own 120"
    assert tempo["peers"] >= 1 and out["peer_peers"] >= 1, "each side saw the other"
    assert out["peer_bpm"] == pytest.approx(130.0, abs=0.01), "joining did not change the session's tempo"
    assert out["report"]["link"]["peers"] >= 1


@pytest.mark.slow
def test_the_beat_agrees_with_the_peer_and_a_tempo_set_in_vj_moves_the_session():
    out = in_namespace("show")
    assert out["errors"] > 30, out
    ms = 60 / 130 * 1000  # one beat at 130 BPM
    print(
        f"\nvj's beat - the peer's: mean {out['mean'] * ms:.1f} ms, jitter {out['stdev'] * ms:.2f} ms over "
        f"{out['errors']} frames; the peer followed a tempo set in vj after {out['followed_s']} s "
        f"({out['sets_lost']} sets undone by a sync in the same frame)"
    )
    assert abs(out["mean"]) < 0.1, "vj's bar phase is the session's"
    assert out["stdev"] < 0.1  # loose: on a busy machine frames come late, and the beat of each is read late
    assert out["followed_s"] is not None and out["peer_bpm"] == pytest.approx(140.0, abs=0.01)
    assert out["link"]["tempo_sets"] == 1

"""Feeds to other programs: NDI between two real NDI endpoints inside a private network namespace (its discovery
traffic never leaves it), and clear words where a system part is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.child import ROOT, vj
from vj.errors import DeviceError
from vj.output import feeds

NDI_CONFIG = {"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}}}  # find sources on loopback, no mDNS


def namespace_or_skip() -> list[str]:
    """The command prefix that runs a command in a fresh network namespace with loopback up."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs unshare and ip (util-linux, iproute2) for a private network namespace")
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private network namespace here (root or user namespaces needed): {probe.stderr!r}")
    return ["unshare", "--net", "sh", "-c"]


def test_ndi_frames_reach_a_receiver_in_a_private_network(tmp_path):
    pytest.importorskip("cyndilib", reason="NDI needs cyndilib (pip install 'vj[ndi]')")
    prefix = namespace_or_skip()
    (tmp_path / "ndi-config.v1.json").write_text(json.dumps(NDI_CONFIG))
    name = f"vj-test-{uuid.uuid4().hex[:6]}"
    script = textwrap.dedent(f"""
        ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo &&
        exec {sys.executable} -m tests.ndi_probe {name}
    """)
    env = {**os.environ, "NDI_CONFIG_DIR": str(tmp_path), "SDL_VIDEODRIVER": "dummy", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([*prefix, script], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["found"], f"the receiver did not find '{name}': {result['stderr']}"
    assert result["frames"] >= 10 and result["size"] == [160, 90] and result["level"] > 10, result
    assert result["returncode"] == 0 and result["report"]["ndi"]["sent"] >= 10, result["stderr"]


def test_spout_and_syphon_say_which_system_they_belong_to():
    if sys.platform != "win32":
        with pytest.raises(DeviceError, match="Spout is a Windows system"):
            feeds.SpoutFeed().open()
    if sys.platform != "darwin":
        with pytest.raises(DeviceError, match="Syphon is a macOS system"):
            feeds.SyphonFeed().open()
    result = vj(
        "run", "--headless", "--frames", "5", "--no-osc", "--output", "spout" if sys.platform != "win32" else "syphon"
    )
    assert result.returncode == 2 and "system; this is" in result.stderr and "Traceback" not in result.stderr


def test_a_virtual_camera_without_its_driver_says_how_to_get_one():
    pytest.importorskip("pyvirtualcam", reason="needs pyvirtualcam (pip install 'vj[virtualcam]')")
    if sys.platform.startswith("linux") and any(Path("/sys/module").glob("v4l2loopback")):
        pytest.skip("v4l2loopback is loaded here: a real virtual camera would open")
    from vj.engine.loop import Show, ShowConfig

    show = Show(ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, frames=60))
    cam = feeds.VirtualCam()
    show.add_source(cam)
    report = show.run()
    assert report["frames"] == 60, "the show went on"
    health = report["sources"]["virtual_cam"]
    assert not health["alive"] and "modprobe v4l2loopback" in health["error"], health

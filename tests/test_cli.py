import json
import signal
import subprocess
import sys
import time

import pytest

from tests.child import ENV, ROOT, start, vj


def test_help_and_import_stay_light():
    code = (
        "import sys, vj, vj.cli, vj.params, vj.control.bus\n"
        "try:\n    vj.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'torch', 'diffusers', 'faster_whisper', 'pygame', 'cv2', 'numpy'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT, check=False)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_run_help_explains_the_options():
    out = vj("run", "--help")
    assert out.returncode == 0
    for option in ("--fullscreen", "--display", "--size", "--headless", "--seconds", "--frames", "--report"):
        assert option in out.stdout
    assert "Esc quit" in out.stdout


def test_headless_run_writes_the_report(tmp_path):
    path = tmp_path / "report.json"
    out = vj("run", "--headless", "--frames", "30", "--size", "320x180", "--report", str(path))
    assert out.returncode == 0, out.stderr
    report = json.loads(path.read_text())
    assert report["frames"] == 30 and report["window"]["headless"] is True


def test_report_to_stdout_is_json_alone():
    out = vj(
        "run", "--headless", "--frames", "10", "--size", "320x180", "--prompt", "fire", "--seed", "5", "--report", "-"
    )
    report = json.loads(out.stdout)
    assert report["params"]["prompt"] == "fire" and report["params"]["seed"] == 5


def test_a_flaky_generator_is_counted_in_the_report():
    out = vj(
        "run",
        "--headless",
        "--frames",
        "90",
        "--size",
        "320x180",
        "--gen-size",
        "64x64",
        "--generator",
        "tests.gens:Flaky",
        "--report",
        "-",
    )
    report = json.loads(out.stdout)
    assert report["frames"] == 90
    assert report["generator"]["errors"] >= 1 and report["generator"]["restarts"] >= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "12"], "WIDTHxHEIGHT"),
        (["--size", "5x5"], "out of range"),
        (["--fps", "0"], "must be above 0"),
        (["--generator", "nope"], "unknown generator 'nope'"),
        (["--display", "5"], "--display 5"),
        (["--seed", "abc"], "invalid int value"),
        (["--report", "/no/such/dir/r.json"], "/no/such/dir/r.json"),
        (["--seconds", "1", "--frames", "3"], "not allowed with"),
    ],
)
def test_bad_input_is_a_clear_message_and_exit_2(args, message):
    out = vj("run", "--headless", "--frames", "2", "--size", "160x90", *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 120) -> None:
    """Read the child's stderr until a line holds ``text`` (what it logs with -v), whatever the machine's speed."""
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        if text in line:
            return
        assert time.monotonic() < deadline, f"no line with {text!r}"
    raise AssertionError(f"the child ended before saying {text!r}")


def test_sigterm_ends_the_show_cleanly_with_a_report(tmp_path):
    path = tmp_path / "r.json"
    proc = start("-v", "run", "--headless", "--seconds", "600", "--size", "160x90", "--report", str(path))
    wait_for_line(proc, "first frame on screen")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    report = json.loads(path.read_text())
    assert 0 < report["seconds"] < 600 and report["frames"] > 0


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_during_start_up_ends_cleanly_with_a_report(tmp_path, presses):
    path = tmp_path / "r.json"
    proc = start("-v", "run", "--headless", "--seconds", "600", "--size", "160x90", "--report", str(path))
    wait_for_line(proc, "starting the show")
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, rest
    assert "Traceback" not in rest
    report = json.loads(path.read_text())
    assert report["seconds"] < 600


def test_a_fifo_as_voice_file_is_refused_at_once(tmp_path):
    import os

    fifo = tmp_path / "voice.wav"
    os.mkfifo(fifo)
    out = vj("run", "--headless", "--frames", "5", "--voice-file", str(fifo), timeout=60)
    assert out.returncode == 2 and "not a regular file" in out.stderr and "Traceback" not in out.stderr


def test_no_reachable_display_is_said_in_one_line_and_exit_2():
    env = {k: v for k, v in ENV.items() if k not in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run(
        [sys.executable, "-m", "vj", "run", "--frames", "5", "--no-osc"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "no display" in out.stderr and "--headless" in out.stderr and "Traceback" not in out.stderr


def test_readme_documents_every_parameter_and_key():
    from vj.control.keys import CHARS
    from vj.params import PARAMS

    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    for spec in PARAMS:
        assert any(f"`{spec.name}`" in row.split("|")[1] for row in rows), f"README's parameter table lacks {spec.name}"
    for char in CHARS:
        if char.isdigit():
            assert "| `1` … `9` |" in readme
            continue
        shown = "| Space |" if char == " " else f"`{char.upper()}`"
        assert f"`{char}`" in readme or shown in readme, f"README's key table lacks {char!r}"


@pytest.mark.slow
def test_a_wheel_carries_the_bundled_mappings_and_scenes(tmp_path):
    import zipfile

    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("vj-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("mappings", "scenes"):
        shipped = {p.name for p in (ROOT / folder).glob("*.toml")}
        assert shipped and {f"vj/data/{folder}/{n}" for n in shipped} <= names, folder

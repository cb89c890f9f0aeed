"""Dream sessions on a Ray cluster (``vj dream --cluster``): workers render, the head is the store's one writer."""

from __future__ import annotations

import importlib.util
import random
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.child import vj
from vj.dreams.cluster import Proposer
from vj.dreams.explore import Genome
from vj.dreams.store import DreamStore
from vj.frame.aesthetics import Score

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'vj[cluster]')"
)

# Small dreams, so a session is quick on two cores; the session's count, not the clock, ends it.
SESSION = ("dream", "--prompt", "a neon city", "--cluster", "local", "--workers", "2", "--count", "40",
           "--generator", "sketch", "--gen-size", "64x64", "--frames", "6", "--seed", "7")  # fmt: skip


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A Ray folder of the test's own (short: Ray's socket paths must stay under 108 bytes); afterwards no process
    may still be running from it."""
    folder = Path(tempfile.mkdtemp(prefix="vjray-", dir="/tmp"))
    try:
        yield folder
        left = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and str(folder) in _cmdline(p)]
        assert not left, f"Ray processes left running: {left}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # ended meanwhile
        return ""


def rows(folder: Path) -> list[tuple[int, str, str]]:
    """(id, worker, image) of every dream, read with sqlite3 itself; the integrity check must pass first."""
    db = sqlite3.connect(folder / "dreams.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute("SELECT id, worker, image FROM dreams ORDER BY id").fetchall()
    finally:
        db.close()


@needs_ray
def test_a_cluster_session_stores_its_count_made_by_two_workers(tmp_path, ray_tmp):
    out = vj(*SESSION, "--strategy", "evolutionary", "--dreams", str(tmp_path), timeout=300,
             env={"RAY_TMPDIR": str(ray_tmp)})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    dreams = rows(tmp_path)
    assert len(dreams) == 40
    assert len({worker for _, worker, _ in dreams}) == 2, "both workers made dreams"
    assert all((tmp_path / image).is_file() for _, _, image in dreams)
    last = out.stdout.splitlines()[-1]
    assert "dreams/s" in last and "on 2 workers" in last and "40 written, 40 kept" in last
    assert "restarted" not in out.stdout
    logs = [*ray_tmp.rglob("raylet.out"), *ray_tmp.rglob("gcs_server.out")]
    addresses = {ip for log in logs for ip in re.findall(rb"\b\d{1,3}(?:\.\d{1,3}){3}\b", log.read_bytes())}
    assert addresses == {b"127.0.0.1"}, f"Ray stays on loopback: {addresses}"
    listed = vj("dreams", "list", "--top", "3", "--dreams", str(tmp_path))
    host = dreams[0][1].split("/")[0]
    assert listed.returncode == 0 and f"[{host}/" in listed.stdout, "the list names the worker"


@needs_ray
def test_a_worker_killed_mid_session_is_restarted_and_nothing_committed_is_lost(tmp_path, ray_tmp):
    # Worker 0's process exits after its first dream, with its second already handed to it: a real death with
    # work in flight, whatever the speed of the machine.
    out = vj(*SESSION, "--strategy", "evolve", "--dreams", str(tmp_path), timeout=300,
             env={"RAY_TMPDIR": str(ray_tmp), "VJ_DREAM_CRASH": "0:1"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    dreams = rows(tmp_path)
    assert len(dreams) == 40, out.stdout
    for _, _, image in dreams:
        picture = cv2.imread(str(tmp_path / image))
        assert picture is not None and picture.shape == (64, 64, 3), "every committed row has its picture"
    # vj's own lines only: Ray prints its own words about the death ("The actor was restarted") as it sees fit.
    restarted = [line for line in out.stdout.splitlines() if line.startswith("worker ") and "restarted" in line]
    assert restarted and all(re.match(r"worker \S+/0 ", line) for line in restarted), out.stdout
    assert "dreams/s" in out.stdout.splitlines()[-1]


def test_without_ray_the_error_says_what_to_install(tmp_path):
    fake = tmp_path / "fake"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    from tests.child import ROOT

    out = vj(*SESSION, "--dreams", str(tmp_path / "d"), env={"PYTHONPATH": f"{fake}:{ROOT}"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "vj: --cluster: dreaming on a cluster needs Ray (pip install 'vj[cluster]')"
    ]


def test_count_and_workers_go_with_cluster(tmp_path):
    out = vj("dream", "--prompt", "x", "--count", "5", "--dreams", str(tmp_path))
    assert out.returncode == 2 and "--count: goes with --cluster" in out.stderr


def test_an_older_store_gains_the_worker_column(tmp_path):
    db = sqlite3.connect(tmp_path / "dreams.sqlite")
    db.executescript(
        """CREATE TABLE dreams (id INTEGER PRIMARY KEY, created REAL NOT NULL, session TEXT NOT NULL,
        prompt TEXT NOT NULL, seed INTEGER NOT NULL, params TEXT NOT NULL, score REAL NOT NULL, scores TEXT NOT NULL,
        scene TEXT, generator TEXT NOT NULL, image TEXT NOT NULL, latent TEXT, saved INTEGER NOT NULL DEFAULT 0,
        width INTEGER NOT NULL, height INTEGER NOT NULL, features BLOB);
        INSERT INTO dreams VALUES (1, 0, 's', 'old dream', 1, '{}', 0.5, '{}', NULL, 'sketch', 'images/a.png', NULL, 0,
        64, 64, NULL);
        PRAGMA user_version = 1;"""
    )
    db.close()
    store = DreamStore(tmp_path)
    try:
        assert store.get(1).worker is None, "a dream from before clusters has no worker"
        made = store.add(np.zeros((8, 8, 3), np.uint8), session="s", prompt="new", seed=2, params={}, score=0.4,
                         scores={}, generator="sketch", worker="node/1")  # fmt: skip
        assert store.get(made.id).worker == "node/1"
        assert made.line().endswith("[node/1]") and not store.get(1).line().endswith("]")
    finally:
        store.close()


def _score(total: float) -> Score:
    return Score(total, 0.5, 0.5, 0.5, 0.5)


def test_the_head_breeds_children_from_the_best_half_of_eight():
    proposer = Proposer("evolve", random.Random(1))
    feats = np.ones(4, np.float32) / 2
    firsts = [proposer.ask(0.0) for _ in range(8)]
    for i, g in enumerate(firsts):
        proposer.tell(g, _score(i / 10), feats, 0.0)
    assert len(proposer.population) == 8
    best = {g.seed for g in firsts[4:]}
    child = proposer.ask(0.5)
    assert isinstance(child, Genome) and child not in firsts
    near = {s + d for s in best for d in range(98)}
    assert child.seed in near, "a child of the best half (its seed is a parent's, or one nudged up)"
    proposer.tell(child, _score(0.05), feats, 0.5)
    assert len(proposer.population) == 8 and firsts[0] not in [g for g, _ in proposer.population]


def test_a_walk_moves_only_to_better_dreams():
    proposer = Proposer("walk", random.Random(2))
    feats = np.ones(4, np.float32) / 2
    start = proposer.ask(0.0)
    proposer.tell(start, _score(0.5), feats, 0.0)
    worse, better = proposer.ask(0.1), proposer.ask(0.1)
    proposer.tell(worse, _score(0.4), feats, 0.1)
    assert proposer.current == (start, 0.5)
    proposer.tell(better, _score(0.6), feats, 0.1)
    assert proposer.current == (better, 0.6)

"""The dream store and keeper when things go wrong: a damaged store, a full disk, a save button held down, a
keeper that falls behind, a replay scene with nothing to replay, frames that are not dreams. The show never waits,
never hangs and never goes black because of them."""

import errno
import os
import queue
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_dreams import add, colourful
from vj.dreams import keeper as keeper_module
from vj.dreams import store as store_module
from vj.dreams.keeper import DreamKeeper
from vj.dreams.replay import ReplayGenerator
from vj.dreams.store import DreamStore
from vj.engine.worker import GeneratorWorker, Job
from vj.errors import ConfigError, GeneratorUnusable
from vj.gen import base
from vj.params import ParamStore

SIZE = (64, 64)


def eventually(check, timeout: float = 30.0) -> None:
    """Wait until ``check()`` holds (the keeper works on its own thread); the timeout only catches a hang."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for the keeper"
        time.sleep(0.01)


def noise(seed: int, size: int = 96) -> np.ndarray:
    """A picture PNG cannot shrink: fills a small disk quickly."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def damaged(folder: Path, dreams: int = 12) -> Path:
    """A store whose database keeps a valid SQLite header but has garbage in every page after the first."""
    store = DreamStore(folder)
    for i in range(dreams):
        add(store, colourful(i), i / dreams, prompt="p" * 400)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    db = folder / "dreams.sqlite"
    data = bytearray(db.read_bytes())
    assert len(data) > 8192, "the store spans several pages"
    data[4096:] = np.random.default_rng(0).integers(0, 256, len(data) - 4096, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(data))
    for extra in ("dreams.sqlite-wal", "dreams.sqlite-shm"):
        (folder / extra).unlink(missing_ok=True)
    return folder


def stored(folder: Path, session: str | None = None) -> list:
    store = DreamStore(folder, create=False)
    try:
        assert store.integrity() == "ok"
        return store.top(session=session)
    finally:
        store.close()


def files(folder: Path) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for sub in ("images", "latents") for p in (folder / sub).iterdir()}


# -- 1. a damaged store ---------------------------------------------------------------------------------------------
def test_opening_a_damaged_store_says_which_file_and_what_to_do(tmp_path):
    folder = damaged(tmp_path / "dreams")
    with pytest.raises(ConfigError) as caught:  # the CLI prints it in one line and exits 2
        DreamStore(folder, create=False)
    message = str(caught.value)
    assert "\n" not in message and str(folder / "dreams.sqlite") in message
    assert "damaged" in message and f"mv {folder} {folder}.broken-" in message
    assert isinstance(caught.value, store_module.StoreBroken)
    (folder / "dreams.sqlite").write_bytes(b"this is not a database at all" * 300)
    with pytest.raises(store_module.StoreBroken, match="damaged"):
        DreamStore(folder, create=False)
    assert (folder / "images").is_dir() and len(files(folder)) == 12, "nothing is moved or deleted behind the user"


def test_a_damaged_store_turns_dreams_off_and_the_keeper_never_blocks(tmp_path):
    keeper = DreamKeeper(damaged(tmp_path / "dreams"), every=0.0)
    keeper.save_every = 0.0
    keeper._queue = NoWaiting(maxsize=keeper._queue.maxsize)
    keeper.start()
    eventually(lambda: not keeper._thread.is_alive())  # it found the damage and gave up on the store
    image = colourful()
    for i in range(3000):  # a frame every call, and /vj/save hammered: the queue would have filled long ago
        keeper.offer(image, {"prompt": "p"}, 0.5, scene=None, generator="sketch", now=float(i))
        keeper.save(image, {"prompt": "p"}, 0.5, scene=None, generator="sketch")
    stopper = threading.Thread(target=keeper.stop)
    stopper.start()
    stopper.join(30)
    assert not stopper.is_alive(), "stop() returned"
    assert keeper.status().startswith("DREAMS OFF: store broken")
    report = keeper.report()
    assert "damaged" in report["error"] and f"mv {tmp_path / 'dreams'}" in report["error"]
    assert report["written"] == 0 and report["saves_refused"] == 3000 and report["dropped"] == 0


def test_a_store_that_breaks_during_the_show_turns_dreams_off(tmp_path, monkeypatch):
    def malformed(*args, **kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")

    keeper = DreamKeeper(tmp_path)
    keeper.save_every = 0.0
    keeper.start()
    assert keeper.save(colourful(1), {}, 0.5, scene=None, generator="sketch")
    eventually(lambda: keeper.written == 1)
    monkeypatch.setattr(DreamStore, "add", malformed)
    assert keeper.save(colourful(2), {}, 0.5, scene=None, generator="sketch")
    eventually(lambda: keeper.status() is not None)
    assert keeper.status().startswith("DREAMS OFF: store broken")
    assert "mv " in keeper.report()["error"], "the report says what to do"
    assert not keeper.save(colourful(3), {}, 0.5, scene=None, generator="sketch"), "no longer accepting"
    keeper.stop()
    assert keeper.report()["unwritten"] == 1


class Escape(BaseException):
    """Not an Exception: what a plain ``except Exception`` lets through and kills a thread with."""


def test_the_keeper_thread_survives_whatever_its_work_raises(tmp_path, monkeypatch):
    real = keeper_module.keep_if_good
    raised: list[BaseException] = [RuntimeError("a passing failure"), RuntimeError("and another")]

    def flaky(*args, **kwargs):
        if raised:
            raise raised.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(keeper_module, "keep_if_good", flaky)
    unhandled: list = []
    monkeypatch.setattr(threading, "excepthook", unhandled.append)
    keeper = DreamKeeper(tmp_path)
    keeper.save_every = 0.0
    keeper.start()
    for i in range(4):
        keeper.save(colourful(i), {"prompt": f"p{i}"}, 0.5, scene=None, generator="sketch")
    eventually(lambda: keeper.written + keeper.errors == 4)
    assert keeper.written == 2 and keeper.errors == 2 and keeper._thread.is_alive(), "it carried on"
    assert keeper.status() is None
    raised.append(Escape())
    keeper.save(colourful(9), {}, 0.5, scene=None, generator="sketch")
    eventually(lambda: not keeper._thread.is_alive())
    assert unhandled == [], "nothing escaped the keeper's thread"
    keeper.stop()
    assert keeper.status().startswith("DREAMS OFF: keeper failed (Escape")
    assert len(stored(tmp_path)) == 2


# -- 2. a full disk -------------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs: a disk that really fills up."""
    path = tmp_path / "small"
    path.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a 2 MB tmpfs needs root (the ENOSPC tests without it still run)")
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)]
    done = subprocess.run(mount, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_disk_that_fills_up_pauses_dreams_and_leaves_the_store_whole(small_disk, caplog):
    folder = small_disk / "dreams"
    keeper = DreamKeeper(folder, keep=1000)
    keeper.save_every, keeper.min_free = 0.0, 0
    keeper.start()
    for i in range(60):  # about 50 kB each: far more than 2 MB
        assert keeper.save(noise(i, 128), {"prompt": f"p{i}"}, 0.5, scene=None, generator="sketch") is not False
    keeper.stop()  # after the queue is written
    assert not [p for p in (folder / "images").iterdir() if p.suffix == ".tmp"], "no temporary files left"
    rows = stored(folder, keeper.session)  # the next start opens it, with the disk still full
    assert files(folder) == {d.image for d in rows}, "every file listed, every row with its picture"
    report = keeper.report()
    assert report["written"] == len(rows) >= 5 and report["unwritten"] >= 5, report
    assert report["errors"] == 1, "one failed write, then a pause: no write attempt per dream"
    assert keeper.status().startswith("DREAMS PAUSED: disk full") and "disk full" in report["error"]
    keeper_errors = [r for r in caplog.records if r.name == "vj.dreams.keeper" and r.levelname == "ERROR"]
    assert len(keeper_errors) == 1 and not any(r.exc_info for r in keeper_errors), "logged once, no traceback"


def test_no_space_while_writing_cleans_up_and_retries_later(tmp_path, monkeypatch):
    real_fsync, full = os.fsync, [True]

    def fsync(fd):
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    t = [0.0]
    keeper = DreamKeeper(tmp_path)
    keeper.save_every, keeper.min_free, keeper.retry, keeper.clock = 0.0, 0, 60.0, lambda: t[0]
    keeper.start()
    keeper.save(colourful(1), {}, 0.5, scene=None, generator="sketch")
    eventually(lambda: keeper.errors == 1)
    assert files(tmp_path) == set(), "the half-written image and its temporary file are gone"
    assert keeper.status().startswith("DREAMS PAUSED: disk full")
    keeper.save(colourful(2), {}, 0.5, scene=None, generator="sketch")
    eventually(lambda: keeper.unwritten == 2)
    assert keeper.errors == 1, "paused: no new attempt until the retry time"
    full[0], t[0] = False, 61.0
    keeper.save(colourful(3), {}, 0.5, scene=None, generator="sketch")
    eventually(lambda: keeper.written == 1)
    assert keeper.status() is None and keeper.report()["error"] is None
    keeper.stop()
    assert len(stored(tmp_path)) == 1


def test_the_keeper_leaves_room_on_a_nearly_full_disk(tmp_path):
    keeper = DreamKeeper(tmp_path)
    keeper.save_every, keeper.min_free = 0.0, 2**62
    keeper.start()
    keeper.save(colourful(1), {}, 0.5, scene=None, generator="sketch")
    keeper.stop()
    assert keeper.written == 0 and keeper.unwritten == 1
    assert keeper.status().startswith("DREAMS PAUSED: disk full") and "MiB free" in keeper.report()["error"]


# -- 3. saves hammered ----------------------------------------------------------------------------------------------
def test_saves_are_rate_limited_and_hand_saved_dreams_capped(tmp_path):
    keeper = DreamKeeper(tmp_path)
    keeper.save_every, keeper.max_saved = 0.5, 3
    keeper.start()
    accepted = [
        keeper.save(colourful(i % 7), {"prompt": f"at {i}"}, 0.5, scene=None, generator="sketch", now=i / 200)
        for i in range(1000)  # 200 presses a second for 5 s
    ]
    keeper.stop()
    assert sum(accepted) == 10 and keeper.saves_refused == 990
    assert accepted[0] and accepted[100] and not accepted[99], "the first press counts, then one every 0.5 s"
    rows = stored(tmp_path, keeper.session)
    assert len(rows) == 3 and all(d.saved for d in rows)
    assert {d.prompt for d in rows} == {"at 700", "at 800", "at 900"}, "the newest hand-saved dreams stay"
    assert not [p for p in (tmp_path / "images").iterdir() if p.name not in {Path(d.image).name for d in rows}]
    report = keeper.report()
    assert report["saves_refused"] == 990 and report["evicted"] == 7


# -- 4. the loop never waits for the keeper -------------------------------------------------------------------------
class NoWaiting(queue.Queue):
    """The keeper's queue, failing any put that could wait (instead of waiting)."""

    def put(self, item, block=True, timeout=None):
        if block:
            raise AssertionError("a put that may wait for room: the loop would stall on the keeper")
        super().put(item, block=False)


def test_offer_save_fetch_and_stop_never_wait_for_a_stalled_keeper(tmp_path, monkeypatch):
    entered, release = threading.Event(), threading.Event()

    def stalled(*args, **kwargs):  # the disk hangs: the keeper's thread stops taking candidates
        entered.set()
        release.wait(60)

    monkeypatch.setattr(keeper_module, "keep_if_good", stalled)
    keeper = DreamKeeper(tmp_path, every=0.0)
    keeper.save_every = 0.0
    room = keeper._queue.maxsize
    keeper._queue = NoWaiting(maxsize=room)
    keeper.start()
    try:
        image = colourful()
        keeper.save(image, {}, 0.5, scene=None, generator="sketch")
        assert entered.wait(30)
        calls = 0
        for i in range(3000):
            keeper.offer(image, {}, 0.5, scene=None, generator="sketch", now=float(i))
            keeper.save(image, {}, 0.5, scene=None, generator="sketch")
            calls += 2
            if i % 100 == 0:
                keeper.fetch(4, SIZE)
                calls += 1
        assert keeper.dropped == calls - room, "the queue filled, then every candidate was dropped and counted"
        assert keeper.saves_refused == 0
        keeper.stop(timeout=0)
    finally:
        release.set()
    keeper._thread.join(30)
    assert not keeper._thread.is_alive(), "the thread finished its queue once the disk came back"
    assert keeper.report()["dropped"] == calls - room


# -- 5. a replay scene with nothing to replay ------------------------------------------------------------------------
@pytest.mark.parametrize("store", ["missing", "empty", "damaged", "only noise"])
def test_replay_with_nothing_to_replay_is_unusable_at_once(tmp_path, store):
    folder = tmp_path / "dreams"
    if store == "empty":
        DreamStore(folder).close()
    elif store == "damaged":
        damaged(folder)
    elif store == "only noise":
        s = DreamStore(folder)
        s.add(noise(1), session="s", prompt="", seed=0, params={}, score=0.9, scores={}, generator="decay")
        s.close()
    with pytest.raises(GeneratorUnusable) as caught:
        ReplayGenerator(SIZE, folder=folder).load()
    message = str(caught.value)
    assert str(folder) in message
    assert ("damaged" in message) if store == "damaged" else message.startswith("no dreams stored yet: ")


def job() -> Job:
    return Job(ParamStore().values(), np.zeros(4))


def test_a_replay_scene_on_an_empty_store_falls_back_at_once_and_keeps_dreaming(tmp_path):
    """What a show does: sketch dreams, the Top dreams scene switches to replay, the store is empty."""
    DreamStore(tmp_path).close()
    worker = GeneratorWorker(
        base.factory("sketch", SIZE), SIZE, name="sketch", fallback=base.factory("sketch", SIZE), max_failures=3
    )
    frames: list = []
    worker.start()
    try:

        def pump(until) -> None:
            deadline = time.monotonic() + 60
            while not until():
                assert time.monotonic() < deadline, "frames stopped coming"
                worker.submit(job())
                worker.check()
                frame = worker.poll()
                if frame is not None:
                    frames.append(frame)
                time.sleep(0.005)

        pump(lambda: len(frames) >= 3)
        worker.switch(base.factory("replay", SIZE, folder=tmp_path), "replay")
        before = len(frames)
        pump(lambda: worker.stats.errors >= 1 and len(frames) >= before + 10)
    finally:
        worker.stop()
    stats = worker.stats
    assert stats.errors == 1 and stats.restarts <= 1, "no retries: unusable means fall back at once"
    assert stats.fallback == "sketch" and "no dreams stored yet" in stats.last_error
    assert all(f.image.mean() > 10 for f in frames[-10:]), "the projector keeps dreaming, not black"


# -- 6. frames that are not dreams ---------------------------------------------------------------------------------
def test_diagnostic_and_replayed_frames_are_never_kept(tmp_path):
    assert base.find("decay").diagnostic and base.find("replay").replays_dreams
    makes_dreams = keeper_module.makes_dreams
    assert not makes_dreams("decay") and not makes_dreams("replay") and makes_dreams("sketch")
    assert makes_dreams("no-such-generator"), "an unknown name is not refused"
    keeper = DreamKeeper(tmp_path, every=0.0)
    keeper.save_every = 0.0
    keeper.start()
    for i, name in enumerate(["decay", "replay"] * 5):
        keeper.offer(noise(i), {}, 0.99, scene=None, generator=name, now=float(i))
        assert not keeper.save(noise(i), {}, 0.99, scene=None, generator=name)
    keeper.offer(colourful(1), {"prompt": "real"}, 0.3, scene=None, generator="sketch", now=100.0)
    keeper.stop()
    rows = stored(tmp_path)
    assert [(d.prompt, d.generator) for d in rows] == [("real", "sketch")]
    assert keeper.skipped == 10 and keeper.saves_refused == 10


def test_replay_leaves_out_the_noise_an_older_vj_kept(tmp_path):
    store = DreamStore(tmp_path)
    store.add(noise(1), session="s", prompt="", seed=0, params={}, score=0.99, scores={}, generator="decay")
    real = add(store, colourful(2), 0.4)
    store.close()
    gen = ReplayGenerator((96, 96), folder=tmp_path)
    gen.load()
    assert len(gen.images) == 1
    store = DreamStore(tmp_path)
    expected = store.image(real)
    store.close()
    assert np.array_equal(gen.images[0], expected)


def test_each_dream_records_its_generator_and_old_stores_gain_the_column(tmp_path):
    store = DreamStore(tmp_path / "new")
    dream = add(store, colourful(1), 0.5)
    assert store.top()[0].generator == "sketch" and "sketch" in dream.line()
    store.close()
    old = tmp_path / "old"
    (old / "images").mkdir(parents=True)
    db = sqlite3.connect(old / "dreams.sqlite")
    db.execute(
        "CREATE TABLE dreams (id INTEGER PRIMARY KEY, created REAL NOT NULL, session TEXT NOT NULL, prompt TEXT NOT"
        " NULL, seed INTEGER NOT NULL, params TEXT NOT NULL, score REAL NOT NULL, scores TEXT NOT NULL, scene TEXT,"
        " image TEXT NOT NULL, latent TEXT, saved INTEGER NOT NULL DEFAULT 0, width INTEGER NOT NULL,"
        " height INTEGER NOT NULL, features BLOB)"
    )
    db.execute("INSERT INTO dreams VALUES (1, 0, 's', 'old dream', 1, '{}', 0.5, '{}', NULL, 'images/a.png', NULL,"
               " 0, 96, 96, NULL)")  # fmt: skip
    db.commit()
    db.close()
    store = DreamStore(old, create=False)
    (row,) = store.top()
    assert row.generator == "unknown" and "unknown" in row.line()
    add(store, colourful(2), 0.9)
    assert [d.generator for d in store.top()] == ["sketch", "unknown"]
    store.close()


# -- the whole show ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_show_on_a_damaged_store_with_save_hammered_runs_to_its_end_with_a_report(tmp_path):
    from vj.engine.loop import Show, ShowConfig

    show = Show(ShowConfig(size=(160, 90), gen_size=SIZE, headless=True, frames=90, dreams=damaged(tmp_path / "d")))
    show.keeper._queue = NoWaiting(maxsize=show.keeper._queue.maxsize)

    def hammer(s: Show) -> None:
        for _ in range(20):  # far more than a performer could press
            s._save()

    show.on_frame.append(hammer)
    report = show.run()
    assert report["frames"] == 90
    dreams = report["dreams"]
    assert "damaged" in dreams["error"] and dreams["written"] == 0
    assert dreams["saves_refused"] > 0 and dreams["dropped"] == 0

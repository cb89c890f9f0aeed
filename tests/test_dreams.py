import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.child import ROOT, finish, start, vj
from vj.dreams.keeper import DreamKeeper
from vj.dreams.replay import ReplayGenerator
from vj.dreams.store import DreamStore
from vj.errors import ConfigError, GeneratorUnusable
from vj.frame.aesthetics import aesthetics, features, novelty, score


def colourful(seed: int = 0, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)
    return cv2.addWeighted(img, 0.8, cv2.GaussianBlur(img, (0, 0), 1), 0.2, 0)


def flat(level: int = 128, size: int = 96) -> np.ndarray:
    return np.full((size, size, 3), level, np.uint8)


def add(store: DreamStore, image: np.ndarray, score_: float, session: str = "s1", saved: bool = False, **kw):
    return store.add(
        image,
        session=session,
        prompt=kw.pop("prompt", "p"),
        seed=1,
        params={"zoom": 0.1},
        score=score_,
        scores={},
        generator="sketch",
        saved=saved,
        **kw,
    )


# -- scoring ----------------------------------------------------------------------------------------------------
def test_a_sharp_colourful_image_scores_above_a_flat_grey_one():
    good, bad = aesthetics(colourful()), aesthetics(flat())
    assert good.sharpness > bad.sharpness and good.contrast > bad.contrast and good.colourfulness > bad.colourfulness
    assert bad.mean < 0.05
    assert score(good, 1.0).total > score(bad, 1.0).total + 0.3


def test_novelty_is_low_for_what_is_already_kept():
    a, b = features(colourful(1)), features(colourful(2))
    assert novelty(a, []) == 1.0
    assert novelty(a, [a]) < 0.01
    assert novelty(a, [b]) > 0.5


def test_clip_joins_the_score_when_given():
    a = aesthetics(colourful())
    assert score(a, 0.5, clip=0.9).total != score(a, 0.5).total
    assert score(a, 0.5, clip=0.9).clip == 0.9


# -- the store ------------------------------------------------------------------------------------------------
def test_the_store_keeps_images_rows_and_latents(tmp_path):
    store = DreamStore(tmp_path)
    img = colourful()
    d = add(store, img, 0.7, latent=np.ones((4, 8, 8), np.float32), features=features(img))
    assert (tmp_path / "dreams.sqlite").is_file() and (tmp_path / d.image).is_file()
    assert np.array_equal(store.image(d), img)
    assert store.latent(d).shape == (4, 8, 8)
    assert store.get(d.id).params == {"zoom": 0.1} and store.get(d.id).features.shape == (432,)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.integrity() == "ok"
    store.close()


def test_evict_keeps_the_best_k_and_every_saved_one(tmp_path):
    store = DreamStore(tmp_path)
    for i in range(10):
        add(store, colourful(i), i / 10)
    saved = add(store, flat(), 0.01, saved=True)
    gone = store.evict("s1", keep=3)
    assert len(gone) == 7
    left = store.top(session="s1")
    assert sorted(d.score for d in left if not d.saved) == [0.7, 0.8, 0.9]
    assert saved.id in {d.id for d in left}
    assert all(not (tmp_path / d.image).exists() for d in gone), "evicted images are deleted"
    store.close()


def test_prune_across_sessions_and_tidy_stray_files(tmp_path):
    store = DreamStore(tmp_path)
    for i in range(4):
        add(store, colourful(i), i / 10, session="a")
        add(store, colourful(i + 10), i / 10 + 0.05, session="b")
    (tmp_path / "images" / "stray.png").write_bytes(b"x")
    removed, files = store.prune(keep=3)
    assert removed == 5 and files == 1 and store.count() == 3
    store.close()


def test_export_copies_images_with_an_index(tmp_path):
    store = DreamStore(tmp_path / "store")
    add(store, colourful(1), 0.9, prompt="a neon city")
    add(store, colourful(2), 0.5, prompt="fire")
    files = store.export(store.top(), tmp_path / "out")
    assert [f.name for f in files] == ["001-0.900-a-neon-city.png", "002-0.500-fire.png"]
    index = json.loads((tmp_path / "out" / "dreams.json").read_text())
    assert index[0]["prompt"] == "a neon city" and index[1]["score"] == 0.5
    store.close()


def test_opening_a_missing_store_for_reading_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no dream store here"):
        DreamStore(tmp_path / "nothing", create=False)


CHILD = """
import sys, numpy as np
from vj.dreams.store import DreamStore
store = DreamStore(sys.argv[1])
rng = np.random.default_rng(0)
for i in range(100000):
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    d = store.add(img, session="crash", prompt=f"dream {i}", seed=i, params={}, score=float(rng.random()),
                  scores={}, generator="sketch")
    print(d.id, flush=True)
"""


def test_a_process_killed_mid_write_loses_nothing_committed(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    committed = []
    assert proc.stdout is not None
    while len(committed) < 40:
        committed.append(int(proc.stdout.readline()))
    time.sleep(0.013)  # somewhere in the middle of the next write
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    store = DreamStore(tmp_path, create=False)
    try:
        assert store.integrity() == "ok"
        present = {d.id for d in store.top(session="crash")}
        assert set(committed) <= present, "every dream reported committed is there"
        for d in store.top(session="crash"):
            assert store.image(d).shape == (64, 64, 3), "and every row has its picture"
    finally:
        store.close()


# -- the keeper ---------------------------------------------------------------------------------------------------
def test_the_keeper_keeps_at_most_k_plus_the_saved_ones(tmp_path):
    keeper = DreamKeeper(tmp_path, keep=5, every=0.0)
    keeper.start()
    for i in range(40):
        img = colourful(i)
        keeper.offer(
            img, {"prompt": f"p{i}", "seed": i}, aesthetics(img).mean, scene="scene", generator="sketch", now=float(i)
        )
    keeper.save(flat(), {"prompt": "kept by hand", "seed": 0}, 0.0, scene="scene", generator="sketch")
    keeper.stop()
    store = DreamStore(tmp_path, create=False)
    rows = store.top(session=keeper.session)
    store.close()
    assert len(rows) == 6 == keeper.rows
    assert sum(d.saved for d in rows) == 1 and keeper.by_hand == 1
    assert keeper.written > 6 and keeper.evicted == keeper.written - 6


def test_the_keeper_scores_with_clip_when_given(tmp_path):
    from tests.tiny import tiny_clip
    from vj.dreams.clip import ClipScorer

    clip = ClipScorer(str(tiny_clip(tmp_path / "clip")))
    value = clip.score(colourful(), "a neon city")
    assert 0.0 <= value <= 1.0
    assert clip.score(colourful(), "a neon city") == value, "the same picture and prompt score the same"
    keeper = DreamKeeper(tmp_path / "store", keep=3, every=0.0, clip=clip)
    keeper.start()
    keeper.save(colourful(), {"prompt": "a neon city"}, 0.5, scene=None, generator="sketch")
    keeper.stop()
    store = DreamStore(tmp_path / "store", create=False)
    (dream,) = store.top()
    store.close()
    assert dream.scores["clip"] == pytest.approx(value, abs=1e-4)


def test_a_missing_clip_model_is_a_clear_error(tmp_path):
    from vj.dreams.clip import ClipScorer

    with pytest.raises(ConfigError, match=r"CLIP model not found"):
        ClipScorer("no-such-org/no-such-clip")
    with pytest.raises(ConfigError, match=r"no config\.json"):
        ClipScorer(str(tmp_path))


# -- replay ---------------------------------------------------------------------------------------------------
def store_with(tmp_path: Path, images: list[np.ndarray]) -> Path:
    store = DreamStore(tmp_path)
    for i, img in enumerate(images):
        add(store, img, 1.0 - i / 10)
    store.close()
    return tmp_path


def textured(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (0, 0), 2)


def test_replay_cycles_the_best_dreams(tmp_path):
    a, b, c = textured(1), textured(2), textured(3)
    gen = ReplayGenerator((64, 64), folder=store_with(tmp_path, [a, b, c]), seconds=1.0)
    gen.load()
    t = [0.0]
    gen.clock = lambda: t[0]
    shown = []
    for step in [0.0, 0.5, 1.2, 2.1, 3.05]:  # the first call starts the clock
        t[0] = step
        shown.append(gen.generate(None, {}))
    expected = [a, a, b, c, a]  # best first, and round again
    assert all(np.array_equal(s, e) for s, e in zip(shown, expected, strict=True))


def test_replay_morphs_along_the_motion_between_two_dreams(tmp_path):
    a = textured(4)
    b = np.roll(a, 8, axis=1)  # the same picture, moved 8 px right
    gen = ReplayGenerator((64, 64), folder=store_with(tmp_path, [a, b]), seconds=1.0)
    gen.load()
    t = [0.0]
    gen.clock = lambda: t[0]
    gen.generate(None, {})
    t[0] = 0.875  # half way through the morph
    mid = gen.generate(None, {}).astype(int)
    half_way = np.roll(a, 4, axis=1).astype(int)
    crossfade = (a.astype(int) + b) // 2
    inner = (slice(8, 56), slice(20, 44))  # away from the wrapped edge
    assert np.abs(mid - half_way)[inner].mean() < 0.5 * np.abs(crossfade - half_way)[inner].mean()
    plain = ReplayGenerator((64, 64), folder=tmp_path, seconds=1.0, morph=False)
    plain.load()
    plain.clock = gen.clock
    t[0] = 0.0
    plain.generate(None, {})
    t[0] = 0.875
    assert np.abs(plain.generate(None, {}).astype(int) - crossfade).max() <= 1, "morph = false: a crossfade"


def test_replay_without_dreams_says_what_to_do(tmp_path):
    with pytest.raises(GeneratorUnusable, match=r"no dreams stored yet: .*run a show with --dreams there"):
        ReplayGenerator((64, 64), folder=tmp_path).load()


# -- explore ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["random", "walk", "evolve", "anneal", "cluster"])
def test_each_strategy_explores_and_writes_dreams(tmp_path, strategy):
    from vj.dreams.explore import explore

    lines: list[str] = []
    result = explore(
        "a neon city", 2.5, strategy, tmp_path, size=(64, 64), frames=6, keep=5, seed=3, progress=lines.append
    )
    assert result.dreams >= 8 and result.rate > 0
    store = DreamStore(tmp_path, create=False)
    rows = store.top(session=result.session)
    store.close()
    assert 1 <= len(rows) <= 5 == result.kept
    assert all(r.prompt.startswith("a neon city") and r.scene == "dream session" for r in rows)
    assert lines, "progress was printed"


def test_vj_dream_prints_progress_and_a_rate(tmp_path):
    out = vj("dream", "--prompt", "fire", "--seconds", "3", "--gen-size", "64x64", "--dreams", str(tmp_path),
             "--strategy", "random")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "dreams/s" in out.stdout.splitlines()[-1]


# -- a whole show ---------------------------------------------------------------------------------------------------
def test_a_show_leaves_scored_dreams_and_reports_them(tmp_path):
    report, _ = finish(start("run", "--headless", "--seconds", "6", "--no-osc", "--dreams", str(tmp_path),
                                   "--report", "-"))  # fmt: skip
    store = DreamStore(tmp_path, create=False)
    rows = store.top()
    store.close()
    assert len(rows) >= 1 and all(0 < d.score <= 1 for d in rows)
    assert report["dreams_saved"] == len(rows)
    assert {"sharpness", "contrast", "colourfulness", "novelty"} <= set(rows[0].scores)


def test_vj_dreams_list_export_prune(tmp_path):
    store = DreamStore(tmp_path / "d")
    for i in range(6):
        add(store, colourful(i), i / 10, prompt=f"dream {i}")
    store.close()

    def dreams(*args: str) -> subprocess.CompletedProcess:
        return vj("dreams", *args, "--dreams", str(tmp_path / "d"))

    listed = dreams("list", "--top", "3")
    assert listed.returncode == 0 and "dream 5" in listed.stdout and "dream 1" not in listed.stdout
    assert dreams("export", "--out", str(tmp_path / "x"), "--top", "2").returncode == 0
    assert len(list((tmp_path / "x").glob("*.png"))) == 2
    pruned = dreams("prune", "--keep", "2")
    assert pruned.returncode == 0 and "removed 4 dreams" in pruned.stdout
    empty = vj("dreams", "list", "--dreams", str(tmp_path / "none"))
    assert empty.returncode == 2 and "no dream store here" in empty.stderr

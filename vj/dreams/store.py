"""The dream store: a folder with ``dreams.sqlite`` and the images (and latents) it lists.

Crash safety: SQLite in WAL mode with ``synchronous = FULL``, one transaction per dream. A dream's image is
written under a temporary name, flushed to disk and renamed *before* its row is committed, so every committed row
has its picture; a crash between the two leaves at most an unlisted file, which ``prune`` removes. Removing works
the other way round: the row goes first, then the file.

One ``DreamStore`` per thread (SQLite connections stay on the thread that made them).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vj.errors import ConfigError

DB = "dreams.sqlite"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS dreams (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    session TEXT NOT NULL,
    prompt TEXT NOT NULL,
    seed INTEGER NOT NULL,
    params TEXT NOT NULL,
    score REAL NOT NULL,
    scores TEXT NOT NULL,
    scene TEXT,
    generator TEXT NOT NULL,
    image TEXT NOT NULL,
    latent TEXT,
    saved INTEGER NOT NULL DEFAULT 0,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    features BLOB
);
CREATE INDEX IF NOT EXISTS dreams_rank ON dreams (session, saved, score);
"""


def default_folder() -> Path:
    """``$XDG_DATA_HOME/vj/dreams``, usually ``~/.local/share/vj/dreams``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "vj" / "dreams"


def new_session() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class Dream:
    id: int
    created: float
    session: str
    prompt: str
    seed: int
    params: dict[str, Any]
    score: float
    scores: dict[str, Any]
    scene: str | None
    generator: str
    image: str  # file name inside the folder
    latent: str | None
    saved: bool
    width: int
    height: int
    features: np.ndarray | None


def _row(r: sqlite3.Row) -> Dream:
    feats = np.frombuffer(r["features"], np.float32).copy() if r["features"] is not None else None
    return Dream(
        r["id"],
        r["created"],
        r["session"],
        r["prompt"],
        r["seed"],
        json.loads(r["params"]),
        r["score"],
        json.loads(r["scores"]),
        r["scene"],
        r["generator"],
        r["image"],
        r["latent"],
        bool(r["saved"]),
        r["width"],
        r["height"],
        feats,
    )


def _durable_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it is on disk, whole, before this returns."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself
    finally:
        os.close(fd)


class DreamStore:
    def __init__(self, folder: Path | str, *, create: bool = True) -> None:
        self.folder = Path(folder)
        path = self.folder / DB
        if not create and not path.is_file():
            raise ConfigError("no dream store here", file=str(self.folder), fix="run a show with --dreams, or vj dream")
        try:
            (self.folder / "images").mkdir(parents=True, exist_ok=True)
            (self.folder / "latents").mkdir(exist_ok=True)
            self.db = sqlite3.connect(path, timeout=10)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = FULL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(f"made by a newer vj (schema {version})", file=str(path), fix="update vj")
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.db.commit()
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cannot open the dream store ({e})", file=str(path)) from None

    def close(self) -> None:
        self.db.close()

    # -- writing ---------------------------------------------------------------------------------------------------
    def add(
        self,
        image: np.ndarray,
        *,
        session: str,
        prompt: str,
        seed: int,
        params: dict[str, Any],
        score: float,
        scores: dict[str, Any],
        generator: str,
        scene: str | None = None,
        saved: bool = False,
        latent: np.ndarray | None = None,
        features: np.ndarray | None = None,
    ) -> Dream:
        """Keep one dream: its files first, then its row, committed before this returns."""
        created = time.time()
        stem = f"{session}-{int(created * 1000) % 10**9:09d}-{secrets.token_hex(3)}"
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError("could not encode the image")
        image_name = f"images/{stem}.png"
        _durable_write(self.folder / image_name, png.tobytes())
        latent_name = None
        if latent is not None:
            latent_name = f"latents/{stem}.npy"
            import io

            buf = io.BytesIO()
            np.save(buf, np.asarray(latent))
            _durable_write(self.folder / latent_name, buf.getvalue())
        h, w = image.shape[:2]
        with self.db:
            cur = self.db.execute(
                "INSERT INTO dreams (created, session, prompt, seed, params, score, scores, scene, generator, image,"
                " latent, saved, width, height, features) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    created,
                    session,
                    prompt,
                    int(seed),
                    json.dumps(params, default=str),
                    float(score),
                    json.dumps(scores),
                    scene,
                    generator,
                    image_name,
                    latent_name,
                    int(saved),
                    w,
                    h,
                    None if features is None else np.asarray(features, np.float32).tobytes(),
                ),
            )
        row = self.get(int(cur.lastrowid or 0))
        assert row is not None
        return row

    def remove(self, dreams: Iterable[Dream]) -> int:
        """Rows first (one transaction), then their files."""
        dreams = list(dreams)
        if not dreams:
            return 0
        with self.db:
            self.db.executemany("DELETE FROM dreams WHERE id = ?", [(d.id,) for d in dreams])
        for d in dreams:
            for name in (d.image, d.latent):
                if name:
                    (self.folder / name).unlink(missing_ok=True)
        return len(dreams)

    def evict(self, session: str, keep: int) -> list[Dream]:
        """Drop this session's dreams beyond its ``keep`` best; saved ones always stay."""
        rows = self.db.execute(
            "SELECT * FROM dreams WHERE session = ? AND saved = 0 ORDER BY score DESC, id ASC LIMIT -1 OFFSET ?",
            (session, keep),
        ).fetchall()
        gone = [_row(r) for r in rows]
        self.remove(gone)
        return gone

    def prune(self, keep: int) -> tuple[int, int]:
        """Keep the ``keep`` best dreams of all sessions and every saved one; remove unlisted files.
        Returns (dreams removed, files removed)."""
        rows = self.db.execute(
            "SELECT * FROM dreams WHERE saved = 0 ORDER BY score DESC, id ASC LIMIT -1 OFFSET ?", (keep,)
        ).fetchall()
        removed = self.remove(_row(r) for r in rows)
        return removed, self.remove_orphans()

    def remove_orphans(self) -> int:
        listed = {name for (name,) in self.db.execute("SELECT image FROM dreams UNION SELECT latent FROM dreams")}
        count = 0
        for sub in ("images", "latents"):
            for path in (self.folder / sub).iterdir():
                if f"{sub}/{path.name}" not in listed:
                    path.unlink(missing_ok=True)
                    count += 1
        return count

    # -- reading -----------------------------------------------------------------------------------------------------
    def get(self, dream_id: int) -> Dream | None:
        r = self.db.execute("SELECT * FROM dreams WHERE id = ?", (dream_id,)).fetchone()
        return _row(r) if r else None

    def top(self, n: int | None = None, session: str | None = None, saved: bool | None = None) -> list[Dream]:
        where: list[str] = []
        args: list[Any] = []
        if session is not None:
            where.append("session = ?")
            args.append(session)
        if saved is not None:
            where.append("saved = ?")
            args.append(int(saved))
        sql = "SELECT * FROM dreams" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY score DESC, id ASC" + (f" LIMIT {int(n)}" if n is not None else "")
        return [_row(r) for r in self.db.execute(sql, args)]

    def count(self, session: str | None = None) -> int:
        if session is None:
            return int(self.db.execute("SELECT COUNT(*) FROM dreams").fetchone()[0])
        return int(self.db.execute("SELECT COUNT(*) FROM dreams WHERE session = ?", (session,)).fetchone()[0])

    def image(self, dream: Dream) -> np.ndarray:
        """The dream's picture, RGB."""
        img = cv2.imread(str(self.folder / dream.image), cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigError(
                "image missing or unreadable",
                file=str(self.folder / dream.image),
                fix="run `vj dreams prune` to tidy the store",
            )
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def latent(self, dream: Dream) -> np.ndarray | None:
        return np.load(self.folder / dream.latent) if dream.latent else None

    def integrity(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    def export(self, dreams: list[Dream], out: Path) -> list[Path]:
        """Copy the images to ``out`` with readable names, and write ``dreams.json`` describing them."""
        out.mkdir(parents=True, exist_ok=True)
        written, index = [], []
        for rank, d in enumerate(dreams, 1):
            slug = re.sub(r"[^a-z0-9]+", "-", d.prompt.lower()).strip("-")[:40] or "dream"
            target = out / f"{rank:03d}-{d.score:.3f}-{slug}.png"
            shutil.copyfile(self.folder / d.image, target)
            written.append(target)
            index.append(
                {
                    "file": target.name,
                    "id": d.id,
                    "score": d.score,
                    "scores": d.scores,
                    "prompt": d.prompt,
                    "seed": d.seed,
                    "scene": d.scene,
                    "generator": d.generator,
                    "saved": d.saved,
                    "created": d.created,
                    "params": d.params,
                }
            )
        (out / "dreams.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
        return written

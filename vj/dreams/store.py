"""The dream store: a folder with ``dreams.sqlite`` and the images (and latents) it lists.

Crash safety: SQLite in WAL mode with ``synchronous = FULL``, one transaction per dream. A dream's image is
written under a temporary name, flushed to disk and renamed *before* its row is committed, so every committed row
has its picture; a crash between the two leaves at most an unlisted file, which ``prune`` removes. Removing works
the other way round: the row goes first, then the file.

Failures: a write that fails (a full disk, above all) removes what it had written of that dream, temporary files
included, so the store is left as it was and opens again. Opening reads before it writes (the schema is created
or migrated only when it needs to be), so a store on a full disk still opens for listing and replay. A damaged
database (``StoreBroken``) is never moved or repaired behind the user's back: its images live beside it, and a
fresh database in the same folder would take them for strays (``prune`` deletes strays), while ``sqlite3 .recover``
can often rescue the rows. The message says to move the whole folder aside instead.

One ``DreamStore`` per thread (SQLite connections stay on the thread that made them).
"""

from __future__ import annotations

import contextlib
import errno
import io
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
    features BLOB,
    worker TEXT
);
CREATE INDEX IF NOT EXISTS dreams_rank ON dreams (session, saved, score);
"""
# Columns added since the first stores were made: (name, definition for ALTER TABLE ADD COLUMN).
# ``worker``: which worker of a clustered dream session made the dream (NULL: a show or a single-process session).
MIGRATIONS = (("generator", "generator TEXT NOT NULL DEFAULT 'unknown'"), ("worker", "worker TEXT"))

# SQLite's primary result codes that say something about the store itself.
SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 11, 13, 26


class StoreBroken(ConfigError):
    """The store's database is damaged: nothing can be read or written until it is moved aside."""


def trouble(e: BaseException) -> str | None:
    """What a failed store operation says about the store: ``"broken"`` (the database is damaged), ``"full"``
    (no space left on the disk), or None (anything else: worth counting, not worth giving up for)."""
    if isinstance(e, StoreBroken):
        return "broken"
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "full"
    if isinstance(e, sqlite3.Error):
        code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
        if code in (SQLITE_CORRUPT, SQLITE_NOTADB) or "malformed" in str(e) or "not a database" in str(e):
            return "broken"
        if code == SQLITE_FULL or "disk is full" in str(e):
            return "full"
    return None


def broken(path: Path, detail: str) -> StoreBroken:
    aside = f"{path.parent}.broken-{time.strftime('%Y%m%d-%H%M%S')}"
    return StoreBroken(
        f"the dream store is damaged ({detail})",
        file=str(path),
        fix=f"move the folder aside to start a fresh one: mv {path.parent} {aside}; "
        f"`sqlite3 {aside}/{DB} .recover` may rescue its rows",
    )


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
    worker: str | None = None

    def line(self) -> str:
        """One line of ``vj dreams list``: id, * when saved by hand, score, time, scene, generator, prompt, and
        the worker in brackets for a dream made on a cluster."""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        mark = "*" if self.saved else " "
        scene, gen = self.scene or "-", self.generator
        by = f"  [{self.worker}]" if self.worker else ""
        return f"{self.id:6d} {mark} {self.score:.3f}  {when}  {scene:<16.16}  {gen:<8.8}  {self.prompt[:60]}{by}"


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
        r["worker"],
    )


def _durable_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it is on disk, whole, before this returns. On failure nothing is left."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written file would only take space a full disk does not have
        raise
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
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cannot open the dream store ({e})", file=str(path)) from None
        try:
            self._prepare(path)
        except ConfigError:
            self.db.close()
            raise
        except (OSError, sqlite3.Error) as e:
            self.db.close()
            if trouble(e) == "broken":
                raise broken(path, str(e)) from None
            raise ConfigError(f"cannot open the dream store ({e})", file=str(path)) from None

    def _prepare(self, path: Path) -> None:
        """Check the database and bring its schema up to date, writing only what has to change."""
        self.db.row_factory = sqlite3.Row
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        # A page damaged in the middle would otherwise only show up at the first write, minutes into a show.
        check = self.db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if check != "ok":
            raise broken(path, "quick_check: " + str(check).splitlines()[-1].strip())
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(f"made by a newer vj (schema {version})", file=str(path), fix="update vj")
        columns = {r["name"] for r in self.db.execute("PRAGMA table_info(dreams)")}
        if not columns:
            self.db.executescript(SCHEMA)
        for name, definition in MIGRATIONS:
            if columns and name not in columns:
                self.db.execute(f"ALTER TABLE dreams ADD COLUMN {definition}")
        if version != SCHEMA_VERSION:
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.db.commit()

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
        worker: str | None = None,
    ) -> Dream:
        """Keep one dream: its files first, then its row, committed before this returns. When any of it fails,
        what was written of this dream is removed again."""
        created = time.time()
        stem = f"{session}-{int(created * 1000) % 10**9:09d}-{secrets.token_hex(3)}"
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError("could not encode the image")
        image_name = f"images/{stem}.png"
        latent_name = None if latent is None else f"latents/{stem}.npy"
        h, w = image.shape[:2]
        row = (
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
            worker,
        )
        try:
            _durable_write(self.folder / image_name, png.tobytes())
            if latent is not None and latent_name is not None:
                buf = io.BytesIO()
                np.save(buf, np.asarray(latent))
                _durable_write(self.folder / latent_name, buf.getvalue())
            with self.db:
                cur = self.db.execute(
                    "INSERT INTO dreams (created, session, prompt, seed, params, score, scores, scene, generator,"
                    " image, latent, saved, width, height, features, worker)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    row,
                )
        except BaseException:
            # No row, so no files: a dream that did not make it leaves nothing behind to fill the disk. A commit
            # that failed may leave its transaction open; a later commit must not list files removed here.
            with contextlib.suppress(sqlite3.Error):
                self.db.rollback()
            for name in (image_name, latent_name):
                if name:
                    (self.folder / name).unlink(missing_ok=True)
            raise
        dream = self.get(int(cur.lastrowid or 0))
        assert dream is not None
        return dream

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

    def evict_saved(self, session: str, keep: int) -> list[Dream]:
        """Drop this session's oldest hand-saved dreams beyond its ``keep`` newest: a save button held down must
        not fill the disk."""
        rows = self.db.execute(
            "SELECT * FROM dreams WHERE session = ? AND saved = 1 ORDER BY created DESC, id DESC LIMIT -1 OFFSET ?",
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

    def top(
        self,
        n: int | None = None,
        session: str | None = None,
        saved: bool | None = None,
        exclude: Iterable[str] = (),
    ) -> list[Dream]:
        """The best dreams first, each with the generator that made it; ``exclude``: generators to leave out."""
        where: list[str] = []
        args: list[Any] = []
        exclude = list(exclude)
        if exclude:
            where.append(f"generator NOT IN ({','.join('?' * len(exclude))})")
            args.extend(exclude)
        if session is not None:
            where.append("session = ?")
            args.append(session)
        if saved is not None:
            where.append("saved = ?")
            args.append(int(saved))
        sql = "SELECT * FROM dreams" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY score DESC, id ASC" + (f" LIMIT {int(n)}" if n is not None else "")
        return [_row(r) for r in self.db.execute(sql, args)]

    def generators(self) -> set[str]:
        """The names of the generators that made the stored dreams."""
        return {name for (name,) in self.db.execute("SELECT DISTINCT generator FROM dreams")}

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
                    "worker": d.worker,
                    "saved": d.saved,
                    "created": d.created,
                    "params": d.params,
                }
            )
        (out / "dreams.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
        return written

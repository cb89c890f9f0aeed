"""From a prompt's words to motif families: the dream generator's vocabulary, read from ``data/motifs.toml``.

A family is a shape of dream (how the picture copies itself, what it seeds, a symmetry); the file says which words
call which family. A prompt is a mix of families, one share per word that calls one; a word no family knows picks
one from its letters (stable across runs), so every prompt has a shape and the same prompt always looks the same.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from vj.gen.look import words
from vj.schema import Table, check
from vj.tomlfile import read_toml

VOCABULARY = Path(__file__).resolve().parent.parent / "data" / "motifs.toml"

Sprites = Literal["fall", "grow", "grid", "bubbles", "caustics", "rise", "stars", "shards", "petals"]
Map = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=4, max_length=4)]


class Family(Table):
    words: list[str] = Field(min_length=1)
    sprites: Sprites = Field(json_schema_extra={"what": "sprites"})
    maps: list[Map] = Field(
        min_length=1, max_length=6, json_schema_extra={"expected": "one to six maps [scale, turn, x, y]"}
    )
    symmetry: int = Field(0, ge=0, le=16)


class Vocabulary(Table):
    families: dict[str, Family] = Field(min_length=1)


@functools.lru_cache(maxsize=4)
def vocabulary(path: Path = VOCABULARY) -> dict[str, Family]:
    return check(Vocabulary, read_toml(path), str(path)).families


@functools.lru_cache(maxsize=64)
def families_for(prompt: str, path: Path = VOCABULARY) -> dict[str, float]:
    """Each family's share of ``prompt`` (the shares sum to 1; families the prompt does not call are left out)."""
    known = vocabulary(path)
    by_word = {w: name for name, fam in known.items() for w in fam.words}
    names = sorted(known)
    shares: dict[str, float] = {}
    ws = words(prompt) or ["dream"]
    for w in ws[:12]:
        name = by_word.get(w) or (by_word.get(w[:-1]) if w.endswith("s") else None)
        weight = 1.0
        if name is None:
            # Not in the vocabulary: a stable family from the word's letters, at a smaller share than a known word.
            name = names[hashlib.blake2b(w.encode(), digest_size=4).digest()[0] % len(names)]
            weight = 0.35
        shares[name] = shares.get(name, 0.0) + weight
    total = sum(shares.values())
    return {k: v / total for k, v in sorted(shares.items())}

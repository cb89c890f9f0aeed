"""From a prompt's words to a look: a palette and a mix of motifs.

The sketch generator has no language model, so it reads a prompt as a bag of words. Each word it knows carries a
colour and motif weights (``LEXICON``); any other word gets a stable colour and motif mix from its hash, so every
word counts and the same prompt always looks the same. A prompt's look is the blend of its words' looks: prompts
that share words share colours and motifs, prompts that share none look different.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import re
from dataclasses import dataclass

import cv2
import numpy as np

MOTIFS = ("waves", "rings", "spiral", "cells", "flow", "petals")

# word -> (hue 0..1, saturation 0..1, value 0..1, {motif: weight})
_W, _R, _S, _C, _F, _P = MOTIFS
LEXICON: dict[str, tuple[float, float, float, dict[str, float]]] = {
    # colours
    "red": (0.0, 0.9, 0.85, {}),
    "crimson": (0.97, 0.85, 0.6, {}),
    "orange": (0.07, 0.9, 0.95, {}),
    "amber": (0.09, 0.9, 0.9, {}),
    "gold": (0.12, 0.85, 0.95, {_R: 0.5}),
    "golden": (0.12, 0.85, 0.95, {_R: 0.5}),
    "yellow": (0.15, 0.85, 1.0, {}),
    "lime": (0.25, 0.85, 0.9, {}),
    "green": (0.33, 0.8, 0.75, {}),
    "emerald": (0.4, 0.85, 0.7, {_C: 0.5}),
    "teal": (0.48, 0.8, 0.65, {}),
    "cyan": (0.5, 0.8, 0.95, {}),
    "aqua": (0.5, 0.7, 0.95, {_W: 0.5}),
    "azure": (0.58, 0.7, 0.95, {}),
    "blue": (0.62, 0.85, 0.85, {}),
    "navy": (0.64, 0.9, 0.35, {}),
    "indigo": (0.7, 0.85, 0.5, {}),
    "violet": (0.76, 0.7, 0.85, {}),
    "purple": (0.8, 0.8, 0.7, {}),
    "magenta": (0.86, 0.9, 0.95, {}),
    "pink": (0.92, 0.55, 1.0, {}),
    "rose": (0.95, 0.6, 0.95, {_P: 1.0}),
    "white": (0.1, 0.05, 1.0, {}),
    "silver": (0.6, 0.08, 0.8, {}),
    "black": (0.65, 0.3, 0.08, {}),
    # things and places
    "fire": (0.05, 0.95, 1.0, {_F: 1.0}),
    "flame": (0.06, 0.95, 1.0, {_F: 1.0}),
    "flames": (0.06, 0.95, 1.0, {_F: 1.0}),
    "lava": (0.02, 1.0, 0.9, {_F: 0.8, _C: 0.4}),
    "magma": (0.03, 1.0, 0.85, {_F: 0.8, _C: 0.4}),
    "volcano": (0.03, 0.95, 0.8, {_F: 0.8}),
    "burning": (0.06, 0.95, 1.0, {_F: 1.0}),
    "inferno": (0.04, 1.0, 1.0, {_F: 1.0}),
    "ember": (0.05, 0.9, 0.9, {_F: 0.6}),
    "blaze": (0.07, 0.95, 1.0, {_F: 1.0}),
    "sun": (0.11, 0.9, 1.0, {_R: 1.0}),
    "sunset": (0.04, 0.85, 0.95, {_W: 0.5, _F: 0.3}),
    "sunrise": (0.09, 0.75, 1.0, {_R: 0.6}),
    "ocean": (0.58, 0.85, 0.7, {_W: 1.0}),
    "sea": (0.55, 0.8, 0.7, {_W: 1.0}),
    "underwater": (0.52, 0.85, 0.6, {_W: 0.8, _F: 0.4}),
    "water": (0.56, 0.7, 0.8, {_W: 1.0}),
    "rain": (0.6, 0.45, 0.65, {_W: 0.6, _F: 0.5}),
    "river": (0.55, 0.6, 0.7, {_W: 0.9, _F: 0.4}),
    "wave": (0.57, 0.75, 0.85, {_W: 1.0}),
    "waves": (0.57, 0.75, 0.85, {_W: 1.0}),
    "ice": (0.53, 0.35, 0.95, {_C: 0.8}),
    "snow": (0.58, 0.1, 1.0, {_F: 0.5}),
    "forest": (0.3, 0.75, 0.55, {_C: 0.6, _F: 0.5}),
    "tree": (0.28, 0.7, 0.55, {_C: 0.5}),
    "trees": (0.28, 0.7, 0.55, {_C: 0.5}),
    "jungle": (0.32, 0.9, 0.5, {_C: 0.6, _F: 0.5}),
    "leaf": (0.27, 0.8, 0.7, {_P: 0.5}),
    "leaves": (0.27, 0.8, 0.7, {_P: 0.5}),
    "moss": (0.24, 0.7, 0.5, {_C: 0.6}),
    "garden": (0.3, 0.6, 0.75, {_P: 0.8}),
    "flower": (0.9, 0.6, 0.95, {_P: 1.0}),
    "flowers": (0.9, 0.6, 0.95, {_P: 1.0}),
    "bloom": (0.88, 0.55, 0.95, {_P: 1.0}),
    "mandala": (0.78, 0.7, 0.9, {_P: 1.0, _R: 0.6}),
    "desert": (0.09, 0.55, 0.85, {_W: 0.6}),
    "sand": (0.1, 0.45, 0.85, {_W: 0.6}),
    "mountain": (0.6, 0.25, 0.6, {_F: 0.4}),
    "mountains": (0.6, 0.25, 0.6, {_F: 0.4}),
    "city": (0.75, 0.6, 0.6, {_C: 1.0}),
    "neon": (0.87, 1.0, 1.0, {_C: 0.6, _R: 0.3}),
    "cyberpunk": (0.85, 0.95, 0.9, {_C: 0.8}),
    "circuit": (0.45, 0.9, 0.8, {_C: 1.0}),
    "glass": (0.52, 0.2, 0.95, {_C: 0.9}),
    "crystal": (0.55, 0.35, 0.95, {_C: 1.0}),
    "crystals": (0.55, 0.35, 0.95, {_C: 1.0}),
    "diamond": (0.55, 0.15, 1.0, {_C: 0.9}),
    "coral": (0.02, 0.6, 0.95, {_C: 0.6, _P: 0.4}),
    "reef": (0.48, 0.7, 0.75, {_C: 0.6, _W: 0.4}),
    "cloud": (0.6, 0.12, 0.95, {_F: 1.0}),
    "clouds": (0.6, 0.12, 0.95, {_F: 1.0}),
    "smoke": (0.6, 0.08, 0.6, {_F: 1.0}),
    "fog": (0.58, 0.1, 0.75, {_F: 0.9}),
    "mist": (0.55, 0.12, 0.8, {_F: 0.9}),
    "storm": (0.63, 0.35, 0.45, {_S: 0.8, _F: 0.6}),
    "lightning": (0.62, 0.4, 1.0, {_F: 0.6}),
    "electric": (0.55, 0.8, 1.0, {_W: 0.5}),
    "galaxy": (0.75, 0.7, 0.6, {_S: 1.0}),
    "galaxies": (0.75, 0.7, 0.6, {_S: 1.0}),
    "nebula": (0.82, 0.65, 0.75, {_S: 0.7, _F: 0.7}),
    "nebulae": (0.82, 0.65, 0.75, {_S: 0.7, _F: 0.7}),
    "space": (0.68, 0.8, 0.3, {_S: 0.6}),
    "cosmic": (0.78, 0.75, 0.6, {_S: 0.8}),
    "stars": (0.62, 0.3, 1.0, {_S: 0.5}),
    "star": (0.62, 0.3, 1.0, {_R: 0.5}),
    "moon": (0.6, 0.15, 0.9, {_R: 0.8}),
    "night": (0.66, 0.8, 0.25, {}),
    "dark": (0.68, 0.6, 0.15, {}),
    "shadow": (0.68, 0.4, 0.2, {}),
    "void": (0.7, 0.5, 0.1, {_S: 0.4}),
    "spiral": (0.78, 0.6, 0.8, {_S: 1.0}),
    "vortex": (0.64, 0.7, 0.7, {_S: 1.0}),
    "tunnel": (0.7, 0.5, 0.6, {_R: 1.0}),
    "portal": (0.8, 0.8, 0.8, {_R: 1.0, _S: 0.4}),
    "eye": (0.55, 0.6, 0.7, {_R: 1.0}),
    "ripple": (0.55, 0.5, 0.85, {_R: 0.8, _W: 0.4}),
    "cells": (0.95, 0.5, 0.8, {_C: 1.0}),
    "honeycomb": (0.11, 0.85, 0.85, {_C: 1.0}),
    "candy": (0.93, 0.6, 1.0, {_S: 0.5}),
    "blood": (0.99, 0.95, 0.45, {_F: 0.5}),
    "dream": (0.76, 0.35, 0.9, {_F: 0.5}),
    "dreams": (0.76, 0.35, 0.9, {_F: 0.5}),
    "luminous": (0.14, 0.3, 1.0, {}),
    "glowing": (0.13, 0.5, 1.0, {}),
    "music": (0.8, 0.7, 0.9, {_W: 0.8, _R: 0.4}),
    "sound": (0.75, 0.6, 0.85, {_W: 0.8}),
}

STOPWORDS = frozenset(
    "a an the of in on at to and or with without from into over under by for is are be this that these those "  # noqa: SIM905
    "made full very some my your its it as like".split()
)

_WORD = re.compile(r"[a-z0-9']+")


def words(prompt: str) -> list[str]:
    """The prompt's meaningful words, lower case, in order."""
    return [w for w in _WORD.findall(prompt.lower()) if w not in STOPWORDS]


def _digest(text: str) -> bytes:
    # Python's hash() is salted per process; the look must be the same in every run.
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _word_entry(word: str) -> tuple[float, float, float, dict[str, float]]:
    if word in LEXICON:
        return LEXICON[word]
    if word.endswith("s") and word[:-1] in LEXICON:
        return LEXICON[word[:-1]]
    d = _digest(word)
    hue = d[0] / 256
    sat = 0.45 + 0.5 * d[1] / 255
    val = 0.55 + 0.45 * d[2] / 255
    motif = {MOTIFS[d[3] % len(MOTIFS)]: 0.6, MOTIFS[d[4] % len(MOTIFS)]: 0.3}
    return hue, sat, val, motif


@dataclass(frozen=True)
class Look:
    """What a prompt looks like: a cyclic 256-entry RGB palette and motif weights (sum 1)."""

    palette: np.ndarray  # (256, 3) float32, 0..255, from dark (entry 0) to bright (entry 255)
    motifs: dict[str, float]
    scale: float  # pattern scale, 0.5..1.5: how large the grown structures are


def blend_looks(a: Look, b: Look, t: float) -> Look:
    """The look ``t`` of the way from ``a`` to ``b``: a fader between two prompts."""
    t = min(1.0, max(0.0, t))
    motifs = {k: a.motifs[k] * (1 - t) + b.motifs[k] * t for k in MOTIFS}
    return Look(palette=a.palette * (1 - t) + b.palette * t, motifs=motifs, scale=a.scale * (1 - t) + b.scale * t)


@functools.lru_cache(maxsize=64)
def look_for(prompt: str) -> Look:
    ws = words(prompt) or ["dream"]
    entries = [_word_entry(w) for w in ws[:8]]
    motifs = dict.fromkeys(MOTIFS, 0.05)
    for _h, _s, _v, m in entries:
        for k, v in m.items():
            motifs[k] += v
    total = sum(motifs.values())
    motifs = {k: v / total for k, v in motifs.items()}
    anchors = [colorsys.hsv_to_rgb(h, s, v) for h, s, v, _ in entries]
    # A dark and a bright partner of the strongest colour give every palette depth and light.
    h0, s0, _v0, _ = max(entries, key=lambda e: e[1] * e[2])
    anchors.append(colorsys.hsv_to_rgb(h0, min(1.0, s0 + 0.2), 0.12))
    anchors.append(colorsys.hsv_to_rgb((h0 + 0.08) % 1.0, s0 * 0.35, 1.0))
    return Look(palette=_tone_neutral_palette(anchors), motifs=motifs, scale=0.6 + 1.4 * _digest(" ".join(ws))[5] / 255)


def _tone_neutral_palette(anchors: list[tuple[float, float, float]]) -> np.ndarray:
    """A 256-entry palette whose entry i has luminance i: the anchors set the hue and saturation of each tone.

    The palette then never brightens or darkens the frame it colours, so the feedback loop's tone stays where the
    structure step puts it (a palette of light colours would otherwise wash the dream out to white within seconds).
    """
    rgb = np.clip(np.asarray(anchors, np.float32) * 255, 0, 255).astype(np.uint8)[None]
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[0].astype(np.float32)
    ycc = ycc[np.argsort(ycc[:, 0], kind="stable")]
    span = max(1.0, float(ycc[-1, 0] - ycc[0, 0]))
    pos = (ycc[:, 0] - ycc[0, 0]) / span * 255
    ramp = np.arange(256, dtype=np.float32)
    out = np.stack([ramp, np.interp(ramp, pos, ycc[:, 1]), np.interp(ramp, pos, ycc[:, 2])], axis=1)
    # Chroma fades toward the ends of the ramp: pure black and white cannot carry colour.
    fade = np.clip(np.minimum(ramp, 255 - ramp) / 40.0, 0.0, 1.0)[:, None]
    out[:, 1:] = 128 + (out[:, 1:] - 128) * fade
    return cv2.cvtColor(out.astype(np.uint8)[None], cv2.COLOR_YCrCb2RGB)[0].astype(np.float32)

"""Dream sessions: explore seeds and prompt variations in the background, keep the best in the dream store.

``vj dream --prompt ... --minutes M --strategy S`` renders short dreams at low resolution with a generator (a
fixed number of feedback frames from nothing, with gentle motion), scores each like the show does, and keeps the
session's best in the same store the show and the replay scene use. A dream is a genome: seed, strength, chaos,
zoom, rotation and a few prompt modifiers. Strategies:

    random   every dream drawn afresh
    walk     small steps from the current dream; a better one becomes the current
    evolve   a population of 8: the best half survives, crossed and mutated into the next generation
    anneal   like walk, but a worse step is taken with a chance that shrinks as the temperature cools
    cluster  favours dreams unlike those already found: novelty against cluster centres counts double
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vj.dreams import STRATEGIES
from vj.dreams.keeper import keep_if_good, makes_dreams
from vj.dreams.store import DreamStore, new_session
from vj.errors import ConfigError
from vj.frame import motion
from vj.frame.aesthetics import aesthetics, features, novelty, score
from vj.gen import base
from vj.params import ParamStore

MODIFIERS = (
    "at night",
    "in gold",
    "made of glass",
    "underwater",
    "on fire",
    "in the rain",
    "covered in moss",
    "in neon light",
    "in a storm",
    "in mist",
    "in crystal",
    "of clouds",
    "in violet",
    "in ice",
    "at dawn",
)


@dataclass(frozen=True)
class Genome:
    seed: int
    strength: float
    chaos: float
    zoom: float
    rotate: float
    modifiers: tuple[str, ...] = ()

    def prompt(self, base_prompt: str) -> str:
        return " ".join([base_prompt, *self.modifiers])


def random_genome(rng: random.Random) -> Genome:
    return Genome(
        seed=rng.randrange(2**31),
        strength=rng.uniform(0.25, 0.8),
        chaos=rng.uniform(0.0, 0.9),
        zoom=rng.uniform(-0.3, 0.4),
        rotate=rng.uniform(-0.2, 0.2),
        modifiers=tuple(rng.sample(MODIFIERS, rng.randint(0, 2))),
    )


def mutate(g: Genome, rng: random.Random, amount: float = 1.0) -> Genome:
    def nudge(x: float, lo: float, hi: float, width: float) -> float:
        return min(hi, max(lo, x + rng.gauss(0, width * amount)))

    mods = list(g.modifiers)
    if rng.random() < 0.3 * amount:
        if mods and rng.random() < 0.5:
            mods.pop(rng.randrange(len(mods)))
        elif len(mods) < 3:
            mods.append(rng.choice([m for m in MODIFIERS if m not in mods]))
    return Genome(
        seed=g.seed + rng.randint(1, 97) if rng.random() < 0.5 * amount else g.seed,
        strength=nudge(g.strength, 0.1, 0.9, 0.1),
        chaos=nudge(g.chaos, 0.0, 1.0, 0.15),
        zoom=nudge(g.zoom, -0.5, 0.6, 0.1),
        rotate=nudge(g.rotate, -0.4, 0.4, 0.06),
        modifiers=tuple(mods),
    )


def cross(a: Genome, b: Genome, rng: random.Random) -> Genome:
    pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731 - a one-line coin
    return Genome(
        pick(a.seed, b.seed),
        pick(a.strength, b.strength),
        pick(a.chaos, b.chaos),
        pick(a.zoom, b.zoom),
        pick(a.rotate, b.rotate),
        pick(a.modifiers, b.modifiers),
    )


class Renderer:
    """Dreams a genome into one picture with a generator, reused from one dream to the next."""

    def __init__(self, generator: str, size: tuple[int, int], frames: int, base_prompt: str, **options: Any) -> None:
        self.gen = base.factory(generator, size, **options)()
        self.generator, self.frames, self.base_prompt = generator, frames, base_prompt
        self.defaults = ParamStore().values()

    def params(self, g: Genome) -> dict[str, Any]:
        return {
            **self.defaults,
            "prompt": g.prompt(self.base_prompt),
            "seed": g.seed,
            "strength": g.strength,
            "chaos": g.chaos,
            "zoom": g.zoom,
            "rotate": g.rotate,
        }

    def render(self, g: Genome) -> tuple[np.ndarray, dict[str, Any], Any]:
        params = self.params(g)
        frame = self.gen.generate(None, params)
        cam = prev = motion.new_camera()
        for _ in range(self.frames):
            cam = motion.advance(cam, params, 1 / 15)
            frame = self.gen.generate(self.gen.warp(frame, cam - prev), params)
            prev = cam
        return self.gen.to_display(frame), params, self.gen.latent(frame)

    def close(self) -> None:
        self.gen.close()


@dataclass
class Result:
    session: str
    dreams: int
    kept: int
    seconds: float
    best: float

    @property
    def rate(self) -> float:
        return self.dreams / self.seconds if self.seconds > 0 else 0.0


def explore(
    prompt: str,
    seconds: float,
    strategy: str,
    folder: Path,
    *,
    generator: str = "sketch",
    generator_options: dict[str, Any] | None = None,
    size: tuple[int, int] = (256, 256),
    frames: int = 24,
    keep: int = 50,
    seed: int | None = None,
    clip: Any = None,
    progress: Callable[[str], None] = print,
) -> Result:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    if not makes_dreams(generator):  # the same rule as the show's keeper: no test patterns or replays in the store
        raise ConfigError(f"{generator} makes no dreams worth keeping", key="--generator", fix="use sketch or lcm")
    rng = random.Random(seed)
    store = DreamStore(folder)
    session = new_session()
    renderer = Renderer(generator, size, frames, prompt, **(generator_options or {}))
    kept: list[np.ndarray] = []
    centres: list[np.ndarray] = []
    start = time.monotonic()
    last_print = start
    count, best = 0, 0.0
    current: tuple[Genome, float] | None = None
    population: list[tuple[Genome, float]] = []

    def evaluate(g: Genome) -> float:
        nonlocal count, best
        image, params, latent = renderer.render(g)
        count += 1
        feats = features(image)
        clip_score = clip.score(image, str(params["prompt"])) if clip is not None else None
        s = score(aesthetics(image), novelty(feats, kept), clip_score)
        fitness = s.total
        if strategy == "cluster":  # unlike what was found so far, by cluster: counts double
            fitness += 0.25 * novelty(feats, centres)
            _update_centres(centres, feats)
        keep_if_good(
            store,
            session,
            keep,
            image,
            params=params,
            generator=generator,
            kept=kept,
            scene="dream session",
            scored=(s, feats),
            latent=latent,
        )
        best = max(best, s.total)
        return fitness

    try:
        while time.monotonic() - start < seconds:
            elapsed = time.monotonic() - start
            if strategy in ("random", "cluster"):
                evaluate(random_genome(rng))
            elif strategy in ("walk", "anneal"):
                if current is None:
                    g = random_genome(rng)
                    current = (g, evaluate(g))
                    continue
                temperature = 0.15 * (1 - elapsed / seconds) + 0.005
                candidate = mutate(current[0], rng, 1.0 if strategy == "walk" else 0.5 + 2 * temperature)
                f = evaluate(candidate)
                better = f > current[1]
                if better or (strategy == "anneal" and rng.random() < math.exp((f - current[1]) / temperature)):
                    current = (candidate, f)
            else:  # evolve
                if len(population) < 8:
                    g = random_genome(rng)
                    population.append((g, evaluate(g)))
                    continue
                population.sort(key=lambda p: -p[1])
                parents = population[:4]
                child = mutate(cross(rng.choice(parents)[0], rng.choice(parents)[0], rng), rng, 0.7)
                population = [*parents, *population[4:7], (child, evaluate(child))]
            now = time.monotonic()
            if now - last_print >= 2.0:
                last_print = now
                progress(
                    f"{now - start:6.1f} s  {count:5d} dreams  {count / (now - start):5.2f}/s  "
                    f"best {best:.3f}  kept {store.count(session)}"
                )
    finally:
        renderer.close()
        kept_rows = store.count(session)
        store.close()
    elapsed = time.monotonic() - start
    return Result(session, count, kept_rows, elapsed, best)


def _update_centres(centres: list[np.ndarray], feats: np.ndarray, k: int = 6, rate: float = 0.2) -> None:
    """Online k-means on unit vectors: pull the nearest centre toward the new point, or start a new centre."""
    if len(centres) < k:
        centres.append(feats.copy())
        return
    i = int(np.argmax([float(np.dot(c, feats)) for c in centres]))
    c = centres[i] * (1 - rate) + feats * rate
    centres[i] = c / (np.linalg.norm(c) + 1e-9)

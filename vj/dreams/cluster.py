"""Dream sessions on a Ray cluster: the workers render and score, the head proposes and keeps.

``vj dream --cluster ADDRESS --workers N`` runs the exploration of ``vj.dreams.explore`` on N Ray actors, one per
worker slot, each holding a ``Renderer`` (its generator loaded once). The head, the process that runs the command:

    proposes  every genome, from one population shared by all workers (the strategies of a single-process session,
              asked whenever a worker is free and told each result as it comes back), keeping ``IN_FLIGHT`` dreams
              queued on every worker so none waits for the head
    scores    novelty against the dreams kept so far (the workers measure aesthetics, features and CLIP's opinion)
    writes    each dream to ``DIR/dreams.sqlite``, with the worker that made it: the head is the store's one
              writer, so a worker that dies takes nothing committed with it

A worker whose process dies is started again by Ray (up to ``RESTARTS`` times) and the dreams it was rendering are
rendered again on the new process; the head sees a new process id on that slot, counts the restart and says so.
A slot whose restarts are spent is given up and the others carry on.

``ADDRESS`` "local" starts Ray on this machine for this session only, every Ray process listening on loopback
alone; anything else goes to ``ray.init(address=...)`` ("auto", "HOST:6379", "ray://HOST:10001"), and every node
of that cluster needs vj installed with its generators.

With ``count`` the session stops once that many of its dreams are in the store: every scored dream is written, and
the session keeps its best ``keep`` only at the end. Without it (a time limit) a dream is written only while it is
among the session's best ``keep``, as in a single-process session.

``VJ_DREAM_CRASH=SLOT:K`` makes the worker in SLOT end its process (exit status 1) when asked for its dream after
the K-th, once: a real worker death, for checking that a session survives one.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vj.dreams import ALIASES, STRATEGIES
from vj.dreams.explore import Genome, Renderer, Result, _update_centres, cross, mutate, random_genome
from vj.dreams.keeper import makes_dreams
from vj.dreams.store import DreamStore, new_session
from vj.errors import ConfigError
from vj.frame.aesthetics import Aesthetics, Score, aesthetics, features, novelty, score
from vj.gen.base import find

log = logging.getLogger(__name__)

INSTALL = "pip install 'vj[cluster]'"
RESTARTS = 3  # times Ray starts a dead worker again (retrying its dreams) before its slot is given up
IN_FLIGHT = 2  # dreams queued on each worker: the next one is ready to start while the head writes the last
POPULATION = 8  # evolve: as in a single-process session
FAILURES = 20  # dreams failing in a row on the workers (a generator error) before the session gives up
PROGRESS_EVERY = 2.0  # seconds between progress lines
ROLL_CALL = 30.0  # seconds the head waits at the end for every worker's process id (one may be restarting)
OBJECT_STORE = 256 * 2**20  # bytes: results are small pictures; Ray's default would claim 30% of the memory
CRASH_ENV = "VJ_DREAM_CRASH"


class Proposer:
    """The strategies of a single-process session turned inside out for many workers: ``ask`` for the next genome
    whenever a worker is free, ``tell`` each result as it comes back, in whatever order."""

    def __init__(self, strategy: str, rng: random.Random) -> None:
        self.strategy, self.rng = strategy, rng
        self.current: tuple[Genome, float] | None = None  # walk, anneal
        self.population: list[tuple[Genome, float]] = []  # evolve
        self.centres: list[np.ndarray] = []  # cluster

    @staticmethod
    def temperature(done: float) -> float:
        return 0.15 * (1 - done) + 0.005

    def ask(self, done: float) -> Genome:
        """The next genome to render; ``done`` (0..1): how far the session is, which cools the annealing."""
        rng = self.rng
        if self.strategy in ("walk", "anneal") and self.current is not None:
            amount = 1.0 if self.strategy == "walk" else 0.5 + 2 * self.temperature(done)
            return mutate(self.current[0], rng, amount)
        if self.strategy == "evolve" and len(self.population) >= POPULATION:
            parents = sorted(self.population, key=lambda p: -p[1])[: POPULATION // 2]
            return mutate(cross(rng.choice(parents)[0], rng.choice(parents)[0], rng), rng, 0.7)
        return random_genome(rng)

    def tell(self, g: Genome, s: Score, feats: np.ndarray, done: float) -> float:
        """Take a rendered genome's score into the population; returns its fitness."""
        fitness = s.total
        if self.strategy == "cluster":  # unlike what was found so far, by cluster: counts double
            fitness += 0.25 * novelty(feats, self.centres)
            _update_centres(self.centres, feats)
        elif self.strategy in ("walk", "anneal"):
            current = self.current
            if (
                current is None
                or fitness > current[1]
                or (
                    self.strategy == "anneal"
                    and self.rng.random() < math.exp((fitness - current[1]) / self.temperature(done))
                )
            ):
                self.current = (g, fitness)
        elif self.strategy == "evolve":
            if len(self.population) >= POPULATION:  # the worst goes, the newcomer joins
                self.population.sort(key=lambda p: -p[1])
                del self.population[POPULATION - 1 :]
            self.population.append((g, fitness))
        return fitness


@dataclass(frozen=True)
class Rendered:
    """What a worker sends back for one genome: the picture and what the head needs to score and keep it."""

    image: np.ndarray
    params: dict[str, Any]
    aesthetics: Aesthetics
    features: np.ndarray
    clip: float | None
    latent: np.ndarray | None
    worker: str
    pid: int


class DreamWorker:
    """One worker slot (a Ray actor): a Renderer, its generator loaded once, turning genomes into scored pictures."""

    def __init__(
        self,
        *,
        slot: int,
        generator: str,
        size: tuple[int, int],
        frames: int,
        prompt: str,
        options: dict[str, Any],
        clip: str | None = None,
        crash_after: int | None = None,
    ) -> None:
        import cv2

        cv2.setNumThreads(1)  # one core per slot: OpenCV's own thread pool would fight the neighbouring workers
        self.name = f"{socket.gethostname()}/{slot}"
        self.renderer = Renderer(generator, size, frames, prompt, **options)
        self.clip: Any = None
        if clip:
            from vj.dreams.clip import ClipScorer

            self.clip = ClipScorer(clip)
            self.clip.score(np.zeros((size[1], size[0], 3), np.uint8), prompt)  # loads the model: ready means ready
        self.crash_after, self.rendered = crash_after, 0

    def hello(self) -> tuple[str, int]:
        return self.name, os.getpid()

    def render(self, g: Genome) -> Rendered:
        if self.crash_after is not None and self.rendered >= self.crash_after and not _restarted():
            os._exit(1)
        image, params, latent = self.renderer.render(g)
        if latent is not None and not isinstance(latent, np.ndarray):
            latent = latent.detach().float().cpu().numpy()  # a tensor from the generator
        self.rendered += 1
        clip_score = self.clip.score(image, str(params["prompt"])) if self.clip is not None else None
        return Rendered(image, params, aesthetics(image), features(image), clip_score, latent, self.name, os.getpid())


def _restarted() -> bool:
    import ray

    return bool(ray.get_runtime_context().was_current_actor_reconstructed)


@dataclass
class ClusterResult(Result):
    written: int = 0  # dreams written to the store (before the session's last pruning to its best)
    startup: float = 0.0  # seconds from the start until every worker had its generator loaded
    made: dict[str, int] = field(default_factory=dict)  # dreams each worker made
    restarts: dict[str, list[int]] = field(default_factory=dict)  # worker -> its processes, for those restarted
    lost: list[str] = field(default_factory=list)  # workers given up, their restarts spent

    def rates(self) -> dict[str, float]:
        return {w: (n / self.seconds if self.seconds > 0 else 0.0) for w, n in self.made.items()}


class _Features:
    """The features of the dreams kept, as rows of one matrix: novelty against thousands stays one product."""

    def __init__(self) -> None:
        self.rows = np.zeros((0, 0), np.float32)
        self.n = 0

    def add(self, f: np.ndarray) -> None:
        if self.n == len(self.rows):
            grown = np.zeros((max(64, 2 * self.n), f.size), np.float32)
            if self.n:
                grown[: self.n] = self.rows
            self.rows = grown
        self.rows[self.n] = f
        self.n += 1

    def reset(self, feats: list[np.ndarray]) -> None:
        self.n = 0
        for f in feats:
            self.add(f)

    def novelty(self, f: np.ndarray) -> float:
        """As ``vj.frame.aesthetics.novelty``: 1 - the highest cosine similarity to a kept dream."""
        if self.n == 0:
            return 1.0
        return min(1.0, max(0.0, 1.0 - float(np.max(self.rows[: self.n] @ f))))


def _import_ray(address: str) -> Any:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    local = address == "local" or _loopback(address)
    if local:
        # Ray swaps 127.0.0.1 for the machine's outward address unless told it is making no cluster (a switch
        # named for Windows and macOS); with it, every Ray process of the session listens on loopback alone.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if address == "local":
        # Token authentication (Ray's default for a new local instance), said outright so Ray need not warn.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise ConfigError("dreaming on a cluster needs Ray", key="--cluster", fix=INSTALL) from None
    if local:  # the switch is read when ray is first imported, which may have happened before
        with contextlib.suppress(ImportError):
            constants: Any = importlib.import_module("ray._private.ray_constants")
            constants.ENABLE_RAY_CLUSTER = False
    return ray


def _loopback(address: str) -> bool:
    """Whether ``address`` (HOST:PORT, or ray://HOST:PORT) names a cluster on this machine's loopback interface."""
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    return host in {"localhost", "::1"} or host.startswith("127.")


def _connect(ray: Any, address: str, workers: int | None) -> None:
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address == "local":
            ray.init(
                address="local",  # a fresh instance of our own, whatever RAY_ADDRESS says
                num_cpus=workers or os.cpu_count() or 1,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                object_store_memory=OBJECT_STORE,
                **quiet,
            )
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ConfigError(f"cannot start or reach Ray at {address} ({_why(e)})", key="--cluster") from None


def _why(e: BaseException) -> str:
    """One line of what went wrong: the original error for a failed task, else the error's last line."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException) and cause is not e:
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__


def _crash_hook() -> tuple[int, int] | None:
    text = os.environ.get(CRASH_ENV)
    if not text:
        return None
    slot, _, after = text.partition(":")
    if not (slot.isdigit() and after.isdigit()):
        raise ConfigError(f"'{text}' is not SLOT:K", key=CRASH_ENV, fix="e.g. 0:5")
    return int(slot), int(after)


def explore_cluster(
    prompt: str,
    strategy: str,
    folder: Path,
    *,
    address: str = "local",
    workers: int | None = None,
    count: int | None = None,
    seconds: float | None = None,
    generator: str = "sketch",
    generator_options: dict[str, Any] | None = None,
    size: tuple[int, int] = (256, 256),
    frames: int = 24,
    keep: int = 50,
    seed: int | None = None,
    clip: str | None = None,
    progress: Callable[[str], None] = print,
) -> ClusterResult:
    """Explore on ``workers`` Ray actors (default: one per CPU) until ``count`` dreams of this session are in the
    store or ``seconds`` have passed, whichever comes first. ``clip``: a CLIP model each worker loads."""
    strategy = ALIASES.get(strategy, strategy)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    if count is None and seconds is None:
        raise ValueError("give a count of dreams or a time limit")
    find(generator)  # an unknown generator is an error here, not in every worker
    if not makes_dreams(generator):
        raise ConfigError(f"{generator} makes no dreams worth keeping", key="--generator", fix="use sketch or lcm")
    crash = _crash_hook()
    ray = _import_ray(address)
    store = DreamStore(folder)  # opened first: a store that cannot be written stops the session before Ray starts
    began = time.monotonic()
    actors: list[Any] = []
    startup, kept = 0.0, 0
    head = _Head(
        ray,
        store,
        session=new_session(),
        strategy=strategy,
        rng=random.Random(seed),
        count=count,
        seconds=seconds,
        keep=keep,
        generator=generator,
        progress=progress,
    )
    try:
        _connect(ray, address, workers)
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(num_cpus=1, max_restarts=RESTARTS, max_task_retries=RESTARTS)(DreamWorker)
        actors = [
            remote.remote(
                slot=slot,
                generator=generator,
                size=size,
                frames=frames,
                prompt=prompt,
                options=generator_options or {},
                clip=clip,
                crash_after=crash[1] if crash is not None and crash[0] == slot else None,
            )
            for slot in range(n)
        ]
        head.start(actors)
        startup = time.monotonic() - began
        head.run(actors)
        head.roll_call(actors)
    finally:
        # The workers end with the session (Ray ties their lifetime to this process), dreams in flight with them.
        if ray.is_initialized():
            ray.shutdown()
        try:
            with contextlib.suppress(Exception):  # a session cut short keeps what it wrote, unpruned
                store.evict(head.session, keep)
            kept = store.count(head.session)
        finally:
            store.close()
    return ClusterResult(
        head.session,
        head.received,
        kept,
        head.seconds,
        head.best,
        written=head.written,
        startup=startup,
        made=dict(head.made),
        restarts={w: pids for w, pids in head.pids.items() if len(pids) > 1},
        lost=[head.names[slot] for slot in sorted(head.lost)],
    )


class _Head:
    """The head's side of a session: proposing, scoring and writing, one result at a time."""

    def __init__(
        self,
        ray: Any,
        store: DreamStore,
        *,
        session: str,
        strategy: str,
        rng: random.Random,
        count: int | None,
        seconds: float | None,
        keep: int,
        generator: str,
        progress: Callable[[str], None],
    ) -> None:
        self.ray, self.store, self.session = ray, store, session
        self.proposer = Proposer(strategy, rng)
        self.count, self.limit, self.keep, self.generator = count, seconds, keep, generator
        self.progress = progress
        self.kept = _Features()
        self.received = self.written = 0
        self.best = 0.0
        self.names: list[str] = []
        self.made: dict[str, int] = {}
        self.pids: dict[str, list[int]] = {}
        self.lost: set[int] = set()
        self.pending: dict[Any, tuple[int, Genome]] = {}
        self.failures = 0
        self.began = time.monotonic()
        self.seconds = 0.0

    def start(self, actors: list[Any]) -> None:
        """Wait until every worker has loaded its generator, saying how many are ready every few seconds."""
        ray = self.ray
        waiting = {actor.hello.remote(): slot for slot, actor in enumerate(actors)}
        hello: dict[int, tuple[str, int]] = {}
        last = time.monotonic()
        while waiting:
            ready, _ = ray.wait(list(waiting), num_returns=1, timeout=PROGRESS_EVERY)
            for ref in ready:
                slot = waiting.pop(ref)
                try:
                    hello[slot] = ray.get(ref)
                except ray.exceptions.RayError as e:
                    raise ConfigError(f"a worker could not start ({_why(e)})", key="--cluster") from None
            if time.monotonic() - last >= PROGRESS_EVERY:
                last = time.monotonic()
                self.progress(f"waiting for workers: {len(hello)} of {len(actors)} ready")
        self.names = [hello[slot][0] for slot in range(len(actors))]
        self.made = dict.fromkeys(self.names, 0)
        for name, pid in hello.values():
            self.see(name, pid)
        ready = ", ".join(f"{name} (pid {pid})" for name, pid in (hello[slot] for slot in sorted(hello)))
        self.progress(f"{len(actors)} worker{'s' if len(actors) != 1 else ''} ready: {ready}")

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def done(self) -> float:
        parts = [0.0]
        if self.count is not None:
            parts.append(self.written / self.count)
        if self.limit is not None:
            parts.append(self.elapsed() / self.limit)
        return min(1.0, max(parts))

    def finished(self) -> bool:
        return (self.count is not None and self.written >= self.count) or (
            self.limit is not None and self.elapsed() >= self.limit
        )

    def submit(self, actors: list[Any], slot: int) -> None:
        g = self.proposer.ask(self.done())
        self.pending[actors[slot].render.remote(g)] = (slot, g)

    def run(self, actors: list[Any]) -> None:
        ray = self.ray
        unavailable = getattr(ray.exceptions, "ActorUnavailableError", ())
        self.began = last = time.monotonic()
        for slot in range(len(actors)):
            for _ in range(IN_FLIGHT):
                self.submit(actors, slot)
        while self.pending and not self.finished():
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=0.5)
            for ref in ready:
                slot, g = self.pending.pop(ref)
                try:
                    out = ray.get(ref)
                except unavailable:  # restarting beyond the retries: the slot comes back, ask it again
                    self.submit(actors, slot)
                    continue
                except ray.exceptions.RayActorError as e:  # the worker is gone for good, its restarts spent
                    if slot not in self.lost:
                        self.lost.add(slot)
                        self.progress(f"worker {self.names[slot]} lost ({_why(e)}); the others carry on")
                    if len(self.lost) == len(actors):
                        raise ConfigError(f"every worker died ({_why(e)})", key="--cluster") from None
                    continue
                except ray.exceptions.RayTaskError as e:  # the generator failed on this dream: try another
                    self.failures += 1
                    if self.failures >= FAILURES:
                        raise ConfigError(f"dreams keep failing on the workers ({_why(e)})") from None
                    self.submit(actors, slot)
                    continue
                self.failures = 0
                self.take(out, g)
                if not self.finished():
                    self.submit(actors, slot)
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY:
                last = now
                self.progress(self.line())
        self.seconds = self.elapsed()

    def see(self, worker: str, pid: int) -> None:
        """Note the process a worker answered from: a new one on the same slot is a restart."""
        seen = self.pids.setdefault(worker, [])
        if pid not in seen:
            seen.append(pid)
            if len(seen) > 1:
                self.progress(f"worker {worker} restarted (process {seen[-2]} -> {pid}); dreams go on")

    def roll_call(self, actors: list[Any]) -> None:
        """Ask every worker for its process once more, so that a restart whose dreams were not needed any more is
        counted too. Dreams still queued are cancelled first; a worker that does not answer in time is left out."""
        ray = self.ray
        for ref in self.pending:
            with contextlib.suppress(Exception):  # finished meanwhile
                ray.cancel(ref)
        self.pending.clear()
        calls = [actor.hello.remote() for slot, actor in enumerate(actors) if slot not in self.lost]
        ready, _ = ray.wait(calls, num_returns=len(calls), timeout=ROLL_CALL)
        for ref in ready:
            with contextlib.suppress(ray.exceptions.RayError):  # gone for good at the last moment
                self.see(*ray.get(ref))

    def take(self, out: Rendered, g: Genome) -> None:
        """Score one result, tell the strategy, and write it."""
        self.received += 1
        self.see(out.worker, out.pid)
        self.made[out.worker] = self.made.get(out.worker, 0) + 1
        s = score(out.aesthetics, self.kept.novelty(out.features), out.clip)
        self.proposer.tell(g, s, out.features, self.done())
        self.best = max(self.best, s.total)
        if self.count is None:
            ranked = self.store.top(self.keep, session=self.session, saved=False)
            if len(ranked) >= self.keep and s.total <= ranked[-1].score:
                return
        self.store.add(
            out.image,
            session=self.session,
            prompt=str(out.params.get("prompt", "")),
            seed=int(out.params.get("seed", 0)),
            params=out.params,
            score=s.total,
            scores=s.parts(),
            generator=self.generator,
            scene="dream session",
            latent=out.latent,
            features=out.features,
            worker=out.worker,
        )
        self.written += 1
        self.kept.add(out.features)
        if self.count is None and self.store.evict(self.session, self.keep):
            self.kept.reset([d.features for d in self.store.top(session=self.session) if d.features is not None])

    def line(self) -> str:
        t = max(self.elapsed(), 1e-9)
        per = "  ".join(f"{w} {n / t:.2f}/s" for w, n in self.made.items())
        return (
            f"{t:6.1f} s  {self.received:5d} dreams  {self.received / t:6.2f}/s  ({per})  "
            f"best {self.best:.3f}  written {self.written}"
        )

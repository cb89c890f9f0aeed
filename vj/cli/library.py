"""``vj scenes``, ``vj dreams``, ``vj dream``: the scene files and the dream store."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from vj.cli.common import _clip, _dreams_folder, _positive, _size
from vj.cli.run import _add_model_options, _generator

log = logging.getLogger("vj")


def cmd_scenes_list(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vj.scenes import SCENES_DIR, load_scenes

    for scene in load_scenes(Path(args.scenes) if args.scenes else SCENES_DIR):
        print(scene.name)
    return 0


def cmd_scenes_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vj.scenes import SCENES_DIR, load_scenes

    scenes = load_scenes(Path(args.scenes) if args.scenes else SCENES_DIR)
    for n, scene in enumerate(scenes, 1):
        what = scene.kind if scene.kind != "dream" else (scene.prompts[0] if scene.prompts else "")
        print(f"{n:2d}  {scene.name:<20}  {Path(scene.file).name:<24}  {what}")
    print(f"{len(scenes)} scenes ok")
    return 0


def _store(args: argparse.Namespace) -> Any:
    from vj.dreams.store import DreamStore

    return DreamStore(_dreams_folder(args.dreams), create=False)


def cmd_dreams_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        dreams = store.top(args.top, session=args.session, saved=True if args.saved else None)
        print(f"{store.count()} dreams in {store.folder}")
        for d in dreams:
            print(d.line())
    finally:
        store.close()
    return 0


def cmd_dreams_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    store = _store(args)
    try:
        dreams = store.top(args.top, session=args.session, saved=True if args.saved else None)
        files = store.export(dreams, Path(args.out))
    finally:
        store.close()
    print(f"exported {len(files)} dreams to {args.out} (with dreams.json)")
    return 0


def cmd_dreams_prune(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        removed, files = store.prune(args.keep)
        print(
            f"kept the best {args.keep} and every saved dream: removed {removed} dreams, {files} stray files; "
            f"{store.count()} left (integrity: {store.integrity()})"
        )
    finally:
        store.close()
    return 0


def cmd_dream(args: argparse.Namespace) -> int:
    from vj.dreams import ALIASES
    from vj.errors import ConfigError

    strategy = ALIASES.get(args.strategy, args.strategy)
    if args.prompt is None:
        from vj.params import PARAMS

        args.prompt = next(p.default for p in PARAMS if p.name == "prompt")
    if args.cluster is None:
        for flag, value in (("--workers", args.workers), ("--count", args.count)):
            if value is not None:
                raise ConfigError("goes with --cluster", key=flag, fix="add --cluster local to use this machine")
    seconds = args.seconds if args.seconds is not None else args.minutes * 60 if args.minutes is not None else None
    if seconds is None and args.count is None:
        seconds = 300.0
    folder = _dreams_folder(args.dreams)
    generator, options = _generator(args)
    if args.cluster is not None:
        return _dream_on_cluster(
            args, strategy=strategy, seconds=seconds, folder=folder, generator=generator, options=options
        )
    from vj.dreams.explore import explore

    assert seconds is not None
    print(
        f"dreaming '{args.prompt}' for {seconds:g} s with {generator} at {args.gen_size[0]}x{args.gen_size[1]},"
        f" strategy {strategy}; keeping the best {args.keep} in {folder}"
    )
    result = explore(
        args.prompt,
        seconds,
        strategy,
        folder,
        generator=generator,
        generator_options=options,
        size=args.gen_size,
        frames=args.frames,
        keep=args.keep,
        seed=args.seed,
        clip=_clip(args.clip),
    )
    print(
        f"{result.dreams} dreams in {result.seconds:.1f} s: {result.rate:.2f} dreams/s; best score "
        f"{result.best:.3f}; {result.kept} kept (session {result.session})"
    )
    return 0


def _dream_on_cluster(
    args: argparse.Namespace, *, strategy: str, seconds: float | None, folder: Any, generator: str, options: Any
) -> int:
    from vj.dreams.cluster import explore_cluster

    until = " or ".join(
        ([f"{args.count} dreams"] if args.count is not None else []) + ([f"{seconds:g} s"] if seconds else [])
    )
    workers = f"{args.workers} worker{'s' if args.workers != 1 else ''}" if args.workers else "a worker per CPU"
    print(
        f"dreaming '{args.prompt}' on {args.cluster} ({workers}) until {until}, with {generator} at"
        f" {args.gen_size[0]}x{args.gen_size[1]}, strategy {strategy}; keeping the best {args.keep} in {folder}"
    )
    result = explore_cluster(
        args.prompt,
        strategy,
        folder,
        address=args.cluster,
        workers=args.workers,
        count=args.count,
        seconds=seconds,
        generator=generator,
        generator_options=options,
        size=args.gen_size,
        frames=args.frames,
        keep=args.keep,
        seed=args.seed,
        clip=args.clip,
    )
    for worker, pids in result.restarts.items():
        print(f"worker {worker} restarted {len(pids) - 1} time(s): processes {' -> '.join(map(str, pids))}")
    for worker in result.lost:
        print(f"worker {worker} lost: its restarts were spent")
    rates = ", ".join(f"{w} {r:.2f}/s" for w, r in result.rates().items())
    on = f"{len(result.made)} worker{'s' if len(result.made) != 1 else ''}"
    print(
        f"{result.dreams} dreams in {result.seconds:.1f} s on {on}: {result.rate:.2f} dreams/s"
        f" ({rates}; workers ready after {result.startup:.1f} s); best score {result.best:.3f}; {result.written}"
        f" written, {result.kept} kept (session {result.session})"
    )
    return 0


def _add_scene_and_dream_commands(sub: Any) -> None:
    from vj.dreams import ALIASES, STRATEGIES

    dm = sub.add_parser(
        "dream",
        help="explore seeds and prompt variations, keep the best dreams",
        description="Render many short dreams at low resolution, score them and keep the best in the "
        "dream store (the replay scene shows them).",
    )
    dm.add_argument("--prompt", help="what to dream of (default: the prompt in the parameter table)")
    span = dm.add_mutually_exclusive_group()
    span.add_argument("--minutes", type=_positive(float), help="how long to explore (5, or until --count)")
    span.add_argument("--seconds", type=_positive(float), help="or in seconds")
    dm.add_argument(
        "--strategy",
        choices=(*STRATEGIES, *ALIASES),
        default="evolve",
        help="how to choose the next dream (evolve; evolutionary is another name for it)",
    )
    dm.add_argument("--generator", metavar="NAME", help="generator to dream with (sketch, or lcm with --model)")
    dm.add_argument("--gen-size", type=_size, default=(256, 256), metavar="WxH", help="resolution (256x256)")
    dm.add_argument("--frames", type=_positive(int), default=24, help="feedback frames per dream (24)")
    dm.add_argument("--keep", type=_positive(int), default=50, metavar="K", help="best dreams kept (50)")
    dm.add_argument("--seed", type=int, help="random seed of the exploration, for a repeatable session")
    dm.add_argument("--dreams", metavar="DIR", help="dream store folder (default: ~/.local/share/vj/dreams)")
    dm.add_argument("--clip", metavar="MODEL", help="score with a CLIP model too (Hugging Face id or folder)")
    cl = dm.add_argument_group("cluster (needs Ray: pip install 'vj[cluster]')")
    cl.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="dream on Ray workers: local (this machine) or a cluster's address (auto, HOST:6379, ray://HOST:10001)",
    )
    cl.add_argument("--workers", type=_positive(int), metavar="N", help="worker processes (one per CPU)")
    cl.add_argument("--count", type=_positive(int), metavar="N", help="stop once N dreams of the session are stored")
    _add_model_options(dm.add_argument_group("model (the lcm generator; as for vj run)"))
    dm.set_defaults(func=cmd_dream)

    sc = sub.add_parser("scenes", help="list and check scenes").add_subparsers(dest="what", required=True)
    for name, func, text in (
        ("list", cmd_scenes_list, "scene names, one per line, scene 1 first"),
        ("check", cmd_scenes_check, "load every scene file; errors name file, key and fix"),
    ):
        q = sc.add_parser(name, help=text)
        q.add_argument("--scenes", metavar="DIR", help="scene folder (default: scenes/)")
        q.set_defaults(func=func)
    dr = sub.add_parser("dreams", help="the dream store: list, export, prune").add_subparsers(
        dest="what", required=True
    )
    ls = dr.add_parser("list", help="the best dreams kept (* = saved by hand)")
    ex = dr.add_parser("export", help="copy the best dreams' images to a folder, with dreams.json")
    ex.add_argument("--out", required=True, metavar="DIR")
    for q in (ls, ex):
        q.add_argument("--top", type=_positive(int), default=20, metavar="N")
        q.add_argument("--session", help="only this session")
        q.add_argument("--saved", action="store_true", help="only dreams saved by hand")
    ls.set_defaults(func=cmd_dreams_list)
    ex.set_defaults(func=cmd_dreams_export)
    pr = dr.add_parser("prune", help="keep the best N of all sessions (and every saved one), remove the rest")
    pr.add_argument("--keep", type=_positive(int), required=True, metavar="N")
    pr.set_defaults(func=cmd_dreams_prune)
    for q in (ls, ex, pr):
        q.add_argument("--dreams", metavar="DIR", help="dream store folder (default: ~/.local/share/vj/dreams)")

"""``vj node``: serve a generator to shows on other machines (``vj run --generator remote --node HOST:PORT``)."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any

from vj.errors import ConfigError

TOKEN_ENV = "VJ_NODE_TOKEN"


def cmd_node(args: argparse.Namespace) -> int:
    from vj.cli.run import _generator
    from vj.gen.node import serve
    from vj.gen.remote import parse_address

    try:
        import zmq  # noqa: F401
    except ImportError:
        raise ConfigError("the generator node needs pyzmq", fix="pip install 'vj[node]'") from None
    name, options = _generator(args)
    if name in ("remote", "replay"):
        raise ConfigError(f"a node serves a generator of its own, not '{name}'", key="--generator")
    host, port = parse_address(args.listen, key="--listen", any_port=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stats = serve(host, port, name, options=options, token=args.token or os.environ.get(TOKEN_ENV) or None, stop=stop)
    print(
        f"node: {stats.frames} frames for {stats.requests} requests ({stats.uploads} pictures sent up); "
        f"{stats.malformed} malformed, {stats.refused} refused, {stats.busy} busy, {stats.errors} generator errors; "
        f"in {stats.bytes_in} B, out {stats.bytes_out} B" + (f"; troubles {stats.kinds}" if stats.kinds else "")
    )
    return 0


def _add_node_commands(sub: Any) -> None:
    from vj.cli.run import _add_model_options

    p = sub.add_parser(
        "node",
        help="serve a generator to shows on other machines (vj run --generator remote --node HOST:PORT)",
        description="Run a generator here (a GPU box backstage) for a show elsewhere: the show sends its "
        "parameters and camera moves, the node sends back one compressed picture a frame. It listens on "
        f"127.0.0.1 unless told; on any other address it needs --token (or ${TOKEN_ENV}), the same the show gives.",
    )
    p.add_argument("--generator", metavar="NAME", help="what to serve: dream, sketch, lcm (default: dream)")
    p.add_argument("--listen", default="127.0.0.1:9510", metavar="HOST:PORT", help="where to listen (127.0.0.1:9510)")
    p.add_argument("--token", metavar="SECRET", help=f"shared secret the show must give (or ${TOKEN_ENV})")
    _add_model_options(p.add_argument_group("model (the lcm generator; as for vj run)"))
    p.set_defaults(func=cmd_node)

"""Two Ableton Link peers — vj and a stand-in for a DAW at 130 BPM — inside the private network namespace that
tests/test_link.py made for them: Link's multicast never leaves it. Prints one JSON line: what each side saw.

    python tests/link_netns.py run    vj run --link in a child process: its report, and the peer's view
    python tests/link_netns.py show   a show in this process: its beat against the peer's, frame by frame; then a
                                      tempo set in vj, which the peer must follow
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PEER_BPM = 130.0
SET_BPM = 140.0


def peer_beat(peer) -> float:
    return peer.captureAppSessionState().beatAtTime(peer.clock().micros(), 4)


def in_vj_run(peer) -> dict:
    from tests.child import finish, start

    seen = [0]
    done = threading.Event()

    def count_peers() -> None:  # while vj runs: afterwards it has left the session
        while not done.wait(0.05):
            seen[0] = max(seen[0], peer.numPeers())

    watcher = threading.Thread(target=count_peers)
    watcher.start()
    try:
        proc = start("run", "--headless", "--seconds", "8", "--no-osc", "--link", "--report", "-")
        report, _ = finish(proc, timeout=150)
    finally:
        done.set()
        watcher.join()
    return {"report": report, "peer_bpm": peer.captureAppSessionState().tempo(), "peer_peers": seen[0]}


def in_a_show(peer) -> dict:
    from vj.control.link import LinkSource
    from vj.engine.loop import Show, ShowConfig

    link = LinkSource()
    show = Show(ShowConfig(size=(160, 90), gen_size=(64, 64), headless=True, seconds=90))
    show.add_source(link)
    errors: list[float] = []
    state: dict = {"locked": None, "syncs": None, "set_at": None, "lost": 0}

    def watch(s: Show) -> None:
        t = s.tempo
        now = time.monotonic()
        if state["locked"] is None:
            if t.source == "link" and t.peers >= 1 and abs(t.bpm - PEER_BPM) < 0.01:
                state["locked"] = now  # the tempo has glided to the session's
            return
        if now - state["locked"] < 1.0:  # the phase is steered out over a quarter of a second
            return
        if now - state["locked"] < 4.0:
            e = t.beat - peer_beat(peer)
            errors.append((e + 2) % 4 - 2)
            return
        if state["set_at"] is None:
            # Set right after a sync landed, so the next one is a poll away. A sync that lands in the same frame
            # as a tempo set by hand undoes it (the loop takes the sync's tempo); when that happens all the same
            # (a late frame on a busy machine), the set is made again, and counted.
            if state["syncs"] is not None and t.syncs != state["syncs"]:
                state["set_at"] = now
                s.bus.post("osc", "bpm", SET_BPM)
            state["syncs"] = t.syncs
            return
        if link.tempo_sets == 0 and abs(s.params.target("bpm") - PEER_BPM) < 0.01 and state["lost"] < 5:
            state["lost"] += 1
            state["set_at"] = state["syncs"] = None
            return
        if abs(peer.captureAppSessionState().tempo() - SET_BPM) < 0.01:
            state["followed"] = now - state["set_at"]
            s.stop()

    show.on_frame.append(watch)
    report = show.run()
    return {
        "errors": len(errors),
        "mean": statistics.fmean(errors) if errors else None,
        "stdev": statistics.pstdev(errors) if errors else None,
        "followed_s": state.get("followed"),
        "sets_lost": state["lost"],
        "peer_bpm": peer.captureAppSessionState().tempo(),
        "tempo": report["tempo"],
        "link": report.get("link"),
        "elapsed": show.elapsed,
    }


def main() -> int:
    host = os.environ.get("VJ_TEST_HOST_NETNS")
    if not host or os.readlink("/proc/self/ns/net") == host:
        print("refusing to run Link outside a private network namespace", file=sys.stderr)
        return 3
    import link

    peer = link.Link(PEER_BPM)
    peer.enabled = True
    # An established session, as a DAW's would be: when two sessions meet, Link keeps the older one, if it is older
    # by more than half a second (else it picks one by id, at random).
    time.sleep(2.0)
    try:
        result = in_vj_run(peer) if sys.argv[1] == "run" else in_a_show(peer)
    finally:
        peer.enabled = False
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

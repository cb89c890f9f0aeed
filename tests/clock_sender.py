"""A drum machine for the tests: MIDI clock from a virtual JACK port, in a process of its own (so a busy show in the
test's process cannot hold its ticks back), each tick due on an absolute timeline: late ticks never drift.

    python tests/clock_sender.py CLIENT BPM

Makes the port CLIENT:out and says "ready"; on "go" says "t0 T" (when beat 0 is due, ``time.perf_counter()``,
which is the same clock in every process) and sends start, then ticks; when its input closes it sends stop.
"""

from __future__ import annotations

import sys
import threading
import time

import rtmidi

from vj.threads import raise_priority

CLOCK, START, STOP = 0xF8, 0xFA, 0xFC


def main() -> int:
    client, bpm = sys.argv[1], float(sys.argv[2])
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=client)
    out.open_virtual_port("out")
    print("ready", flush=True)
    done = threading.Event()
    period = 60 / (bpm * 24)

    def ticks(t0: float) -> None:
        raise_priority()  # a drum machine keeps time whatever else the machine is doing
        k = 0
        while not done.is_set():
            wait = t0 + k * period - time.perf_counter()
            if wait > 0:
                done.wait(wait)
                continue
            out.send_message([CLOCK])
            k += 1

    thread = None
    for line in sys.stdin:
        if line.strip() == "go" and thread is None:
            t0 = time.perf_counter() + 0.02
            print(f"t0 {t0!r}", flush=True)
            out.send_message([START])
            thread = threading.Thread(target=ticks, args=(t0,))
            thread.start()
    done.set()
    if thread is not None:
        thread.join()
    out.send_message([STOP])
    out.close_port()
    out.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""MIDI input at the byte level: a port a broken sysex cannot mute, and a JACK watch that sees a fast replug.

rtmidi collects a system-exclusive message until an event ends in 0xF7. A controller that sends a lone 0xF0 (a
glitch, a cable pulled mid-dump, a firmware bug) would have rtmidi swallow every later message into one endless
sysex: the controller goes dead with no sign. ``RawInput`` keeps a private output wired into its own input and sends
a lone 0xF7 there whenever the input has been quiet for ``FLUSH_S``. A swallowed run then comes out as one "sysex"
with status bytes inside, which ``decode`` cuts back into the messages it held: nothing is lost, nothing waits
longer than ``FLUSH_S``.

The input is read by polling, never through rtmidi's callback: a callback runs Python on JACK's process thread,
which then waits for the interpreter lock, while closing the port waits for that thread with the lock held — a
deadlock seen on a busy machine. Polled, JACK's thread never touches Python.

On JACK a device that vanishes and reappears under the same name between two port listings is a new port, and
our input is no longer connected to it. ``JackGraph`` asks the server whether the connection still stands.

``alsa_quiet`` keeps libasound from printing its own error lines while vj tries to reach the MIDI system.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import itertools
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

log = logging.getLogger(__name__)

FLUSH_S = 0.1
POLL_S = 0.002  # a knob turn reaches the bus within 2 ms; rtmidi's queue holds what arrives in between
QUEUE = 4096
SYSEX, SYSEX_END = 0xF0, 0xF7
_serial = itertools.count(1)


def decode(data: list[int]) -> tuple[list[Any], int]:
    """The mido messages in one event from rtmidi, and how many were recovered from a broken sysex.

    A sysex whose body holds status bytes is a run rtmidi swallowed after a lone 0xF0: its body is parsed as the
    stream of messages it is. A lone 0xF7 (the flush) and genuine sysex give nothing; bytes that make no message
    raise ``ValueError``.
    """
    import mido

    if data == [SYSEX_END]:
        return [], 0
    if data and data[0] == SYSEX:
        body = data[1:-1] if data[-1] == SYSEX_END else data[1:]
        if all(b < 0x80 for b in body):
            return [mido.Message.from_bytes(data)] if data[-1] == SYSEX_END else [], 0
        parser = mido.Parser()
        parser.feed(body)
        found = list(parser)
        return found, len(found)
    return [mido.Message.from_bytes(data)], 0


# void handler(const char *file, int line, const char *function, int err, const char *fmt, ...): the variadic
# tail is never read, so a fixed-argument callback is safe to hand over.
_ALSA_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)
_SILENT = _ALSA_HANDLER(lambda *_: None)  # lives as long as the process: libasound keeps the pointer


@functools.cache
def _libasound() -> Any:
    try:
        lib = ctypes.CDLL("libasound.so.2")
    except OSError:
        return None  # no ALSA here (not Linux, or a JACK-only system): nothing to silence
    lib.snd_lib_error_set_handler.argtypes = [ctypes.c_void_p]
    return lib


@contextlib.contextmanager
def alsa_quiet() -> Iterator[None]:
    """Opening a MIDI client with libasound's error printer off; the printer it had is back afterwards.

    Without an ALSA sequencer (no /dev/snd/seq) each try prints "ALSA lib seq_hw.c:...: open /dev/snd/seq failed"
    straight to stderr, beside the exception rtmidi raises for the same failure: vj says it once, from that.
    """
    lib = _libasound()
    if lib is None:
        yield
        return
    try:
        before = ctypes.c_void_p.in_dll(lib, "snd_lib_error").value  # another library may have set its own
    except ValueError:
        before = None  # the default
    lib.snd_lib_error_set_handler(ctypes.cast(_SILENT, ctypes.c_void_p))
    try:
        yield
    finally:
        lib.snd_lib_error_set_handler(before)


class RawInput:
    """One rtmidi input port on ``source`` (by its full name), polled for raw events with ``read``.

    It runs under its own client name, so the flush output can find the input among the system's ports.
    """

    def __init__(self, api: int, source: str) -> None:
        import rtmidi

        self.client = f"vj-midi-{os.getpid()}-{next(_serial)}"
        self._in = rtmidi.MidiIn(api, name=self.client, queue_size_limit=QUEUE)
        self._flush: Any = None
        try:
            self._in.ignore_types(sysex=False, timing=False, active_sense=True)
            names = self._in.get_ports()
            if source not in names:
                raise OSError(f"unknown port {source!r}")
            self._in.open_port(names.index(source), name="in")
        except Exception:
            self._in.delete()
            raise
        # JACK names the port CLIENT:in, ALSA CLIENT:in followed by its numbers.
        self.port = f"{self.client}:in"
        try:
            out = rtmidi.MidiOut(api, name=f"{self.client}-flush")
            mine = [i for i, n in enumerate(out.get_ports()) if n.startswith(self.port)]
            if mine:
                out.open_port(mine[0], name="flush")
                self._flush = out
            else:
                out.delete()
                log.debug("no flush port for %s: a broken sysex would mute MIDI", self.port)
        except Exception:
            log.debug("cannot open the MIDI flush port", exc_info=True)

    def read(self, limit: int) -> list[list[int]]:
        """The events rtmidi has queued (at most ``limit``), oldest first."""
        out = []
        for _ in range(limit):
            event = self._in.get_message()
            if event is None:
                break
            out.append(event[0])
        return out

    def flush(self) -> None:
        """End any sysex rtmidi is holding open; a lone 0xF7 that ends nothing is dropped by ``decode``."""
        if self._flush is not None:
            self._flush.send_message([SYSEX_END])

    def close(self) -> None:
        for port in (self._in, self._flush):
            if port is not None:
                try:
                    port.close_port()
                    port.delete()
                except Exception:
                    log.debug("closing a MIDI port failed", exc_info=True)
        self._flush = None


class JackGraph:
    """Reads the JACK connection graph through libjack: is our input still connected to the device's port?

    One plain client per process, never activated (no process thread, nothing for the server to run) and never
    closed: ``jack_client_close`` was seen to deadlock on libjack's own lock beside rtmidi's clients, and a client
    that is simply dropped at exit is cleaned up by the server. ``shared()`` gives the one instance.
    """

    _one: ClassVar[JackGraph | None] = None
    _made = threading.Lock()

    def __init__(self) -> None:
        path = ctypes.util.find_library("jack") or "libjack.so.0"
        lib = ctypes.CDLL(path)
        lib.jack_client_open.restype = ctypes.c_void_p
        lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
        lib.jack_port_by_name.restype = ctypes.c_void_p
        lib.jack_port_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.jack_port_connected_to.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        no_start_server = 0x01
        client = lib.jack_client_open(f"vj-watch-{os.getpid()}".encode(), no_start_server, None)
        if not client:
            raise OSError("cannot reach the JACK server")
        self._lib, self._client = lib, client
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> JackGraph:
        with cls._made:
            if cls._one is None:
                cls._one = cls()
            return cls._one

    def connected(self, ours: str, theirs: str) -> bool:
        lib = self._lib
        with self._lock:
            mine = lib.jack_port_by_name(self._client, ours.encode())
            if not mine or not lib.jack_port_by_name(self._client, theirs.encode()):
                return False
            return bool(lib.jack_port_connected_to(mine, theirs.encode()))

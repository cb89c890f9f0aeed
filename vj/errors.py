"""Every error vj raises on purpose.

VjError                 anything the user can fix; the CLI prints it and exits 2, no traceback
├── ConfigError         a command-line option or file is wrong; names the file, key path and fix
├── ParamError          a value for a parameter cannot be used
│   └── UnknownParam    no parameter or action has that name
├── GeneratorError      a generator cannot be found, built or loaded
└── DeviceError         a display, MIDI port or audio device is missing or busy
"""

from __future__ import annotations


class VjError(Exception):
    """An error the user can act on. ``str()`` is the whole message."""


class ConfigError(VjError):
    def __init__(self, message: str, *, file: str | None = None, key: str | None = None, fix: str | None = None):
        self.file, self.key, self.fix = file, key, fix
        where = ": ".join(x for x in (file, key) if x)
        text = f"{where}: {message}" if where else message
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class ParamError(VjError):
    pass


class UnknownParam(ParamError):
    pass


class GeneratorError(VjError):
    permanent = False  # True: trying again cannot help (a missing model); fall back at once


class GeneratorUnusable(GeneratorError):
    """The generator cannot run on this machine as configured (no model, no such device): no retries."""

    permanent = True


class DeviceError(VjError):
    pass

"""vj: a live AI VJ engine. An endless img2img dream, steered by voice, MIDI, OSC and keys."""

__version__ = "0.1.0"

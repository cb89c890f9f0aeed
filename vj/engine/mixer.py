"""Overlay layers: images, video, a camera, colour fields and a brush, mixed on top or into the dream.

Each layer has a blend mode and goes one of two ways:

* ``into = "top"``: mixed over the output on the display side, after the crossfade; the dream does not see it;
* ``into = "loop"``: mixed into the generator's input on the worker side, before ``generate``; the dream takes it
  in and keeps dreaming it forward (a photo or a video dissolving into the hallucination).

A layer's strength is a parameter, ``layer<N>_opacity`` (N = its slot, 1..4), so MIDI, OSC, voice and scenes
reach it like any other (blend formulas: ``vj.frame.compose``).

Layer kinds live in ``vj.layers``, compositing in ``vj.frame.compose``; the mixer holds the show's layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from vj.errors import ConfigError
from vj.frame.compose import LayerInput, blend, weights
from vj.layers.kinds import _CLASSES, BrushLayer, Layer
from vj.layers.spec import SLOTS, LayerSpec


class Mixer:
    def __init__(self, specs: list[LayerSpec], size: tuple[int, int]) -> None:
        if len(specs) > SLOTS:
            raise ConfigError(
                f"{len(specs)} layers; there are {SLOTS} slots", key="--layer", fix=f"use at most {SLOTS}"
            )
        self.size = size
        self.layers: list[Layer] = [_CLASSES[s.kind](s, i + 1, size) for i, s in enumerate(specs)]
        # slot -> (the RGB frame converted, its BGRA): the frame itself is kept, so a reused id() cannot fool it
        self._bgra: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def brush(self) -> BrushLayer | None:
        return next((layer for layer in self.layers if isinstance(layer, BrushLayer)), None)

    def start(self) -> None:
        for layer in self.layers:
            layer.start()

    def stop(self) -> None:
        for layer in self.layers:
            layer.stop()

    def step(self, dt: float) -> None:
        for layer in self.layers:
            layer.step(dt)

    def loop_inputs(self, params: Mapping[str, Any]) -> tuple[LayerInput, ...]:
        """What goes into the next generated frame: the 'loop' layers with a frame and some opacity."""
        out = []
        for layer in self.layers:
            rgb, alpha = layer.current()
            opacity = float(params.get(layer.param, 0.0))
            if layer.spec.into == "loop" and rgb is not None and opacity > 0:
                out.append(LayerInput(rgb, alpha, layer.spec.mode, opacity))
        return tuple(out)

    def compose_top(self, picture: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
        """``picture`` (BGRA, the generator's size) with the 'top' layers mixed over it."""
        for layer in self.layers:
            rgb, alpha = layer.current()
            opacity = float(params.get(layer.param, 0.0))
            if layer.spec.into != "top" or rgb is None or opacity <= 0:
                continue
            cached = self._bgra.get(layer.slot)
            if cached is None or cached[0] is not rgb:
                cached = (rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))
                self._bgra[layer.slot] = cached
            picture = blend(picture, cached[1], layer.spec.mode, weights(opacity, alpha))
        return picture

    def describe(self) -> list[dict[str, Any]]:
        return [layer.describe() for layer in self.layers]

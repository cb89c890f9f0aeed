"""The report a show writes at exit (``vj run --report``): a typed structure, written out as JSON.

The fields and their meaning are the contract in the README ("The report"). Sources add a section each under
their own name (``osc``, ``midi``, ``voice``...), and their health under ``sources``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class GeneratorSection:
    name: str
    size: list[int]
    fps: float = 0.0  # frames/s of the generator named, not of a stand-in
    stand_in: str | None = None  # what dreams while the generator named loads
    stand_in_fps: float = 0.0
    errors: int = 0
    restarts: int = 0
    hangs: int = 0
    fallback: str | None = None
    state: str = "starting"
    generated_by: dict[str, int] = field(default_factory=dict)
    load_s: float | None = None
    last_error: str | None = None
    node: dict[str, Any] | None = None  # --generator remote: the node's address, round trip, reconnects...
    engine: dict[str, Any] | None = None  # lcm: model family, steps, stream batch, LoRA, ControlNet, device
    vram_mb: float | None = None  # GPU memory this process holds in tensors; None without torch or CUDA
    gpu_paused: bool = False  # pause_gpu: the model is closed and the stand-in dreams


def vram_mb() -> float | None:
    """GPU memory in tensors now, in MB (all CUDA devices), or None when torch is not loaded or has no CUDA.

    Never imports torch: a show on a CPU generator has not loaded it and must not pay for it here. A CUDA that was
    never used reads 0 without being started.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        cuda = torch.cuda
        if not cuda.is_available():
            return None
        if not cuda.is_initialized():
            return 0.0
        return round(sum(cuda.memory_allocated(i) for i in range(cuda.device_count())) / 2**20, 1)
    except Exception:  # noqa: BLE001 - a figure for the report: a broken driver must not stop the report
        return None


@dataclass
class WindowSection:
    size: list[int]
    fullscreen: bool
    headless: bool


@dataclass
class SparkSection:
    sparks: int = 0
    sparks_auto: int = 0
    sparks_manual: int = 0
    sparks_beat: int = 0
    sparks_refused: int = 0
    stagnant_frames: int = 0
    stagnant_share: float = 0.0


@dataclass
class SceneSection:
    scene: str | None = None
    scene_number: int | None = None
    scene_switches: int = 0
    scene_errors: dict[str, str] = field(default_factory=dict)


@dataclass
class Report:
    seconds: float
    frames: int
    fps: float
    generated: int
    shown: int
    frame_ms: dict[str, float]
    interval_ms: dict[str, float]
    late_frames: int
    params: dict[str, Any]
    events: dict[str, int]
    rejected: dict[str, int]
    sparks: SparkSection
    scenes: SceneSection
    dreams_saved: int
    dreams: dict[str, Any] | None
    generator: GeneratorSection
    window: WindowSection
    layers: list[dict[str, Any]]
    sources: dict[str, dict[str, Any]]  # name -> alive, restarts, error
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # each source's own, under its name
    tempo: dict[str, Any] = field(default_factory=dict)  # bpm, source, beat, bar, peers, running

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: spark and scene figures at the top level (as they always were), sections by name."""
        out = asdict(self)
        out.update(out.pop("sparks"))
        out.update(out.pop("scenes"))
        out.update(out.pop("sections"))
        return out

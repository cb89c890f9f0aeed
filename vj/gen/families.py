"""Model families: how a few-step model was distilled, and so how many steps it takes and on which timesteps.

* ``lcm``: Latent Consistency Models (LCM Dreamshaper, an SD 1.5 or SDXL model with an LCM-LoRA fused). 4 steps
  by default, on LCMScheduler's own skipping timesteps (every 20th of 1000, then evenly picked from those).
* ``turbo``: adversarial diffusion distillation (SD-Turbo, SDXL-Turbo): 1 step by default, "trailing" timesteps
  (the last training timestep first, 999 at full strength).
* ``lightning``: progressive adversarial distillation (SDXL-Lightning): 4 steps by default, trailing timesteps
  (999, 749, 499, 249 at full strength, as its authors run it).

All three predict the clean latent in one UNet call a step and renoise it for the next; the engine's consistency
loop runs them alike and takes its timesteps from :func:`timesteps`.

Which family a model is comes from :func:`detect`: ``--family`` when given; else the ``_vj_family`` key of the
scheduler config (``vj model random`` writes it; a hand-made folder may add it to
``scheduler/scheduler_config.json``); else the model's (or the fused LoRA's) name; else LCM's guidance embedding in
the UNet; else ``lcm`` (a model with an LCM-LoRA fused has no other trace of it).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vj.errors import GeneratorUnusable

NAMES = ("lcm", "turbo", "lightning")
CONFIG_KEY = "_vj_family"  # in a scheduler config: the family a saved model belongs to


@dataclass(frozen=True)
class Family:
    name: str  # "lcm" | "turbo" | "lightning"
    xl: bool  # the SDXL layout: two text encoders, pooled text embedding and size ids as added conditioning
    steps: int  # the family's default steps a frame
    spacing: str  # "lcm" (LCMScheduler's own skipping timesteps) or "trailing"
    prediction: str = "epsilon"  # what the UNet predicts: "epsilon" or "v_prediction"


_DEFAULTS = {"lcm": (4, "lcm"), "turbo": (1, "trailing"), "lightning": (4, "trailing")}

LCM = Family("lcm", False, 4, "lcm", "epsilon")


def family(name: str, xl: bool = False, prediction: str = "epsilon") -> Family:
    """The family called ``name`` with its default steps and spacing."""
    if name not in _DEFAULTS:
        raise GeneratorUnusable(f"unknown model family '{name}' (auto, {', '.join(NAMES)})")
    steps, spacing = _DEFAULTS[name]
    return Family(name, xl, steps, spacing, prediction)


def _own(name: str) -> str:
    """A model's own name: the last part of a path or a Hugging Face id, lower case."""
    return (name or "").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()


def _named(name: str | Sequence[str]) -> str | None:
    """The family a name mentions, the first name that mentions one winning. Only the model's own name counts
    (the last part of a path or a Hugging Face id: a folder called ``turbo_ssd`` says nothing about the models in
    it), and within it the word that comes first."""
    for text in [name] if isinstance(name, str) else name:
        low = _own(text)
        found = [(low.find(c), c) for c in ("lightning", "turbo", "lcm") if c in low]
        if found:
            return min(found)[1]
    return None


def detect(
    unet_config: Mapping[str, Any],
    scheduler_config: Mapping[str, Any],
    name: str | Sequence[str] = "",
    override: str = "auto",
) -> Family:
    """The family of a model from its UNet and scheduler configs and its name.

    ``name``: the model's id or path; or several names, the first to mention a family deciding (pass the fused
    LoRA's name before the model's: an LCM-LoRA makes any SD model an ``lcm``). ``override``: ``auto`` or a
    family's name, which wins over everything else."""
    xl = unet_config.get("addition_embed_type") == "text_time"
    prediction = str(scheduler_config.get("prediction_type") or "epsilon")
    if prediction not in ("epsilon", "v_prediction"):
        raise GeneratorUnusable(
            f"the model predicts '{prediction}': the engine runs epsilon and v_prediction models only"
        )
    if override and override != "auto":
        return family(override, xl, prediction)
    marked = scheduler_config.get(CONFIG_KEY)
    if isinstance(marked, str) and marked in NAMES:
        return family(marked, xl, prediction)
    named = _named(name)
    if named is not None:
        found = family(named, xl, prediction)
        # a distilled model named for its step count ("sdxl_lightning_2step") runs that many by default
        names = [name] if isinstance(name, str) else name
        steps = re.search(r"(\d)[-_ ]?steps?(?![a-z])", " ".join(_own(n) for n in names))
        if steps and 1 <= int(steps.group(1)) <= 8:
            found = dataclasses.replace(found, steps=int(steps.group(1)))
        return found
    # without a name that says otherwise the model is an lcm: a distilled LCM (with its guidance embedding), or an
    # SD model with an LCM-LoRA fused (the only way a plain SD model runs in a few consistency steps)
    return family("lcm", xl, prediction)


def timesteps(fam: Family, scheduler: Any, steps: int, strength: float) -> list[int]:
    """The timesteps of one frame, noisiest first: ``steps`` of them (fewer where they coincide) for img2img at
    ``strength`` (1.0: from pure noise). ``scheduler``: the LCMScheduler the engine runs with."""
    if steps < 1:
        raise ValueError(f"steps must be 1 or more, got {steps}")
    if fam.spacing == "lcm":
        # LCM's schedule picks from every k-th training timestep up to strength; a strength below (steps + 1)
        # of its original_inference_steps leaves too few to pick ``steps`` from, so it is raised to that
        strength = max(strength, (steps + 1) / scheduler.config.original_inference_steps)
        scheduler.set_timesteps(steps, strength=min(1.0, strength))
        return [int(t) for t in scheduler.timesteps]
    if fam.spacing != "trailing":
        raise ValueError(f"unknown timestep spacing '{fam.spacing}'")
    train = int(scheduler.config.num_train_timesteps)
    strength = min(1.0, max(0.0, strength))
    out: list[int] = []
    for i in range(steps):
        t = max(0, round(train * strength * (steps - i) / steps) - 1)
        if t not in out:
            out.append(t)
    return out

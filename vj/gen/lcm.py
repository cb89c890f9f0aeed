"""The lcm generator: Latent Consistency Model img2img, the real hallucination engine, built for a frame loop.

``--generator lcm --model ID|FOLDER|FILE.safetensors`` (default ``SimianLuo/LCM_Dreamshaper_v7``): a Hugging Face
id found in the local cache, a diffusers folder, or a single Stable Diffusion 1.x checkpoint (its component
configs then come from ``--model-config``, default: the default model's, from the cache). Nothing is downloaded
here; ``vj model fetch`` does that, when asked.

A naive loop calls ``pipe(prompt=..., image=...)`` each frame: it encodes the prompt again, turns tensors into
PIL images and back, rebuilds the schedule, shows progress bars, runs the safety checker. This engine does
the same arithmetic and nothing else:

* the prompt's embedding is computed once per prompt and cached; ``prompt_b``/``prompt_blend`` interpolate two
  embeddings — a fader between prompts that takes effect on the next frame, no stall;
* the schedule (timesteps, and each step's constants) is prepared once per (steps, strength);
* frames stay tensors on the device from frame to frame; the motion warp is ``grid_sample`` on the device;
  the only copy to the host is the one the window needs;
* no safety checker in the loop (this is a performance tool for a live show: what it shows is what the prompt
  asks for; keep that in mind for public installations), no progress bars;
* float16 (or ``--dtype bfloat16``) on CUDA, SDPA attention (PyTorch 2's default in diffusers), an optional
  tiny autoencoder (``--tiny-vae madebyollin/taesd``) for much cheaper encode/decode, optional ``torch.compile``.

The frame is the decoded image in -1..1 (1 x 3 x H x W); ``latent`` gives the denoised latent behind it.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np

from vj.errors import GeneratorUnusable
from vj.frame import motion
from vj.gen import families
from vj.gen.base import Generator
from vj.gen.models import DEFAULT_MODEL, TINY_VAE, TINY_VAE_XL, locate, locate_lora, require_packages
from vj.gen.pipeline import (
    Cond,
    Parts,
    encode_prompt,
    load_pipeline,
    load_tiny_vae,
    load_vae,
    parts_from,
    pick_device,
    pick_dtype,
    place,
)

log = logging.getLogger(__name__)

# timesteps; per step (c_skip, c_out, sqrt a_t, sqrt b_t, sqrt a_prev, sqrt b_prev); the first step's noising
Schedule = tuple[list[int], list[tuple[float, ...]], tuple[float, float]]


F = TypeVar("F", bound=Callable[..., Any])


def _no_grad(fn: F) -> F:
    """Run without autograd's bookkeeping (grad mode is per thread: the worker's thread is not the loader's)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return cast(F, wrapper)


class LatentDecoder:
    """Pictures from stored latents with the model's own autoencoder: replay's latent morph."""

    def __init__(
        self,
        model: str | None = None,
        model_config: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        tiny_vae: str | None = None,
    ) -> None:
        require_packages()
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        if tiny_vae:  # the latents were made through it: decode them the same way
            self.vae, self.scale = load_tiny_vae(tiny_vae, self.dtype), 1.0
        else:
            self.vae = load_vae(model or DEFAULT_MODEL, model_config, self.dtype)
            self.scale = float(self.vae.config.scaling_factor)
        self.vae = place(self.vae, self.device, self.dtype).eval().requires_grad_(False)

    @_no_grad
    def decode(self, latent: np.ndarray) -> np.ndarray:
        import torch

        z = torch.from_numpy(np.ascontiguousarray(latent, np.float32)).to(self.device, self.dtype)
        image = self.vae.decode(z / self.scale, return_dict=False)[0].clamp(-1, 1)
        return ((image[0].float() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation: the path between two latents that keeps their norm, so the middle of a morph is a
    picture of the same kind rather than a washed-out average."""
    fa, fb = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    cos = float(fa @ fb / (np.linalg.norm(fa) * np.linalg.norm(fb) + 1e-12))
    omega = math.acos(max(-1.0, min(1.0, cos)))
    if math.sin(omega) < 1e-4:
        return (1 - t) * a + t * b
    s = math.sin(omega)
    return ((math.sin((1 - t) * omega) / s) * a + (math.sin(t * omega) / s) * b).astype(np.float32)


class Timer:
    """Time spent inside the models (for the benchmark's model_ms); waits for the device when asked to."""

    def __init__(self, device: Any) -> None:
        self.device, self.ms = device, 0.0
        self.enabled = False

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return fn(*args, **kwargs)
        self._sync()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self._sync()
        self.ms += (time.perf_counter() - t0) * 1000
        return out

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()


@dataclass
class Control:
    """The depth ControlNet's input for a frame (or a stream batch's frames): the depth picture, and how firmly."""

    image: Any  # B x 3 x H x W, 0..1
    scale: Any  # B, a tensor on the device

    @staticmethod
    def stack(controls: list[Control | None]) -> Control | None:
        """One input for a batch; frames that entered with it off get a blank picture at scale 0."""
        import torch

        given = [c for c in controls if c is not None]
        if not given:
            return None
        blank = Control(torch.zeros_like(given[0].image), torch.zeros_like(given[0].scale))
        picked = [c if c is not None else blank for c in controls]
        return Control(torch.cat([c.image for c in picked]), torch.cat([c.scale for c in picked]))


@dataclass
class _InFlight:
    """A frame in a stream batch: what it entered with, and where its denoising stands."""

    frame: int  # its frame number: its noise
    seed: int  # the seed of its denoising steps' noise
    latents: Any  # 1 x 4 x h x w, noised for its next step
    cond: Cond
    timesteps: list[int]
    consts: list[tuple[float, ...]]
    control: Control | None = None  # its depth ControlNet input, when on
    drift: motion.Camera = field(default_factory=motion.new_camera)  # how far the camera moved since it entered


@dataclass
class StreamFrame:
    """What a stream batch gives back: the picture that came out (a frame that entered ``steps - 1`` frames ago,
    moved to the camera of now), and the newest frame's clean-latent estimate after its first step, which the
    loop feeds back. Feeding back the picture instead would close ``steps`` separate loops that take turns on
    screen and flicker against each other; the estimate keeps one dream, one frame after another."""

    shown: Any  # 1 x 3 x H x W in -1..1
    feed: Any  # 1 x 4 x h x w latent
    latent: Any  # the latent behind ``shown``


@dataclass
class Feed:
    """The next frame's input as a latent (a warped stream feed): no encode needed."""

    latent: Any


class LcmGenerator(Generator):
    name = "lcm"
    frame_timeout = 120.0  # a big model on a CPU can take tens of seconds a frame
    loads_slowly = True  # the worker keeps a stand-in dreaming while this loads

    def __init__(
        self,
        size: tuple[int, int] = (512, 512),
        *,
        model: str | None = None,
        model_config: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        steps: int | None = None,
        guidance: float = 8.0,
        tiny_vae: str | None = None,
        compile: bool | str = False,
        family: str = "auto",
        lora: str | None = None,
        stream_batch: bool | None = None,
        controlnet: str | None = None,
        depth_model: str | None = None,
        parts: Parts | None = None,
    ) -> None:
        super().__init__(size)
        if self.width % 8 or self.height % 8:
            raise GeneratorUnusable(f"lcm needs a size divisible by 8, got {self.width}x{self.height}")
        if steps is not None and not 1 <= steps <= 8:
            raise GeneratorUnusable(f"lcm steps must be 1..8, got {steps}")
        self.model, self.model_config = model or DEFAULT_MODEL, model_config
        self.device_name, self.dtype_name = device, dtype
        self.steps = steps or 4  # until the model's family says otherwise (at load, when not given)
        self.steps_given = steps is not None
        self.guidance, self.tiny_vae, self.compile = guidance, tiny_vae, compile
        self.family, self.lora, self.stream_batch = family, lora, stream_batch
        self.controlnet, self.depth_model = controlnet, depth_model
        self.structure: Any = None  # the depth ControlNet, when --controlnet is given
        self._v = False  # the UNet predicts v (velocity) rather than the noise
        self.parts = parts  # given: already loaded (the benchmark shares them with a pipeline)
        self._embeds: OrderedDict[str, Cond] = OrderedDict()
        self._schedules: dict[tuple[int, int], Schedule] = {}
        self._frame = 0
        self._last_latent: Any = None
        self._rng: Any = None
        self._timesteps: dict[int | tuple[int, ...], Any] = {}
        self._flight: list[_InFlight] = []  # stream batch: the frames in flight, stage 1 first
        self.streaming = False  # decided at load: stream_batch, or auto (a GPU and 2+ steps)
        self._engine: dict[str, Any] | None = None  # what report() says, made at load
        self.loading = ""

    # -- loading -----------------------------------------------------------------------------------------------
    def load(self) -> None:
        require_packages()
        import torch

        if self.parts is None:
            self.device = pick_device(self.device_name)
            self.dtype = pick_dtype(self.dtype_name, self.device)
        else:
            self.device, self.dtype = self.parts.unet.device, self.parts.unet.dtype
        stages = (2 if self.parts else 3 + bool(self.tiny_vae)) + bool(self.controlnet)
        bar = _progress(stages, f"loading {self.model}")

        def stage(name: str) -> None:
            self.loading = name
            bar.set_postfix_str(name, refresh=False)

        try:
            self._check_files()  # a missing LoRA or ControlNet is said at once, not after the weights load
            if self.parts is None:
                stage("weights")
                pipe = load_pipeline(self.model, self.model_config, self.dtype, lora=self.lora)
                bar.update(1)
                vae = None
                if self.tiny_vae == TINY_VAE and pipe.unet.config.get("addition_embed_type") == "text_time":
                    log.info("an SDXL model: its tiny autoencoder is %s", TINY_VAE_XL)
                    self.tiny_vae = TINY_VAE_XL  # SD 1.5's TAESD would decode SDXL's latents in wrong colours
                if self.tiny_vae:
                    stage("tiny autoencoder")
                    vae = load_tiny_vae(self.tiny_vae, self.dtype)
                    bar.update(1)
                stage("to the device")
                names = [self.lora or "", self.model]  # an LCM-LoRA makes any model lcm
                self.parts = parts_from(pipe, self.device, self.dtype, vae, family=self.family, name=names)
                del pipe
            bar.update(1)
            if self.controlnet:
                stage("ControlNet and depth")
                from vj.gen.structure import Structure

                self.structure = Structure.load(self.controlnet, self.depth_model, self.device, self.dtype)
                self._check_fit()
                bar.update(1)
            self.timer = Timer(self.device)
            family = self.parts.family
            self.steps = self.steps if self.steps_given else family.steps
            self._v = family.prediction == "v_prediction"
            unet = self.parts.unet
            dim = unet.config.get("time_cond_proj_dim")
            self._w = _guidance_embedding(self.guidance - 1.0, dim).to(self.device, self.dtype) if dim else None
            if self.compile:
                self.parts.unet = _compiled(unet, "inductor" if self.compile is True else str(self.compile))
            wanted = self.device.type == "cuda" if self.stream_batch is None else self.stream_batch
            self.streaming = wanted and self.steps >= 2
            if self.stream_batch and self.steps < 2:
                log.warning("stream batch needs 2 steps or more (%d here): frames are denoised one by one", self.steps)
            stage("warm-up")  # the first frames pay for kernel selection (and compilation): not on stage
            grey: Any = torch.zeros(1, 3, self.height, self.width, device=self.device, dtype=self.dtype)
            # a stream fills its pipeline first, then runs the batched call (both shapes get compiled)
            for _ in range((3 if self.compile else 1) + self.streaming):
                # with the ControlNet on: a model and ControlNet that do not fit fail here, at load, once
                grey = self.generate(grey, {"prompt": "", "seed": 0, "strength": 0.5, "control_strength": 1.0})
                grey = self.warp(grey, motion.new_camera()) if self.streaming else grey
            self._flight = []
            self._engine = self._describe()
            bar.update(1)
        finally:
            bar.close()
            self.loading = ""
        log.info(
            "lcm ready: %s (%s%s, %d steps%s) on %s, %s",
            self.model,
            family.name,
            " XL" if family.xl else "",
            self.steps,
            ", stream batch" if self.streaming else "",
            self.device,
            str(self.dtype).replace("torch.", ""),
        )

    def _check_files(self) -> None:
        """The LoRA, ControlNet and depth model are on this machine (ModelMissing, with the fix, if not)."""
        if self.lora:
            locate_lora(self.lora)
        if self.controlnet:
            from vj.gen.structure import DEFAULT_DEPTH

            locate(self.controlnet, "ControlNet")
            locate(self.depth_model or DEFAULT_DEPTH, "depth model")

    def _check_fit(self) -> None:
        """The ControlNet was made for this model's UNet: else it would fail on every frame."""
        assert self.parts is not None and self.structure is not None
        made, model = self.structure.controlnet.config, self.parts.unet.config
        for key in ("cross_attention_dim", "block_out_channels", "addition_embed_type", "in_channels"):
            a, b = made.get(key), model.get(key)
            if (list(a) if isinstance(a, tuple) else a) != (list(b) if isinstance(b, tuple) else b):
                raise GeneratorUnusable(
                    f"the ControlNet {self.controlnet} was made for another kind of model ({key} {a}; this "
                    f"model's is {b}): use a ControlNet for its architecture"
                )

    def report(self) -> dict[str, Any] | None:
        """What runs: the report's ``generator.engine`` (made once, at load: the worker asks every frame)."""
        return self._engine if self.parts is not None else None

    def _describe(self) -> dict[str, Any]:
        assert self.parts is not None
        family = self.parts.family
        return {
            "family": family.name + (" XL" if family.xl else ""),
            "steps": self.steps,
            "stream_batch": self.streaming,
            "lora": self.lora,
            "controlnet": self.controlnet,
            "tiny_vae": self.parts.tiny_vae,
            "compile": self.compile,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
        }

    def close(self) -> None:
        if self.parts is None:
            return
        self.parts = None
        self._embeds.clear()
        self._flight = []
        if self.structure is not None:
            self.structure.close()
            self.structure = None
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- prompts and schedules, each prepared once -------------------------------------------------------------
    def embedding(self, prompt: str) -> Cond:
        cached = self._embeds.get(prompt)
        if cached is not None:
            self._embeds.move_to_end(prompt)
            return cached
        assert self.parts is not None
        cond = self.timer(encode_prompt, self.parts, prompt, self.device, self.dtype, size=(self.width, self.height))
        self._embeds[prompt] = cond
        if len(self._embeds) > 32:
            self._embeds.popitem(last=False)
        return cond

    def conditioning(self, params: Mapping[str, Any]) -> Cond:
        """The prompt's conditioning, blended toward ``prompt_b`` by ``prompt_blend``."""
        a = self.embedding(str(params.get("prompt", "")))
        other, t = str(params.get("prompt_b", "") or ""), float(params.get("prompt_blend", 0.0))
        if not other or t <= 0:
            return a
        return a.lerp(self.embedding(other), min(1.0, t))

    def schedule(self, steps: int, strength: float) -> Schedule:
        """Timesteps, each step's constants (c_skip, c_out, sqrt a_t, sqrt b_t, sqrt a_prev, sqrt b_prev), and the
        noising constants for the first timestep. Cached per (steps, strength to 0.01)."""
        key = (steps, round(strength * 100))
        cached = self._schedules.get(key)
        if cached is not None:
            return cached
        p = self.parts
        assert p is not None
        s = p.scheduler
        timesteps = families.timesteps(p.family, s, steps, key[1] / 100)
        ac = s.alphas_cumprod
        consts: list[tuple[float, ...]] = []
        for i, t in enumerate(timesteps):
            prev = timesteps[i + 1] if i + 1 < len(timesteps) else t
            a_t = float(ac[t])
            a_prev = float(ac[prev]) if prev >= 0 else float(s.final_alpha_cumprod)
            c_skip, c_out = s.get_scalings_for_boundary_condition_discrete(t)
            consts.append(
                (
                    float(c_skip),
                    float(c_out),
                    math.sqrt(a_t),
                    math.sqrt(1 - a_t),
                    math.sqrt(a_prev),
                    math.sqrt(1 - a_prev),
                )
            )
        a0 = float(ac[timesteps[0]])
        result = (timesteps, consts, (math.sqrt(a0), math.sqrt(1 - a0)))
        self._schedules[key] = result
        return result

    def _timestep(self, t: int) -> Any:
        """The timestep as a tensor already on the device: no copy from the host per UNet call, and one value
        that ``torch.compile`` does not specialise (and recompile) on."""
        tensor = self._timesteps.get(t)
        if tensor is None:
            import torch

            tensor = self._timesteps[t] = torch.tensor([t], device=self.device)
        return tensor

    # -- frames -------------------------------------------------------------------------------------------------
    def _noise(self, shape: tuple[int, ...], seed: int, frame: int | None = None) -> Any:
        """Noise for ``frame`` (default: the current one) and ``seed``: the same draw whichever path asks for it,
        so a frame denoised in a stream batch gets exactly the noise it would get on its own."""
        import torch

        # drawn on the device (no copy from the host), in the memory layout the convolutions prefer
        if self._rng is None:
            self._rng = torch.Generator(device=self.device)
        frame = self._frame if frame is None else frame
        self._rng.manual_seed((seed * 1_000_003 + frame) % 2**63)
        noise = torch.randn(shape, generator=self._rng, device=self.device, dtype=self.dtype)
        return noise.contiguous(memory_format=torch.channels_last) if noise.ndim == 4 else noise

    def _denoise(
        self,
        latents: Any,
        cond: Cond,
        steps_consts: tuple[list[int], list[tuple[float, ...]]],
        seed: int,
        control: Any = None,
    ) -> Any:
        """The consistency steps: each predicts the clean latent, then (but for the last) noises it again."""
        timesteps, consts = steps_consts
        denoised = latents
        for i, (t, (c_skip, c_out, sa, sb, sa_prev, sb_prev)) in enumerate(zip(timesteps, consts, strict=True)):
            out = self._unet(latents, self._timestep(t), cond, control)
            denoised = c_out * self._x0(latents, out, sa, sb) + c_skip * latents
            if i < len(timesteps) - 1:
                latents = sa_prev * denoised + sb_prev * self._noise(tuple(latents.shape), seed + i)
        return denoised

    def _unet(self, latents: Any, timesteps: Any, cond: Cond, control: Control | None = None) -> Any:
        """One UNet call: what it predicts for ``latents`` (a frame, or a stream batch's frames)."""
        p = self.parts
        assert p is not None
        batch = latents.shape[0]
        w = self._w if self._w is None or batch == 1 else self._w.expand(batch, -1)
        kwargs: dict[str, Any] = {"encoder_hidden_states": cond.embeds, "timestep_cond": w}
        if cond.added is not None:
            kwargs["added_cond_kwargs"] = cond.added
        if control is not None and self.structure is not None:
            # run at scale 1 and weigh per frame: the frames of a stream batch entered at different fader settings
            res = self.timer(self.structure.residuals, latents, timesteps, cond, control.image, 1.0)
            weight = control.scale.to(latents.dtype)[:, None, None, None]
            kwargs["down_block_additional_residuals"] = [r * weight for r in res["down_block_additional_residuals"]]
            kwargs["mid_block_additional_residual"] = res["mid_block_additional_residual"] * weight
        return self.timer(p.unet, latents, timesteps, return_dict=False, **kwargs)[0]

    def _x0(self, latents: Any, out: Any, sa: Any, sb: Any) -> Any:
        """The clean latent the UNet's prediction implies (from the noise, or from v for v-prediction models)."""
        return sa * latents - sb * out if self._v else (latents - sb * out) / sa

    def _control(self, image: Any, params: Mapping[str, Any]) -> Control | None:
        """The depth ControlNet's input for a frame made from ``image``; None when off (no cost)."""
        scale = float(params.get("control_strength", 0.0)) if self.structure is not None else 0.0
        if scale <= 0:
            return None
        import torch

        picture = self._decode(image.latent) if isinstance(image, Feed) else image
        return Control(self.timer(self.structure.control_image, picture), torch.tensor([scale], device=self.device))

    def _encode(self, image: Any) -> Any:
        import torch

        p = self.parts
        assert p is not None
        # channels-last (NHWC) convolutions are ~10% faster on the CPU (oneDNN) and use the tensor cores' layout
        # on CUDA; the latents keep the layout through the UNet and the decoder
        image = image.contiguous(memory_format=torch.channels_last)
        if p.tiny_vae:
            return self.timer(p.vae.encode, image).latents * p.scale
        return self.timer(p.vae.encode, image).latent_dist.mean * p.scale

    def _decode(self, latents: Any) -> Any:
        p = self.parts
        assert p is not None
        return self.timer(p.vae.decode, latents / p.scale, return_dict=False)[0].clamp(-1, 1)

    @staticmethod
    def denoise_strength(params: Mapping[str, Any]) -> float:
        """How far each frame is noised before denoising (img2img strength): the ``strength`` parameter, pushed
        up by ``chaos``; 0.1 at least, so that the dream keeps moving."""
        strength = 0.1 + 0.55 * float(params.get("strength", 0.45)) + 0.3 * float(params.get("chaos", 0.0))
        return min(1.0, strength)

    @_no_grad
    def generate(self, image: Any, params: Mapping[str, Any]) -> Any:
        if image is None:  # the loop starts afresh: so does the stream
            self._flight = []
            return self.fresh(params)
        if isinstance(image, np.ndarray):
            image = self.adopt(image)
        self._frame += 1
        seed = int(params.get("seed", 0))
        timesteps, consts, (na, nb) = self.schedule(self.steps, self.denoise_strength(params))
        cond = self.conditioning(params)
        control = self._control(image, params)
        latents = image.latent if isinstance(image, Feed) else self._encode(image)
        latents = na * latents + nb * self._noise(tuple(latents.shape), seed)
        if self.streaming and len(timesteps) == self.steps:
            return self._stream(_InFlight(self._frame, seed + 17, latents, cond, timesteps, consts, control))
        self._last_latent = self._denoise(latents, cond, (timesteps, consts), seed + 17, control)
        return self._decode(self._last_latent)

    # -- stream batch -------------------------------------------------------------------------------------------
    def _stream(self, new: _InFlight) -> StreamFrame:
        """Enter ``new`` at the first step; one batched UNet call moves every frame in flight one step on; the
        frame that took its last step comes out. Each frame is denoised exactly as on its own (its own noise,
        conditioning and schedule); the batch only shares the call."""
        import torch

        if len(self._flight) != self.steps - 1:
            return self._stream_fill(new)
        batch = [new, *self._flight]  # stages 0 .. steps-1
        latents = torch.cat([f.latents for f in batch])
        key = tuple(f.timesteps[stage] for stage, f in enumerate(batch))
        t = self._timesteps.get(key)
        if t is None:
            if len(self._timesteps) > 512:  # a strength fader that never rests makes new mixes of schedules
                self._timesteps.clear()
            t = self._timesteps[key] = torch.tensor(key, device=self.device)
        c = torch.tensor([f.consts[stage] for stage, f in enumerate(batch)], device=self.device, dtype=self.dtype)
        c_skip, c_out, sa, sb, sa_prev, sb_prev = (c[:, i, None, None, None] for i in range(6))
        out = self._unet(latents, t, Cond.stack([f.cond for f in batch]), Control.stack([f.control for f in batch]))
        denoised = c_out * self._x0(latents, out, sa, sb) + c_skip * latents
        done = batch[-1]
        for stage, f in enumerate(batch[:-1]):
            noise = self._noise(tuple(new.latents.shape), f.seed + stage, f.frame)
            f.latents = sa_prev[stage] * denoised[stage : stage + 1] + sb_prev[stage] * noise
        self._flight = batch[:-1]
        self._last_latent = denoised[-1:]
        shown = self._decode(self._last_latent)
        if not motion.is_still(done.drift):  # it entered steps-1 frames ago: move it to where the camera is now
            shown = self.warp(shown, done.drift)
            self._last_latent = self.warp(self._last_latent, done.drift)  # a kept dream's latent matches its picture
        return StreamFrame(shown, denoised[:1], self._last_latent)

    def _stream_fill(self, new: _InFlight) -> StreamFrame:
        """An empty (or broken) pipeline: denoise ``new`` on its own, and fill the pipeline with it at every later
        step. The next ``steps - 1`` frames come out as this one again (a hold of a few frames when the stream
        starts), then each frame follows the one before it."""
        self._flight = []
        latents, estimate = new.latents, None
        for stage, (t, (c_skip, c_out, sa, sb, sa_prev, sb_prev)) in enumerate(
            zip(new.timesteps, new.consts, strict=True)
        ):
            out = self._unet(latents, self._timestep(t), new.cond, new.control)
            denoised = c_out * self._x0(latents, out, sa, sb) + c_skip * latents
            estimate = denoised if estimate is None else estimate
            if stage < self.steps - 1:
                latents = sa_prev * denoised + sb_prev * self._noise(tuple(latents.shape), new.seed + stage, new.frame)
                copy = _InFlight(new.frame, new.seed, latents, new.cond, new.timesteps, new.consts, new.control)
                self._flight.append(copy)  # at stage 1 .. steps-1
        self._last_latent = denoised
        return StreamFrame(self._decode(denoised), estimate, denoised)

    @_no_grad
    def fresh(self, params: Mapping[str, Any]) -> Any:
        """From noise alone (text to image): a new picture of the prompt, for the first frame and for sparks."""
        self._frame += 1  # (the frames in flight, if any, go on: a spark's bloom is mixed into the stream)
        seed = int(params.get("seed", 0))
        timesteps, consts, _ = self.schedule(self.steps, 1.0)
        latents = self._noise((1, 4, self.height // 8, self.width // 8), seed)  # LCM's initial noise scale is 1
        self._last_latent = self._denoise(latents, self.conditioning(params), (timesteps, consts), seed + 31)
        return self._decode(self._last_latent)

    def latent(self, frame: Any) -> Any:
        return frame.latent if isinstance(frame, StreamFrame) else self._last_latent

    def adopt(self, image: Any) -> Any:
        import torch

        if isinstance(image, StreamFrame):  # another lcm's frame (a restarted generator): its picture
            image = image.shown
        if isinstance(image, torch.Tensor):
            return image.to(self.device, self.dtype)
        t = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        return (t.permute(2, 0, 1)[None].to(self.dtype) / 127.5 - 1.0).contiguous()

    def to_display(self, frame: Any) -> np.ndarray:
        import torch

        if isinstance(frame, np.ndarray):
            return frame
        if isinstance(frame, StreamFrame):
            frame = frame.shown
        elif isinstance(frame, Feed):
            frame = self._decode(frame.latent)
        img = ((frame[0].float() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
        return img.cpu().numpy()

    @_no_grad
    def warp(self, frame: Any, delta: motion.Camera) -> Any:
        import torch
        import torch.nn.functional as F

        if isinstance(frame, np.ndarray):
            return motion.warp(frame, delta)
        if isinstance(frame, StreamFrame):
            # the loop moves on: every frame in flight drifts from the camera it entered with
            for f in self._flight:
                f.drift = f.drift + delta
            return Feed(frame.feed if motion.is_still(delta) else self.warp(frame.feed, delta))
        if motion.is_still(delta):
            return frame
        theta = torch.from_numpy(_sample_grid_matrix(delta, self.width, self.height)).to(self.device, frame.dtype)
        grid = F.affine_grid(theta[None], list(frame.shape), align_corners=False)
        return F.grid_sample(frame, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    @_no_grad
    def mix(self, frame: Any, other: Any, weights: Any, mode: str = "normal") -> Any:
        import torch

        if isinstance(frame, np.ndarray):
            return super().mix(frame, self.to_display(other), weights, mode)
        if isinstance(frame, Feed | StreamFrame):  # mixing is in pictures: decode the latent once
            frame = self._decode(frame.latent) if isinstance(frame, Feed) else frame.shown
        if isinstance(other, StreamFrame | Feed):
            other = other.shown if isinstance(other, StreamFrame) else self._decode(other.latent)
        b = (frame + 1) / 2
        layer = (self.adopt(other) + 1) / 2
        w = torch.as_tensor(weights, dtype=frame.dtype).to(self.device)
        if w.ndim == 2:
            w = w[None, None]
        # the blend modes of vj.frame.compose.blend, on 0..1 tensors
        if mode == "add":
            mixed = (b + layer).clamp(max=1)
        elif mode == "screen":
            mixed = 1 - (1 - b) * (1 - layer)
        elif mode == "multiply":
            mixed = b * layer
        elif mode == "difference":
            mixed = (b - layer).abs()
        else:
            mixed = layer
        return (b + (mixed - b) * w) * 2 - 1


def _sample_grid_matrix(delta: motion.Camera, width: int, height: int) -> np.ndarray:
    """``motion.warp_matrix`` (pixels, source -> screen) as ``affine_grid``'s 2x3 (normalised, screen -> source)."""
    m = np.vstack([motion.warp_matrix(delta, width, height), [0, 0, 1]])
    # pixel centres to -1..1 (align_corners=False): x_n = (2x + 1) / W - 1
    n = np.array([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1]])
    return (n @ np.linalg.inv(m) @ np.linalg.inv(n))[:2].astype(np.float32)


def _compiled(unet: Any, backend: str) -> Any:
    """The UNet through ``torch.compile``: inductor with CUDA graphs (static shapes: a stream batch is always
    ``steps`` frames), or TensorRT where the ``torch-tensorrt`` package is installed (never required)."""
    import importlib.util

    import torch

    if backend == "inductor":
        return torch.compile(unet, mode="reduce-overhead", fullgraph=False)
    if backend != "tensorrt":
        raise GeneratorUnusable(f"unknown compile backend '{backend}' (inductor or tensorrt)")
    if importlib.util.find_spec("torch_tensorrt") is None:
        raise GeneratorUnusable("--compile tensorrt needs the torch-tensorrt package: pip install torch-tensorrt")
    if unet.device.type != "cuda":
        raise GeneratorUnusable("--compile tensorrt runs on an NVIDIA GPU only (use --compile, or no compile)")
    import torch_tensorrt  # noqa: F401 - registers the backend

    options: dict[str, Any] = {"enabled_precisions": {unet.dtype}}
    return torch.compile(unet, backend="torch_tensorrt", dynamic=False, options=options)


def _guidance_embedding(w: float, dim: int) -> Any:
    """The guidance-scale embedding LCM's UNet takes with its timestep (as in diffusers' LCM pipelines)."""
    import torch

    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    emb = torch.tensor([w * 1000.0])[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    return torch.nn.functional.pad(emb, (0, 1)) if dim % 2 else emb


def _progress(total: int, text: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=text, unit="step", leave=False)

"""Structure guidance: a depth ControlNet fed with a depth estimate of the previous frame.

The lcm generator feeds each frame back, zoomed, as the next frame's start: forms melt as they grow. A ControlNet
trained on depth maps (``lllyasviel/control_v11f1p_sd15_depth`` for SD 1.5 models) steers each UNet call toward the
previous frame's layout, so a face stays a face while the zoom carries it. Per frame: one depth estimate
(``control_image``, Depth Anything V2 Small by default, any ``AutoModelForDepthEstimation``), then one ControlNet
call beside each UNet call (``residuals``), its output added to the UNet's skip connections. At scale 0 nothing
runs.

Everything stays on the device: the depth model's preprocessing (resize, mean and std, as its image processor
configures them) is done with torch ops, not PIL images.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vj.errors import GeneratorError
from vj.gen.models import ModelMissing, locate, require_packages
from vj.gen.pipeline import Cond, pick_device, pick_dtype, place

DEFAULT_DEPTH = "depth-anything/Depth-Anything-V2-Small-hf"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Depth Anything's sizes, for random models: ``tiny`` for tests, ``vits`` the public V2 Small (real timing).
DEPTH_ARCHS: dict[str, dict[str, Any]] = {
    "tiny": {
        "backbone": {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4, "mlp_ratio": 2},
        "out_indices": [1, 2, 3, 4],
        "neck_hidden_sizes": [8, 16, 16, 32],
        "fusion_hidden_size": 16,
        "head_hidden_size": 8,
        "size": 42,
    },
    "vits": {
        "backbone": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "mlp_ratio": 4},
        "out_indices": [3, 6, 9, 12],
        "neck_hidden_sizes": [48, 96, 192, 384],
        "fusion_hidden_size": 64,
        "head_hidden_size": 32,
        "size": 518,
    },
}


def _patch_size(config: Any) -> int:
    """The depth model's patch size (the input must be a multiple of it); 1 where it has none."""
    for source in (config, getattr(config, "backbone_config", None)):
        size = getattr(source, "patch_size", None)
        if isinstance(size, (list, tuple)):
            size = size[0]
        if isinstance(size, int) and size > 0:
            return size
    return 1


def _read_processor(folder: Path) -> dict[str, Any] | None:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelMissing(f"cannot load the depth model {folder}: {path.name}: {type(e).__name__}: {e}") from None
    return data if isinstance(data, dict) else None


class Structure:
    """A ControlNet and a depth model on one device: control images from frames, residuals for the UNet."""

    def __init__(
        self,
        controlnet: Any,
        depth: Any,
        device: Any,
        dtype: Any,
        *,
        processor: Any = None,
        depth_size: int | None = None,
    ) -> None:
        """``processor``: the depth model's image processor (or its config dict; None: the model type's defaults).
        ``depth_size``: the depth model's input size instead of the processor's (smaller is faster)."""
        self.device, self.dtype = device, dtype
        self.controlnet: Any = place(controlnet, device, dtype).eval().requires_grad_(False)
        self.depth: Any = place(depth, device, dtype).eval().requires_grad_(False)
        config = processor.to_dict() if hasattr(processor, "to_dict") else dict(processor or {})
        anything = "depth_anything" in str(getattr(self.depth.config, "model_type", ""))
        size = config.get("size") or ((518, 518) if anything else (384, 384))
        if isinstance(size, dict):
            edge = size.get("shortest_edge") or size.get("longest_edge")
            size = (size["height"], size["width"]) if "height" in size else (edge, edge)
        elif isinstance(size, int):
            size = (size, size)
        if depth_size:
            size = (depth_size, depth_size)
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise ValueError(f"the depth model's input size must be positive pixels, not {size!r}")
        self.input_size: tuple[int, int] = (size[0], size[1])
        self.keep_aspect = bool(config.get("keep_aspect_ratio", anything))
        self.multiple = math.lcm(max(1, int(config.get("ensure_multiple_of", 1) or 1)), _patch_size(self.depth.config))
        self.bicubic = int(config.get("resample", 3)) == 3  # PIL's BICUBIC (DPT's default), else bilinear
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if anything else ((0.5,) * 3, (0.5,) * 3)
        mean, std = config.get("image_mean", mean), config.get("image_std", std)
        if not config.get("do_normalize", True):
            mean, std = (0.0,) * 3, (1.0,) * 3
        import torch

        self._mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    # -- loading ------------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        controlnet: str,
        depth_model: str | None,
        device: Any = "auto",
        dtype: Any = "auto",
        *,
        depth_size: int | None = None,
    ) -> Structure:
        """A ControlNet and a depth model (None: ``DEFAULT_DEPTH``), each a diffusers/transformers folder or a
        Hugging Face id already in the local cache (nothing is downloaded). ``device``/``dtype``: torch objects or
        names ("auto", "cuda", "float16"...)."""
        require_packages()
        from diffusers import ControlNetModel
        from transformers import AutoModelForDepthEstimation

        if isinstance(device, str):
            device = pick_device(device)
        if isinstance(dtype, str):
            dtype = pick_dtype(dtype, device)
        depth_model = depth_model or DEFAULT_DEPTH
        control_path = _folder(controlnet, "ControlNet")
        depth_path = _folder(depth_model, "depth model")
        try:
            net = ControlNetModel.from_pretrained(control_path, local_files_only=True, dtype=dtype)
        except GeneratorError:
            raise
        except Exception as e:  # noqa: BLE001 - broken files surface as many kinds of error
            raise ModelMissing(f"cannot load the ControlNet {controlnet}: {type(e).__name__}: {e}") from None
        processor = _read_processor(depth_path)
        try:
            depth = AutoModelForDepthEstimation.from_pretrained(depth_path, local_files_only=True, dtype=dtype)
        except GeneratorError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ModelMissing(f"cannot load the depth model {depth_model}: {type(e).__name__}: {e}") from None
        try:
            return cls(net, depth, device, dtype, processor=processor, depth_size=depth_size)
        except (TypeError, ValueError, KeyError) as e:  # a preprocessor config with values of the wrong kind
            raise ModelMissing(
                f"cannot load the depth model {depth_model}: preprocessor_config.json: {type(e).__name__}: {e}"
            ) from None

    def close(self) -> None:
        """Drop the models (and the device memory they held)."""
        if self.controlnet is None and self.depth is None:
            return
        self.controlnet = self.depth = None
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- per frame ----------------------------------------------------------------------------------------------
    def depth_input_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the depth model sees for an ``height`` x ``width`` frame (as its image processor resizes)."""
        out_h, out_w = self.input_size
        scale_h, scale_w = out_h / height, out_w / width
        if self.keep_aspect:  # scale as little as possible, the same both ways
            if abs(1 - scale_w) < abs(1 - scale_h):
                scale_h = scale_w
            else:
                scale_w = scale_h
        m = self.multiple
        return max(m, round(scale_h * height / m) * m), max(m, round(scale_w * width / m) * m)

    def pixel_values(self, images: Any) -> Any:
        """Frames (B x 3 x H x W in -1..1) as the depth model's input: resized, normalised, in its dtype."""
        import torch.nn.functional as F

        x = (images.float().clamp(-1, 1) + 1) * 0.5
        size = self.depth_input_size(int(x.shape[-2]), int(x.shape[-1]))
        if size != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=size, mode="bicubic" if self.bicubic else "bilinear", align_corners=False)
        return ((x - self._mean) / self._std).to(self.depth.dtype)

    def control_image(self, images: Any) -> Any:
        """The ControlNet's conditioning image for frames B x 3 x H x W in -1..1: each frame's depth, near bright,
        stretched to 0..1 (a flat depth gives zeros), as 3 channels, B x 3 x H x W in the ControlNet's dtype."""
        import torch
        import torch.nn.functional as F

        height, width = int(images.shape[-2]), int(images.shape[-1])
        with torch.no_grad():
            depth = self.depth(pixel_values=self.pixel_values(images)).predicted_depth
            depth = depth.float()
            if depth.ndim == 3:
                depth = depth.unsqueeze(1)
            depth = depth[:, :1]
            if tuple(depth.shape[-2:]) != (height, width):
                depth = F.interpolate(depth, size=(height, width), mode="bilinear", align_corners=False)
            depth = torch.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0)
            low = depth.amin(dim=(1, 2, 3), keepdim=True)
            high = depth.amax(dim=(1, 2, 3), keepdim=True)
            span = high - low
            flat = span <= 1e-6 * torch.maximum(high.abs(), low.abs()) + 1e-12
            depth = torch.where(flat, torch.zeros_like(depth), (depth - low) / span.clamp_min(1e-12))
            return depth.clamp(0, 1).expand(-1, 3, -1, -1).to(self.controlnet.dtype).contiguous()

    def residuals(self, latents: Any, timesteps: Any, cond: Cond, control: Any, scale: float) -> dict[str, Any]:
        """The ControlNet's additions for one UNet call, as the UNet's keyword arguments
        (``down_block_additional_residuals``, ``mid_block_additional_residual``); ``{}`` at ``scale`` <= 0,
        without running the ControlNet. ``latents``, ``cond`` and ``control`` share the batch; ``timesteps``: one
        per frame (a 1-D tensor of length B) or one for all."""
        if scale <= 0:
            return {}
        import torch

        batch = latents.shape[0]
        embeds = cond.embeds
        if embeds.shape[0] == 1 and batch > 1:
            embeds = embeds.expand(batch, -1, -1)
        if control.shape[0] == 1 and batch > 1:
            control = control.expand(batch, -1, -1, -1)
        kwargs: dict[str, Any] = {}
        if cond.added is not None:
            kwargs["added_cond_kwargs"] = {
                k: v.expand(batch, *v.shape[1:]) if v.shape[0] == 1 and batch > 1 else v for k, v in cond.added.items()
            }
        with torch.no_grad():
            down, mid = self.controlnet(
                latents,
                timesteps,
                encoder_hidden_states=embeds,
                controlnet_cond=control,
                conditioning_scale=float(scale),
                return_dict=False,
                **kwargs,
            )
        return {"down_block_additional_residuals": list(down), "mid_block_additional_residual": mid}


def _folder(name: str, what: str) -> Path:
    kind, path = locate(name, what)
    if kind != "folder":
        raise ModelMissing(f"{what} {name}: give a diffusers/transformers folder or a Hugging Face id, not one file")
    return path


# -- random weights: the real arithmetic without a download ---------------------------------------------------------
def random_controlnet(unet: Any, seed: int = 0) -> Any:
    """A ControlNet for ``unet``'s architecture (copying its encoder, as ControlNet training starts) whose zero
    convolutions are random, so its residuals are not zero. Its conditioning encoder has the public SD 1.5 widths
    (16, 32, 96, 256) for an SD-sized UNet, narrower for narrower ones."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    width = int(unet.config.block_out_channels[0])
    channels = tuple(max(8, round(c * width / 320 / 8) * 8) for c in (16, 32, 96, 256))
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels, load_weights_from_unet=False)
    # from_unet's own copy fails on an LCM UNet: its time embedding has the guidance projection, which ControlNets
    # (trained on SD 1.5) lack
    net.conv_in.load_state_dict(unet.conv_in.state_dict())
    net.time_embedding.load_state_dict(unet.time_embedding.state_dict(), strict=False)
    net.down_blocks.load_state_dict(unet.down_blocks.state_dict())
    net.mid_block.load_state_dict(unet.mid_block.state_dict())
    if getattr(net, "add_embedding", None) is not None and getattr(unet, "add_embedding", None) is not None:
        net.add_embedding.load_state_dict(unet.add_embedding.state_dict())  # SDXL's pooled text and size ids
    for conv in (*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out):
        conv.reset_parameters()
    return net.eval()


def random_depth(seed: int = 0, arch: str = "tiny") -> tuple[Any, Any]:
    """A Depth Anything model with random weights (``tiny``, or ``vits``: V2 Small's sizes) and its image
    processor. Its convolutions have PyTorch's default initialisation and the head's last bias is positive, so
    the depth varies with the picture instead of vanishing under the final ReLU."""
    import torch
    import transformers
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    if arch not in DEPTH_ARCHS:
        raise ValueError(f"unknown depth architecture '{arch}' (choose {', '.join(DEPTH_ARCHS)})")
    a = DEPTH_ARCHS[arch]
    torch.manual_seed(seed)
    # Dinov2's backbone options (out_indices) pass as keywords its typed signature does not list
    options: dict[str, Any] = {"out_indices": a["out_indices"], "reshape_hidden_states": False, **a["backbone"]}
    backbone = Dinov2Config(image_size=a["size"], patch_size=14, **options)
    config = DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=a["backbone"]["hidden_size"],
        neck_hidden_sizes=a["neck_hidden_sizes"],
        fusion_hidden_size=a["fusion_hidden_size"],
        head_hidden_size=a["head_hidden_size"],
    )
    model = DepthAnythingForDepthEstimation(config)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.reset_parameters()
    bias = model.head.conv3.bias
    assert bias is not None
    torch.nn.init.constant_(bias, 1.0)
    # the PIL flavour where it exists: the default one wants torchvision, and only the saved config matters here
    processor_class = getattr(transformers, "DPTImageProcessorPil", None) or transformers.DPTImageProcessor
    processor = processor_class(
        size={"height": a["size"], "width": a["size"]},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )
    return model.eval(), processor


def random_structure(unet: Any, device: Any = None, dtype: Any = None, seed: int = 0, arch: str = "tiny") -> Structure:
    """A Structure with random weights for ``unet`` (in memory), on ``unet``'s device and dtype unless given."""
    depth, processor = random_depth(seed, arch)
    device = device if device is not None else unet.device
    dtype = dtype if dtype is not None else unet.dtype
    return Structure(random_controlnet(unet, seed), depth, device, dtype, processor=processor)


def save_random_structure(
    folder: Path, unet: Any = None, seed: int = 0, arch: str = "tiny", depth_arch: str | None = None
) -> tuple[Path, Path]:
    """Random ControlNet and depth model saved as loadable folders, ``folder/controlnet`` and ``folder/depth``.
    ``unet``: the model's UNet the ControlNet fits (default: the random LCM pipeline ``arch``'s, built with
    ``seed``); ``depth_arch``: ``tiny`` or ``vits`` (default: ``tiny`` for the tiny architectures, else ``vits``)."""
    if unet is None:
        from vj.gen.random_models import random_pipeline

        unet = random_pipeline(arch, seed).unet
    folder = Path(folder)
    control_dir, depth_dir = folder / "controlnet", folder / "depth"
    random_controlnet(unet, seed).save_pretrained(control_dir, safe_serialization=True)
    depth, processor = random_depth(seed, depth_arch or ("tiny" if arch.startswith("tiny") else "vits"))
    depth.save_pretrained(depth_dir)
    processor.save_pretrained(depth_dir)
    return control_dir, depth_dir

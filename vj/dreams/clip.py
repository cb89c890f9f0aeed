"""CLIP's opinion of a dream: how well the picture matches its prompt (cosine similarity of the embeddings).

Optional (``--clip MODEL``): a Hugging Face model id that is already in the local cache, or a folder holding a
CLIP model and its tokenizer (``save_pretrained`` output). Nothing is downloaded here. torch and transformers are
imported on first use, on the dream keeper's thread, never at start-up. The picture is prepared by hand (resize,
centre crop, CLIP's normalisation) so no image-processing backend is needed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vj.errors import ConfigError

log = logging.getLogger(__name__)

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def locate(model: str) -> Path:
    """The local folder of ``model`` (a folder, or an id in the Hugging Face cache); ConfigError if absent."""
    path = Path(model)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError("not a model folder (no config.json)", file=model, fix="give a save_pretrained folder")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, not a valid id, no hub library: all the same to the user
        raise ConfigError(
            "CLIP model not found on this machine",
            file=model,
            fix="give a local folder, or download it once while online (huggingface-cli download " + model + ")",
        ) from None


class ClipScorer:
    def __init__(self, model: str) -> None:
        self.path = locate(model)
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._text: dict[str, Any] = {}
        self.size = 224

    def _load(self) -> None:
        import torch
        from transformers import CLIPModel, CLIPTokenizer

        torch.set_grad_enabled(False)
        self._model = CLIPModel.from_pretrained(self.path, local_files_only=True).eval()
        self._tokenizer = CLIPTokenizer.from_pretrained(self.path, local_files_only=True)
        self.size = int(self._model.config.vision_config.image_size)
        log.info("CLIP scoring with %s", self.path)

    def _pixels(self, image: np.ndarray) -> Any:
        import torch

        h, w = image.shape[:2]
        scale = self.size / min(h, w)
        resized = cv2.resize(
            image,
            (max(self.size, round(w * scale)), max(self.size, round(h * scale))),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
        )
        y, x = (resized.shape[0] - self.size) // 2, (resized.shape[1] - self.size) // 2
        crop = resized[y : y + self.size, x : x + self.size].astype(np.float32) / 255.0
        return torch.from_numpy(((crop - MEAN) / STD).transpose(2, 0, 1)[None].copy())

    @staticmethod
    def _features(out: Any) -> Any:
        return out if hasattr(out, "norm") else out.pooler_output  # a tensor, or (transformers 5) an output

    def score(self, image: np.ndarray, prompt: str) -> float:
        """0..1: (cosine similarity of picture and prompt + 1) / 2."""
        import torch

        with self._lock, torch.no_grad():
            if self._model is None:
                self._load()
            text = self._text.get(prompt)
            if text is None:
                ids = self._tokenizer([prompt], padding=True, truncation=True, return_tensors="pt")
                text = self._features(self._model.get_text_features(**ids))
                text = text / text.norm(dim=-1, keepdim=True)
                if len(self._text) > 64:
                    self._text.clear()
                self._text[prompt] = text
            img = self._features(self._model.get_image_features(pixel_values=self._pixels(image)))
            img = img / img.norm(dim=-1, keepdim=True)
            return float(((img @ text.T).item() + 1.0) / 2.0)

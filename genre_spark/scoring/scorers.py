"""Three language-model scorers behind one interface.

A :class:`Scorer` scores (profile text, item text) pairs with a pure function (``score``: lists in,
numpy out, one process) and through Spark (``spark_scores``: a batched pandas UDF on the executors).
Both paths call the same model code in :mod:`genre_spark.scoring.models`, so they agree to float
precision; tests hold them to it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from genre_spark import schemas as S
from genre_spark.config import CausalLMSettings, ScorerSettings, ScoringSettings
from genre_spark.errors import ConfigError
from genre_spark.scoring.models import (
    ModelSpec,
    answer_token_ids,
    check_pairs,
    cross_encoder_scores,
    embed,
    resolve_model_path,
    yes_probabilities,
)
from genre_spark.scoring.udfs import dot_product, embedding_udf, pair_udf

PROFILE_TEXT = "profile_text"
ITEM_TEXT = "item_text"


@dataclass(frozen=True)
class ScoringInputs:
    """What the Spark path of every scorer may read: pairs to score and the texts/vectors behind them."""

    pairs: DataFrame  # user_id, item_id
    profiles: DataFrame  # user_id, profile_text
    items: DataFrame  # item_id, title, item_text
    item_vectors: DataFrame | None  # item_id, embedding (title embeddings), when they match the bi-encoder


class Scorer(ABC):
    """Scores how well an item fits a user, from their texts. Plain values only: it travels to executors."""

    name: ClassVar[str]

    def __init__(self, spec: ModelSpec, top_n: int) -> None:
        self.spec = spec
        self.top_n = top_n

    @abstractmethod
    def score(self, profiles: Sequence[str], items: Sequence[str]) -> np.ndarray:
        """One float per (profile, item) pair, in input order. Pure: no Spark."""

    def check(self) -> Any:
        """Driver-side checks before any Spark job: the tokenizer loads (the weights are not loaded
        here). Returns the tokenizer for subclasses' own checks."""
        import transformers

        try:
            return transformers.AutoTokenizer.from_pretrained(self.spec.model_path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"scoring.{self.name}: cannot load a tokenizer from {self.spec.model_path!r}: {exc}"
            ) from None

    def spark_scores(self, inputs: ScoringInputs) -> DataFrame:
        """(user_id, item_id, score) for ``inputs.pairs``, scored in the executors' Python workers."""
        pairs = inputs.pairs.join(inputs.profiles, S.USER_ID).join(
            inputs.items.select(S.ITEM_ID, ITEM_TEXT), S.ITEM_ID
        )
        udf = pair_udf(self.score, self.spec.batch_size)
        return pairs.select(S.USER_ID, S.ITEM_ID, udf(F.col(PROFILE_TEXT), F.col(ITEM_TEXT)).alias("score"))


class BiEncoderScorer(Scorer):
    """Cosine of mean-pooled, normalised embeddings of the profile and the item title.

    In Spark only profiles are encoded (one text per user); item vectors come from ``item_embeddings``
    when they were made by the same model, else titles are encoded in the same run."""

    name = "bi_encoder"

    def score(self, profiles: Sequence[str], items: Sequence[str]) -> np.ndarray:
        check_pairs(profiles, items)
        texts = sorted(set(profiles) | set(items))
        vectors = embed(texts, self.spec)
        row = {t: i for i, t in enumerate(texts)}
        left = vectors[[row[p] for p in profiles]]
        right = vectors[[row[t] for t in items]]
        return np.einsum("ij,ij->i", left, right).astype(np.float64)

    def spark_scores(self, inputs: ScoringInputs) -> DataFrame:
        encode = embedding_udf(self.spec)
        users = inputs.pairs.select(S.USER_ID).distinct().join(inputs.profiles, S.USER_ID)
        profile_vectors = users.select(S.USER_ID, encode(F.col(PROFILE_TEXT)).alias("_u"))
        item_vectors = inputs.item_vectors
        if item_vectors is None:
            titles = inputs.items.join(inputs.pairs.select(S.ITEM_ID).distinct(), S.ITEM_ID)
            item_vectors = titles.select(S.ITEM_ID, encode(F.col(S.TITLE)).alias(S.EMBEDDING))
        return (
            inputs.pairs.join(profile_vectors, S.USER_ID)
            .join(item_vectors.select(S.ITEM_ID, S.EMBEDDING), S.ITEM_ID)
            .select(S.USER_ID, S.ITEM_ID, dot_product(F.col("_u"), F.col(S.EMBEDDING)).alias("score"))
        )


class CrossEncoderScorer(Scorer):
    """A sequence-classification model reads the profile and the item text together."""

    name = "cross_encoder"

    def score(self, profiles: Sequence[str], items: Sequence[str]) -> np.ndarray:
        return cross_encoder_scores(profiles, items, self.spec).astype(np.float64)


class CausalLMScorer(Scorer):
    """P(yes) against P(no) for the next token after a prompt holding the profile and the item."""

    name = "causal_lm"

    def __init__(self, spec: ModelSpec, top_n: int, prompt: str, yes_token: str, no_token: str) -> None:
        super().__init__(spec, top_n)
        self.prompt = prompt
        self.yes_token = yes_token
        self.no_token = no_token

    def score(self, profiles: Sequence[str], items: Sequence[str]) -> np.ndarray:
        check_pairs(profiles, items)
        prompts = [self.prompt.format(profile=p, item=i) for p, i in zip(profiles, items, strict=True)]
        return yes_probabilities(prompts, self.spec, self.yes_token, self.no_token).astype(np.float64)

    def check(self) -> Any:
        tokenizer = super().check()
        try:
            answer_token_ids(tokenizer, self.yes_token, self.no_token)
        except ConfigError as exc:
            raise ConfigError(f"scoring.causal_lm: {exc} (model {self.spec.model_path!r})") from None
        return tokenizer


def build_scorer(name: str, settings: ScorerSettings) -> Scorer:
    """A scorer from its config; the model path is checked here, on the driver."""
    path = resolve_model_path(settings.model, owner=f"scoring.{name}.model")
    spec = ModelSpec(path, settings.batch_size, settings.max_length, settings.device, settings.dtype)
    if name == BiEncoderScorer.name:
        return BiEncoderScorer(spec, settings.top_n)
    if name == CrossEncoderScorer.name:
        return CrossEncoderScorer(spec, settings.top_n)
    if name == CausalLMScorer.name and isinstance(settings, CausalLMSettings):
        return CausalLMScorer(spec, settings.top_n, settings.prompt, settings.yes_token, settings.no_token)
    raise ConfigError(f"unknown scorer {name!r}")


def build_scorers(settings: ScoringSettings) -> list[Scorer]:
    """The enabled scorers, each checked (path, tokenizer, answer tokens) before any Spark job."""
    scorers = [build_scorer(name, s) for name, s in settings.scorers().items()]
    for scorer in scorers:
        scorer.check()
    return scorers

"""Spark wrappers around the pure model functions: batched pandas UDFs run in the executors' Python
workers. Everything they close over is a plain value (``ModelSpec``, strings), read on the driver."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pyspark.ml.functions import predict_batch_udf
from pyspark.sql import Column
from pyspark.sql import types as T

from genre_spark.scoring.models import ModelSpec, embed

PairFunction = Callable[[Sequence[str], Sequence[str]], np.ndarray]


def embedding_udf(spec: ModelSpec) -> Callable[[Column], Column]:
    """text -> array<float> embedding; the model loads once per Python worker."""

    def make_predict_fn() -> Callable[[np.ndarray], np.ndarray]:
        def predict(texts: np.ndarray) -> np.ndarray:
            return embed([str(t) for t in texts], spec)

        return predict

    return predict_batch_udf(
        make_predict_fn, return_type=T.ArrayType(T.FloatType()), batch_size=spec.batch_size
    )


def pair_udf(score: PairFunction, batch_size: int) -> Callable[[Column, Column], Column]:
    """(profile text, item text) -> double score, ``batch_size`` rows per call of ``score``."""

    def make_predict_fn() -> Any:  # (profiles, items) -> scores; predict_batch_udf's stubs know one input
        def predict(profiles: np.ndarray, items: np.ndarray) -> np.ndarray:
            return score([str(p) for p in profiles], [str(i) for i in items]).astype(np.float64)

        return predict

    return predict_batch_udf(make_predict_fn, return_type=T.DoubleType(), batch_size=batch_size)

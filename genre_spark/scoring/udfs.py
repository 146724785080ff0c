"""Spark wrappers around the pure model functions: batched pandas UDFs run in the executors' Python
workers. Everything they close over is a plain value (``ModelSpec``, strings), read on the driver."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa
from pyspark.ml.functions import predict_batch_udf
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from genre_spark.scoring.models import ModelSpec, embed

PairFunction = Callable[[Sequence[str], Sequence[str]], np.ndarray]

# Rows per call of the pure function, which sorts them by length and runs model batches of
# ``spec.batch_size``. Handing it exactly one model batch (predict_batch_udf's ``batch_size``) would
# leave nothing to sort: each batch is padded to its longest row, as unsorted. Bounded by the Arrow
# batch (spark.sql.execution.arrow.maxRecordsPerBatch, 10,000 by default).
SORT_WINDOW = 4096


def embedding_udf(spec: ModelSpec) -> Callable[[Column], Column]:
    """text -> array<float> embedding; the model loads once per Python worker."""

    def make_predict_fn() -> Callable[[np.ndarray], np.ndarray]:
        def predict(texts: np.ndarray) -> np.ndarray:
            return embed([str(t) for t in texts], spec)

        return predict

    return predict_batch_udf(
        make_predict_fn,
        return_type=T.ArrayType(T.FloatType()),
        batch_size=max(spec.batch_size, SORT_WINDOW),
    )


def pair_udf(score: PairFunction, batch_size: int) -> Callable[[Column, Column], Column]:
    """(profile text, item text) -> double score; ``score`` gets up to ``SORT_WINDOW`` rows per call
    (at least ``batch_size``) and forms its own length-sorted model batches."""

    def make_predict_fn() -> Any:  # (profiles, items) -> scores; predict_batch_udf's stubs know one input
        def predict(profiles: np.ndarray, items: np.ndarray) -> np.ndarray:
            return score([str(p) for p in profiles], [str(i) for i in items]).astype(np.float64)

        return predict

    return predict_batch_udf(
        make_predict_fn, return_type=T.DoubleType(), batch_size=max(batch_size, SORT_WINDOW)
    )


def _matrix(vectors: pa.Array) -> np.ndarray:
    """A list<float> Arrow array of equal-length vectors as an (n, dim) float64 matrix."""
    flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    return flat.reshape(len(vectors), -1) if len(vectors) else flat.reshape(0, 0)


def row_dots(left: pa.Array, right: pa.Array) -> pa.Array:
    """Row-wise dot product of two array<float> columns (cosine for unit vectors), in numpy.

    About 10x faster than ``aggregate(zip_with(...))``, whose lambdas Spark interprets per element
    (measured on the sample's 586k pairs of 384-d vectors: 5-9 s against 52-84 s)."""
    if left.null_count or right.null_count:
        raise ValueError("dot_product: null vectors")
    a, b = _matrix(left), _matrix(right)
    if a.shape != b.shape:
        raise ValueError(f"dot_product: vectors of shapes {a.shape} and {b.shape}")
    return pa.array(np.einsum("ij,ij->i", a, b))


# array<float> x array<float> -> double, as an Arrow UDF (the stubs' overloads want a function type)
dot_product = cast(Any, F.arrow_udf)(row_dots, T.DoubleType())
